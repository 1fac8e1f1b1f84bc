"""The composite built inside Earth Engine (lcgee.gee.composite), evaluated offline on the demo
world's scenes, against the local composite stage (masks + median) on the same scenes."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from toys import masked_stack  # tests/toys.py

from lcgee import composite, ee_stage, masks
from lcgee.gee import composite as gee_composite
from lcgee.gee import offline, session
from lcgee.params import load_params
from lcgee.scenes import gee_index

BANDS = ["B02", "B04", "B08", "B11"]


@pytest.fixture(scope="module", autouse=True)
def _offline_session():
    session.init_offline()


@pytest.fixture(scope="module")
def setup(small_search, small_world):
    client, found = small_search
    return client, found[:8], small_world.grid


def test_scene_composite_equals_local_median(setup):
    client, items, grid = setup
    cfg, masked = masked_stack(client, items, grid, BANDS)
    local = composite.composite(masked, "median")["composite"].values

    image = gee_composite.scene_composite([gee_index(it) for it in items], method="median",
                                          bands=BANDS, cloud=masks.cloud_params(cfg), crs=grid)
    graph = json.loads(image.serialize())
    loader = ee_stage.stac_loader(client, items, grid, chunk=128, bands=BANDS)
    ids = sorted(offline.loaded_ids(graph))
    images, props = {}, {}
    for asset_id in ids:
        images[asset_id], props[asset_id] = loader(asset_id)
    out = offline.evaluate_graph(graph, images=images, properties=props, grid=grid)
    assert list(out) == BANDS
    for k, band in enumerate(BANDS):
        ee_band, loc = out[band], local[k]
        assert np.array_equal(np.isnan(ee_band), np.isnan(loc)), band
        assert np.isfinite(loc).mean() > 0.9
        np.testing.assert_allclose(ee_band[np.isfinite(loc)], loc[np.isfinite(loc)], atol=2e-7)


@pytest.mark.parametrize("method", ["median", "best", "monthly"])
def test_composite_for_params_searches_earth_engine(method, tmp_path):
    p = load_params("params/demo.yaml", [f"composite.method={method}"])
    from lcgee.grid import Grid

    grid = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (1536, 1536))
    text = ee_stage.composite_for_params(p, grid).serialize()
    for needle in ("COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS/S2_CLOUD_PROBABILITY",
                   "Join.saveFirst", "CLOUDY_PIXEL_PERCENTAGE", "2022-10-01",
                   "Image.directionalDistanceTransform"):
        assert needle in text, needle
    expected = {"median": "reduce.median", "best": "ImageCollection.qualityMosaic",
                "monthly": "m202209_NDVI"}[method]
    assert expected in text


def test_monthly_band_names_match_the_local_feature_stack():
    months = gee_composite.period_windows(dt.date(2021, 11, 15), dt.date(2022, 2, 1), "1M")
    assert [m[0] + "_" for m in months] == ["m202111_", "m202112_", "m202201_", "m202202_"]
    assert months[1][1:] == ("2021-12-01", "2022-01-01")
