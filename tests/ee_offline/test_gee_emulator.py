"""The offline stand-in for Earth Engine (:mod:`lcgee.gee.emulator`): pixel requests built with
the real ``earthengine-api`` are answered like ``ee.data.computePixels`` (structured array,
the requested window, 0 where masked), equal to numpy on the loader's arrays; one evaluation
per expression however many tiles; the scene-matching query answered from the catalog; requests
it cannot answer are refused with what to do. The protocol and task refusals:
test_gee_connection.py."""

from __future__ import annotations

import numpy as np
import pytest

from lcgee.errors import DataError
from lcgee.gee import cloudmask, session
from lcgee.gee.api import ee as _ee
from lcgee.gee.download import AFFINE_FIELDS
from lcgee.gee.emulator import OfflineEarthEngine, request_grid
from lcgee.grid import Grid

GRID = Grid("EPSG:32652", (10.0, 0.0, 600000.0, 0.0, -10.0, 4000000.0), (20, 30))
RNG = np.random.default_rng(0)
ARRAYS = {"x/a": {"B8": RNG.uniform(0, 5000, GRID.shape), "SCL": RNG.integers(0, 12, GRID.shape)
                  .astype(float)},
          "x/b": {"B8": RNG.uniform(0, 5000, GRID.shape)}}


@pytest.fixture(scope="module")
def ee():
    session.init_offline()
    return _ee()


class CountingLoader:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, asset_id):
        self.calls.append(asset_id)
        return ARRAYS[asset_id], {"system:index": asset_id}


def _request(expression, tile: Grid, **extra):
    return {"expression": expression, "fileFormat": "NUMPY_NDARRAY", **extra,
            "grid": {"dimensions": {"width": tile.width, "height": tile.height},
                     "crsCode": tile.crs,
                     "affineTransform": dict(zip(AFFINE_FIELDS, tile.transform, strict=True))}}


def test_request_grid_reads_back_the_grid_it_was_given():
    tile = GRID.window(4, 7, 6, 9)
    assert request_grid(_request({}, tile)) == tile
    with pytest.raises(DataError, match="not a computePixels grid") as info:
        request_grid({"grid": {"dimensions": {"width": 3}}})
    assert "affineTransform" in info.value.fix


def test_pixels_of_an_expression_equal_numpy_in_the_requested_window(ee):
    image = (ee.Image("x/a").select("B8").multiply(2).add(ee.Image("x/b").select("B8"))
             .rename("sum").addBands(ee.Image("x/a").select("SCL")))
    stand_in = OfflineEarthEngine(GRID, CountingLoader())
    tile = GRID.window(5, 10, 8, 12)
    out = stand_in.compute_pixels(_request(image, tile))
    assert out.shape == (8, 12) and out.dtype.names == ("sum", "SCL")
    want = 2 * ARRAYS["x/a"]["B8"] + ARRAYS["x/b"]["B8"]
    np.testing.assert_allclose(out["sum"], want[5:13, 10:22], rtol=1e-6)
    np.testing.assert_array_equal(out["SCL"], ARRAYS["x/a"]["SCL"][5:13, 10:22])
    only = stand_in.compute_pixels(_request(image, tile, bandIds=["SCL"]))
    assert only.dtype.names == ("SCL",)


def test_masked_pixels_come_back_as_zero(ee):
    b8 = ee.Image("x/a").select("B8")
    image = b8.updateMask(b8.gt(2500))
    out = OfflineEarthEngine(GRID, CountingLoader()).compute_pixels(_request(image, GRID))
    values = ARRAYS["x/a"]["B8"]
    np.testing.assert_allclose(out["B8"], np.where(values > 2500, values, 0), rtol=1e-6)
    assert (out["B8"] == 0).sum() == (values <= 2500).sum() > 0


def test_tiles_of_one_image_cost_one_evaluation(ee):
    loader = CountingLoader()
    stand_in = OfflineEarthEngine(GRID, loader)
    image = ee.Image("x/a").select("B8").subtract(ee.Image("x/b").select("B8"))
    tiles = [GRID.window(r, c, 10, 15) for r in (0, 10) for c in (0, 15)]
    parts = [stand_in.compute_pixels(_request(image, t))["B8"] for t in tiles]
    whole = np.block([[parts[0], parts[1]], [parts[2], parts[3]]])
    np.testing.assert_allclose(whole, ARRAYS["x/a"]["B8"] - ARRAYS["x/b"]["B8"], rtol=1e-6)
    assert sorted(loader.calls) == ["x/a", "x/b"]  # each image loaded once for four tiles
    assert stand_in.requests == 4


def test_scene_matching_query_is_answered_from_the_catalog(ee):
    stand_in = OfflineEarthEngine(GRID, CountingLoader(), catalog=["s1", "s3"])
    found, missing = cloudmask.confirm_matches(["s1", "s2", "s3"], connection=stand_in)
    assert (found, missing) == (["s1", "s3"], ["s2"])
    everything = OfflineEarthEngine(GRID, CountingLoader())  # no catalog: all it can read
    assert cloudmask.confirm_matches(["s1", "s2"], connection=everything) == (["s1", "s2"], [])


def test_requests_it_cannot_answer_are_refused_with_a_way_out(ee):
    stand_in = OfflineEarthEngine(GRID, CountingLoader())
    image = ee.Image("x/a").select("B8")
    with pytest.raises(DataError, match="GEO_TIFF") as info:
        stand_in.compute_pixels({**_request(image, GRID), "fileFormat": "GEO_TIFF"})
    assert "NUMPY_NDARRAY" in info.value.fix
    with pytest.raises(DataError, match="only the scene-matching query") as info:
        stand_in.get_info(ee.Number(1).add(2))
    assert "confirm_matches" in info.value.fix
