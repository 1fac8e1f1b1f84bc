"""Issue 12: lcgee's Earth Engine graphs checked against Earth Engine's documented semantics
(docs/earth-engine-semantics.md): exports, request sizes, tree text, masks and footprints,
qualityMosaic, empty periods, grid origins, coarse reads, WorldCover and the whole chain.
No network is used."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ee")

from lcgee.errors import EarthEngineError
from lcgee.gee import classify, download, live, session
from lcgee.grid import Grid

GRID = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (100, 200))


@pytest.fixture(scope="module")
def offline_session():
    session.init_offline()
    yield


# ----------------------------------------------------------------------------- 2: split exports


def test_split_exports_vary_the_file_name_not_the_bucket_or_folder(offline_session):
    img = classify.placeholder_composite().select(["B04"])
    gcs = classify.export_task(img, GRID, to="cloud-storage", path="gs://bucket/maps/lc", split=3)
    dest = [t.config["fileExportOptions"]["cloudStorageDestination"] for t, _ in gcs]
    assert {d["bucket"] for d in dest} == {"bucket"}
    assert [d["filenamePrefix"] for d in dest] == ["maps/lc_0", "maps/lc_1", "maps/lc_2"]
    bare = classify.export_task(img, GRID, to="cloud-storage", path="gs://bucket", split=2)
    dest = [t.config["fileExportOptions"]["cloudStorageDestination"] for t, _ in bare]
    assert {d["bucket"] for d in dest} == {"bucket"}
    assert [d["filenamePrefix"] for d in dest] == ["lcgee_landcover_0", "lcgee_landcover_1"]
    drive = classify.export_task(img, GRID, to="drive", path="lcgee", split=2)
    dest = [t.config["fileExportOptions"]["driveDestination"] for t, _ in drive]
    assert {d["folder"] for d in dest} == {"lcgee"}
    assert len({d["filenamePrefix"] for d in dest}) == 2
    asset = classify.export_task(img, GRID, to="asset", path="projects/p/assets/lc", split=2)
    names = [t.config["assetExportOptions"]["earthEngineDestination"]["name"] for t, _ in asset]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["lc_0", "lc_1"]


# ----------------------------------------------------------------------------- 8: pyramids


def test_asset_exports_of_class_maps_pyramid_by_mode_on_every_part(offline_session):
    img = classify.placeholder_composite().select(["B04"])
    tasks = classify.export_task(img, GRID, to="asset", path="projects/p/assets/lc", split=3)
    # earthengine-api pops ".default" from the dict it is given: every part must still get it
    assert [t.config["assetExportOptions"].get("pyramidingPolicy") for t, _ in tasks] == \
        ["MODE"] * 3
    (task, _), = classify.export_task(img, GRID, to="asset", path="projects/p/assets/prob",
                                      pyramiding_policy={".default": "mean"})
    assert task.config["assetExportOptions"]["pyramidingPolicy"] == "MEAN"
    with pytest.raises(Exception, match="pyramiding"):
        classify.export_task(img, GRID, to="asset", path="projects/p/assets/x",
                             pyramiding_policy={".default": "median"})


# ----------------------------------------------------------------------------- 3: request size


def test_interactive_check_counts_the_mask_byte_like_the_tiled_downloader():
    grid = Grid(GRID.crs, GRID.transform, (4000, 7000))  # 28 M px: 28 MB of values, 56 with masks
    assert download.request_bytes(4000, 7000, 1, "uint8") > download.MAX_REQUEST_BYTES
    with pytest.raises(EarthEngineError, match="mask byte"):
        live.check_interactive(grid)
    fits = Grid(GRID.crs, GRID.transform, (4000, 6000))
    assert live.check_interactive(fits) == download.request_bytes(4000, 6000, 1, "uint8")


def test_fetch_pixels_larger_than_one_request_goes_through_the_tiled_downloader(
        offline_session, tmp_path):
    grid = Grid(GRID.crs, GRID.transform, (5000, 6000))  # 60 MB with masks: two requests at least
    requests = []

    def compute(request):
        requests.append(request)
        tile = request["grid"]
        h, w = tile["dimensions"]["height"], tile["dimensions"]["width"]
        row0 = round((6000000.0 - tile["affineTransform"]["translateY"]) / 10)
        out = np.zeros((h, w), dtype=[("landcover", "u1")])
        out["landcover"] = ((np.arange(h) + row0) % 250)[:, None]
        return out

    image = classify.placeholder_composite().select(["B04"], ["landcover"])
    got = live.fetch_pixels(image, grid, compute=compute, cache_dir=tmp_path)
    assert len(requests) >= 2
    for r in requests:
        dims = r["grid"]["dimensions"]
        assert download.request_bytes(dims["height"], dims["width"], 1, "uint8") \
            <= download.MAX_REQUEST_BYTES
        assert r["bandIds"] == ["landcover"]
    assert got.shape == grid.shape
    assert np.array_equal(got[:, 0], np.arange(5000) % 250)
    assert np.all(got == got[:, :1])
    # one request when it fits
    requests.clear()
    small = live.fetch_pixels(image, GRID, compute=compute, cache_dir=tmp_path)
    assert len(requests) == 1 and small.shape == GRID.shape

