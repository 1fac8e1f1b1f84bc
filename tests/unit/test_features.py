"""The composite stage (:mod:`lcgee.features`) on synthetic masked stacks: every feature equals
its numpy recomputation (``np.nanmedian`` / argmin of the score, then the textbook index
formulas), band order and names are the documented ones, and ``features.tif`` / ``count.tif``
read back bit for bit. Loading from the loopback servers: tests/loopback/test_imagery.py."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

from lcgee import features
from lcgee.errors import DataWarning
from lcgee.grid import Grid
from lcgee.layout import RunLayout

GRID = Grid("EPSG:32652", (10.0, 0.0, 600000.0, 0.0, -10.0, 4000000.0), (12, 16))
BANDS = ["B02", "B04", "B08", "B11"]


def _stack(times: int = 7, seed: int = 0) -> xr.DataArray:
    """Reflectance (time, band, y, x) with ~30 % masked observations and one pixel never seen."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.01, 0.6, (times, len(BANDS)) + GRID.shape).astype("float32")
    data[rng.random((times, 1) + GRID.shape).repeat(len(BANDS), 1) < 0.3] = np.nan
    data[:, :, 0, 0] = np.nan
    dates = pd.date_range("2021-03-05", periods=times, freq="17D")
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"time": dates, "band": BANDS, **GRID.coords()})


def _nanmedian(a: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return (a - b) / (a + b)


def test_median_features_equal_numpy_and_the_textbook_indices():
    stack = _stack()
    result = features.features_from_stack(stack, "median", index_names=["NDVI", "NDWI"])
    assert result.method == "median" and result.monthly is None
    assert [str(b) for b in result.features["band"].values] == BANDS + ["NDVI", "NDWI"]
    assert result.features.dtype == np.float32
    got = {str(b): result.features.sel(band=b).values for b in result.features["band"].values}
    med = {b: _nanmedian(stack.sel(band=b).values) for b in BANDS}
    for b in BANDS:
        np.testing.assert_array_equal(got[b], med[b].astype("float32"))
    np.testing.assert_allclose(got["NDVI"], _ratio(med["B08"], med["B04"]), rtol=1e-6)
    np.testing.assert_allclose(got["NDWI"], _ratio(med["B08"], med["B11"]), rtol=1e-6)
    assert np.isnan(got["NDVI"][0, 0])  # never observed: NaN, not 0
    count = np.isfinite(stack.sel(band="B04").values).sum(axis=0)
    np.testing.assert_array_equal(result.count.values, count)
    assert result.count.values[0, 0] == 0


def test_best_pixel_takes_the_valid_observation_with_the_lowest_score():
    stack = _stack(seed=3)
    rng = np.random.default_rng(4)
    score = xr.DataArray(rng.uniform(0, 100, (stack.sizes["time"],) + GRID.shape),
                         dims=("time", "y", "x"), coords={"time": stack["time"], **GRID.coords()})
    result = features.features_from_stack(stack, "best", index_names=["NDVI"], score=score)
    values = stack.values
    valid = np.isfinite(values[:, 0])
    pick = np.argmin(np.where(valid, score.values, np.inf), axis=0)
    rows, cols = np.indices(GRID.shape)
    for k, band in enumerate(BANDS):
        want = values[pick, k, rows, cols]
        want[~valid.any(axis=0)] = np.nan
        np.testing.assert_array_equal(result.features.sel(band=band).values, want)
    best = {b: result.features.sel(band=b).values for b in ("B04", "B08")}
    np.testing.assert_allclose(result.features.sel(band="NDVI").values,
                               _ratio(best["B08"], best["B04"]), rtol=1e-6)


def test_indices_without_their_bands_are_skipped_and_named():
    stack = _stack().sel(band=["B02", "B04", "B08"])
    with pytest.warns(DataWarning, match=r"NDWI \(needs B11\)"):
        result = features.features_from_stack(stack, "median", index_names=["NDVI", "NDWI"])
    assert [str(b) for b in result.features["band"].values] == ["B02", "B04", "B08", "NDVI"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # nothing to skip: no warning
        assert features.indices_for(BANDS, ["NDVI", "NDWI"]) == ["NDVI", "NDWI"]


def test_monthly_features_are_per_period_medians_with_period_prefixes():
    stack = _stack(times=9)
    result = features.features_from_stack(stack, "monthly", index_names=["NDVI"], period="2M")
    labels = [str(v) for v in result.monthly["label"].values]
    names = [str(b) for b in result.features["band"].values]
    assert names == [f"{p}_{b}" for p in labels for b in BANDS + ["NDVI"]]
    times = pd.DatetimeIndex(stack["time"].values)
    # documented: 2-month windows starting in January, named m<YYYY><MM of the first month>p2
    assert labels == sorted({f"m{t.year}{t.month - (t.month - 1) % 2:02d}p2" for t in times})
    for label in labels:
        year, first = int(label[1:5]), int(label[5:7])
        sel = np.flatnonzero((times.year == year) & np.isin(times.month, [first, first + 1]))
        med = {b: _nanmedian(stack.sel(band=b).values[sel]) for b in ("B04", "B08")}
        seen = np.isfinite(med["B04"])  # unseen in the period: filled from the whole range
        np.testing.assert_array_equal(result.features.sel(band=f"{label}_B04").values[seen],
                                      med["B04"][seen])
        np.testing.assert_allclose(result.features.sel(band=f"{label}_NDVI").values[seen],
                                   _ratio(med["B08"], med["B04"])[seen], rtol=1e-6)


def test_written_features_and_count_read_back_identically(tmp_path):
    result = features.features_from_stack(_stack(), "median", index_names=["NDVI"])
    want_features, want_count = result.features.values, result.count.values
    paths = features.write_outputs(result, GRID, tmp_path)
    layout = RunLayout(tmp_path)
    assert paths == {"features": layout.features, "count": layout.count}
    with rasterio.open(paths["features"]) as src:
        assert list(src.descriptions) == BANDS + ["NDVI"] and src.dtypes[0] == "float32"
        assert src.tags()["composite_method"] == "median" and src.transform == GRID.affine
    with rasterio.open(paths["count"]) as src:
        assert src.dtypes[0] == "uint16"
        np.testing.assert_array_equal(src.read(1), want_count)
    back = features.read_features(tmp_path, chunks=8)
    assert back.chunks is not None  # lazy
    assert [str(b) for b in back["band"].values] == BANDS + ["NDVI"]
    np.testing.assert_array_equal(back.values, want_features)  # NaN where never observed
    # the result now points at the files, so figures do not recompute the composite
    np.testing.assert_array_equal(result.features.values, want_features)
    np.testing.assert_array_equal(result.count.values, want_count)
