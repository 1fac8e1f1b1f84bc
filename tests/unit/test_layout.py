"""RunLayout: the run directory's paths, and the regions' windows of the run grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lcgee.errors import DataError, ParamsError
from lcgee.layout import RunLayout, Window, region_grid, region_window, region_windows
from lcgee.params import Params
from lcgee.stage import build_grid

PARAMS = {
    "name": "t", "dates": {"start": "2021-04-01", "end": "2021-09-30"},
    "aoi": {"bbox": [620000, 3710000, 635360, 3725360], "crs": "EPSG:32652"},
    "regions": {"west": {"bbox": [620640, 3718320, 627040, 3724720], "crs": "EPSG:32652",
                         "role": "train"},
                "south": {"bbox": [624480, 3710640, 630880, 3717040], "crs": "EPSG:32652",
                          "role": "predict"}},
    "grid": {"resolution": 10, "crs": "EPSG:32652"}}


def test_paths_live_in_the_run_directory_and_nothing_is_created(tmp_path):
    layout = RunLayout(str(tmp_path / "run"))
    assert layout.root == tmp_path / "run" and isinstance(layout.root, Path)
    assert layout.features == tmp_path / "run" / "features.tif"
    assert layout.ee_classifier.parent == layout.model == tmp_path / "run" / "model"
    assert layout.stage_marker("05_train") == tmp_path / "run" / ".stages" / "05_train.json"
    assert layout.notebook("05_train").name == "05_train.ipynb"
    assert not (tmp_path / "run").exists()
    with pytest.raises(AttributeError):
        layout.root = tmp_path


def test_region_windows_match_the_region_grids():
    params = Params.model_validate(PARAMS)
    grid = build_grid(params)
    win = region_window(params, grid, "west")
    assert win == Window("west", 64, 64, 640, 640)
    rg = region_grid(params, grid, "west")
    assert (win.row, win.col) == rg.offset_in(grid) and win.grid_in(grid) == rg
    data = np.arange(2 * grid.height * grid.width).reshape(2, grid.height, grid.width)
    assert np.array_equal(win.cut(data), data[:, 64:704, 64:704])
    da = xr.DataArray(data, dims=("band", "y", "x"))
    assert np.array_equal(win.cut(da).values, data[:, 64:704, 64:704])
    assert [w.name for w in region_windows(params, grid, "predict")] == ["south"]
    with pytest.raises(ParamsError, match="no region named 'east'"):
        region_window(params, grid, "east")
    with pytest.raises(DataError, match="no region with role 'validate'"):
        region_windows(params, grid, "validate")
