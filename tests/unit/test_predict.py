"""Map prediction (:mod:`lcgee.predict`): the map equals LightGBM's own ``Booster.predict``
pixel by pixel on both paths (compiled predictor and the LightGBM fallback), NaN pixels are
nodata, a stack without the model's features is refused, and the STAC item describes the grid
(footprint from pyproj, not from the code under test). The written COG and the item's classes:
tests/loopback/test_training.py::test_landcover_cog_and_stac_item."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer
from toys import synthetic  # tests/toys.py

from lcgee import predict, samples, train
from lcgee.errors import ModelError
from lcgee.grid import Grid
from lcgee.params import TrainParams

GRID = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (120, 160))
NAMES = ["B02", "B04", "B08", "NDVI"]
CLASSES = [10, 40, 80]


@pytest.fixture(scope="module")
def bundle():
    X, lab = synthetic(0)
    table = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                                  per_class=300, seed=0)
    return train.train_lightgbm(table, NAMES, TrainParams(num_iterations=15, num_leaves=7),
                                class_values=CLASSES)


def _stack(seed: int = 1) -> xr.DataArray:
    X, _ = synthetic(seed)
    X = X + np.random.default_rng(seed).normal(0, 0.02, X.shape).astype("float32")  # mixed
    X[2, 50:53, 70:75] = np.nan  # one band missing: nodata there
    return xr.DataArray(X, dims=("band", "y", "x"), coords={"band": NAMES, **GRID.coords()})


def _lightgbm_map(booster, stack: xr.DataArray) -> np.ndarray:
    flat = stack.values.reshape(len(NAMES), -1).T.astype(np.float64)
    ok = np.isfinite(flat).all(axis=1)
    out = np.zeros(flat.shape[0], np.uint8)
    out[ok] = np.asarray(CLASSES)[np.argmax(booster.predict(flat[ok]), axis=1)]
    return out.reshape(GRID.shape)


@pytest.mark.parametrize("compiled", [True, False], ids=["fastpredict", "lightgbm"])
def test_map_equals_lightgbm_predict_pixel_by_pixel(bundle, compiled, monkeypatch):
    if not compiled:  # as on a machine without numba: predict falls back to LightGBM's own
        monkeypatch.setitem(sys.modules, "lcgee.fastpredict", None)
    stack = _stack().chunk({"y": 50, "x": 64})
    got = predict.predict_map(stack, bundle)
    assert got.chunks is not None and got.dtype == np.uint8 and got.dims == ("y", "x")
    want = _lightgbm_map(bundle.booster, stack)
    np.testing.assert_array_equal(got.values, want)
    assert np.all(got.values[50:53, 70:75] == 0)  # NaN feature: nodata
    assert set(np.unique(want[want > 0])) == set(CLASSES)  # every class is mapped somewhere


def test_feature_order_is_the_models_not_the_stacks(bundle):
    stack = _stack()
    shuffled = stack.sel(band=["NDVI", "B08", "B02", "B04"])
    np.testing.assert_array_equal(predict.predict_map(shuffled, bundle).values,
                                  _lightgbm_map(bundle.booster, stack))


@pytest.mark.parametrize("compiled", [True, False], ids=["fastpredict", "lightgbm"])
def test_a_stack_without_the_models_features_is_refused(bundle, compiled, monkeypatch):
    if not compiled:
        monkeypatch.setitem(sys.modules, "lcgee.fastpredict", None)
    with pytest.raises(ModelError, match="NDVI") as info:
        predict.predict_map(_stack().sel(band=["B02", "B04", "B08"]), bundle).compute()
    assert info.value.fix


def test_stac_item_footprint_and_projection_describe_the_grid(tmp_path):
    item = predict.stac_item(GRID, tmp_path / "landcover.tif", [10, 80], model_href="./m.json",
                             start="2021-04-01", end="2022-09-30", item_id="run-landcover")
    props = item["properties"]
    assert props["proj:code"] == "EPSG:32652" and props["proj:shape"] == [120, 160]
    assert props["proj:transform"] == [10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0]
    assert props["start_datetime"] == "2021-04-01T00:00:00Z"
    assert props["end_datetime"] == "2022-09-30T23:59:59Z" and props["datetime"] is None
    to_ll = Transformer.from_crs("EPSG:32652", "EPSG:4326", always_xy=True)
    corners = [to_ll.transform(x, y) for x, y in [(620000, 3725360 - 1200), (621600, 3725360),
                                                  (620000, 3725360), (621600, 3725360 - 1200)]]
    lons, lats = zip(*corners)
    np.testing.assert_allclose(item["bbox"], [min(lons), min(lats), max(lons), max(lats)])
    ring = item["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    asset = item["assets"]["landcover"]
    assert asset["href"] == "./landcover.tif"
    assert asset["raster:bands"][0] == {"nodata": 0, "data_type": "uint8",
                                        "spatial_resolution": 10.0}
    assert [(c["value"], c["name"]) for c in asset["classification:classes"]] == [
        (10, "tree_cover"), (80, "permanent_water_bodies")]
    assert item["links"][0]["href"] == "./m.json"


def test_class_areas_are_pixel_counts_times_pixel_area():
    lc = np.zeros((10, 10), np.uint8)
    lc[:3] = 10
    lc[3:4, :5] = 80
    assert predict.class_areas(lc, 10.0) == {10: 30 * 100 / 1e4, 80: 5 * 100 / 1e4}
    assert predict.class_areas(np.zeros((4, 4), np.uint8), 10.0) == {}  # nodata is no class
