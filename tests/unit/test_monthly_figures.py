"""The composite figure (notebook 03) and the true-colour bands (notebook 06) of a ``monthly``
feature stack, whose bands are period-prefixed (``m202103p2_B04`` ...): they once asked for a
plain ``B04`` and stopped the run with a KeyError."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

from lcgee import plots
from lcgee.errors import DataError
from lcgee.features import features_from_stack


def _monthly_features():
    rng = np.random.default_rng(0)
    times = np.array(["2021-04-03", "2021-05-20", "2021-07-09", "2021-08-30", "2021-10-02"],
                     "datetime64[ns]")
    stack = xr.DataArray(rng.uniform(0.01, 0.4, (5, 3, 8, 9)).astype("float32"),
                         dims=("time", "band", "y", "x"),
                         coords={"time": times, "band": ["B02", "B03", "B04"]})
    return features_from_stack(stack, "monthly", index_names=[],
                               period="2M")


def test_true_colour_bands_of_plain_and_period_stacks():
    assert plots.rgb_bands(["B02", "B03", "B04", "NDVI"]) == ["B04", "B03", "B02"]
    names = [f"{p}_{b}" for p in ("m202103p2", "m202105p2", "m202107p2")
             for b in ("B02", "B03", "B04")]
    assert plots.rgb_bands(names) == ["m202105p2_B04", "m202105p2_B03", "m202105p2_B02"]
    with pytest.raises(DataError, match="true-colour"):
        plots.rgb_bands(["m202103p2_B08", "m202103p2_B11"])


def test_composite_figure_of_a_monthly_stack():
    result = _monthly_features()
    names = [str(b) for b in result.features["band"].values]
    assert "B04" not in names and "m202105p2_B04" in names
    fig = plots.composite_figure(result.features, result.count, title="monthly composite")
    assert "m202107p2" in fig.axes[0].get_title()
