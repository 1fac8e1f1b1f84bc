"""Imagery stages end to end on the small demo world, through the loopback STAC API and the
HTTP range server: search, load + harmonize, cloud masks vs truth, composites vs an
independent reference."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rasterio

from lcgee import clouds, composite, load, masks, search
from lcgee.errors import NoScenesError, StacError
from lcgee.params import CloudParams
from lcgee.signing import sign_href

DATES = "2021-04-01/2022-09-30"


def _items_json(world):
    return json.loads(world.item_collection_path("sentinel-2-l2a").read_text())["features"]


@pytest.fixture(scope="module")
def client(small_server):
    return search.open_client(small_server.stac_url)


@pytest.fixture(scope="module")
def found(client, small_world):
    return search.search_scenes(client, collection="sentinel-2-l2a",
                                bbox=small_world.grid.lonlat_bbox, datetime=DATES)


def test_assets_are_served_over_http_with_ranges(found, small_server):
    href = found.items[0].assets["B04"].href
    assert href.startswith(small_server.files.url + "/")
    with rasterio.open(sign_href(href)) as src:  # GDAL /vsicurl/ issues range requests
        assert src.crs.to_epsg() == 32652 and src.overviews(1)


def test_search_returns_every_scene_once(found, small_world):
    raw = _items_json(small_world)
    dup = small_world.duplicate
    expected = {f["id"] for f in raw} - {dup["original"]}
    assert {it.id for it in found.items} == expected
    assert [d.id for d in found.dropped] == [dup["original"]]
    assert list(found.table["datetime"]) == sorted(found.table["datetime"])
    assert not found.server_filtered  # rustac has no query extension: filtered client-side
    row = found.table.set_index("id").loc[found.items[0].id]
    assert row["gee_index"] == next(s["system_index"] for s in small_world.scenes()
                                     if s["item_id"] == found.items[0].id)


def test_search_filters_cloud_cover(client, small_world):
    raw = _items_json(small_world)
    limit = float(np.median([f["properties"]["eo:cloud_cover"] for f in raw]))
    res = search.search_scenes(client, collection="sentinel-2-l2a",
                               bbox=small_world.grid.lonlat_bbox, datetime=DATES,
                               max_cloud_cover=limit)
    expected = {f["id"] for f in raw if f["properties"]["eo:cloud_cover"] <= limit}
    expected -= {small_world.duplicate["original"]}
    assert {it.id for it in res.items} == expected
    assert 0 < len(expected) < len(raw)


def test_no_scenes_names_area_dates_and_limit(client, small_world):
    with pytest.raises(NoScenesError) as info:
        search.search_scenes(client, collection="sentinel-2-l2a",
                             bbox=small_world.grid.lonlat_bbox, datetime="2019-01-01/2019-02-01",
                             max_cloud_cover=10)
    msg = str(info.value)
    assert "2019-01-01/2019-02-01" in msg and "<= 10 %" in msg and "widen `dates`" in msg


def test_dead_stac_api_is_a_clear_error():
    t0 = time.monotonic()
    with pytest.raises(StacError) as info:
        search.open_client("http://127.0.0.1:9/stac", retries=1, timeout=2)
    assert "http://127.0.0.1:9/stac" in str(info.value)
    assert time.monotonic() - t0 < 30


def _clear(world, item_id, shape):
    ok = ~world.truth_cloud(item_id) & ~world.truth_shadow(item_id)
    return ok[: shape[0], : shape[1]]


@pytest.mark.parametrize("engine", ["odc-stac", "stackstac"])
def test_harmonized_values_equal_truth_on_both_sides_of_the_baseline_change(
        found, small_world, engine):
    table = found.table
    pre = table[~table["offset"]].iloc[0]
    post = table[table["offset"]].iloc[0]
    items = [it for it in found.items if it.id in (pre["id"], post["id"])]
    ds = load.load_stack(items, small_world.grid, ["B04", "B05"], engine=engine, chunk=128)
    refl = load.reflectance(ds, ["B04", "B05"]).compute()
    for t, item in enumerate(items):
        b04 = small_world.surface_reflectance(item.id, "B04")
        b05 = np.kron(small_world.surface_reflectance(item.id, "B05"), np.ones((2, 2), int))
        clear = _clear(small_world, item.id, b04.shape) & (b04 > 0)
        assert clear.mean() > 0.2
        got = refl.isel(time=t)
        np.testing.assert_array_equal(np.rint(got.sel(band="B04").values[clear] * 10000),
                                      b04[clear].astype("float32"))
        h, w = clear.shape  # a 20 m pixel is clear when its four 10 m pixels are
        clear20 = np.kron(clear.reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3)), np.ones((2, 2),
                                                                                       bool))
        np.testing.assert_array_equal(np.rint(got.sel(band="B05").values[clear20] * 10000),
                                      b05[clear20].astype("float32"))
        raw = ds["B04"].isel(time=t).values
        offset = 1000 if bool(ds["offset"].values[t]) else 0
        assert np.array_equal(raw[clear].astype(int), b04[clear].astype(int) + offset)
    assert bool(ds["offset"].values[list(ds["id"].values).index(post["id"])])


def test_stackstac_and_odc_stac_agree(found, small_world):
    items = found.items[:3]
    a = load.load_stack(items, small_world.grid, ["B02", "B11", "SCL"], engine="odc-stac")
    b = load.load_stack(items, small_world.grid, ["B02", "B11", "SCL"], engine="stackstac")
    for band in ("B02", "B11", "SCL"):
        np.testing.assert_array_equal(a[band].values, b[band].values)


def test_local_mask_finds_shadows_and_beats_scl(found, small_world, client):
    cfg_local = CloudParams(source="local", fallback="none")
    cfg_scl = CloudParams(source="scl", fallback="none")
    grid = small_world.grid
    got = masks.scene_masks(found.items, grid, cfg_local, client=client, chunk=256)
    assert {s for _, s, _ in got} == {"local"}
    quality = masks.compare_with_truth(small_world, found.items, grid, cfg_scl, client=client,
                                       chunk=256, have=got).set_index(["source", "kind"])
    ba = quality["balanced_accuracy"]
    assert ba["local", "cloud_or_shadow"] > ba["scl", "cloud_or_shadow"]
    assert quality.loc[("local", "shadow"), "recall"] > 0.3
    assert quality.loc[("local", "shadow"), "precision"] > 0.5
    del cfg_scl


def test_composite_equals_an_independent_reference(found, small_world, client, tmp_path):
    """Read the COGs with rasterio, harmonize by hand, mask, np.nanmedian: same numbers.

    Scenes of the world's UTM zone only: those of the second zone need a warp, whose choice of
    pixel at near-ties is the warper's (tested against the truth in test_world)."""
    grid = small_world.grid
    items = [it for it in found.items  # pystac 1.15 reads proj:epsg as proj:code
             if it.properties.get("proj:code") == f"EPSG:{grid.epsg}"]
    assert len(items) < len(found.items)
    cfg = CloudParams(source="scl", fallback="none")
    got = masks.scene_masks(items, grid, cfg, client=client, chunk=256)
    masks.write_masks(got, grid, tmp_path, key=masks.mask_key(cfg, grid), progress=False)
    mask = masks.read_masks(tmp_path, [it.id for it in items]).values
    ds = load.load_stack(items, grid, ["B04"], chunk=128)
    stack = clouds.apply_mask(load.reflectance(ds, ["B04"]),
                              masks.read_masks(tmp_path, [it.id for it in items])
                              .assign_coords(time=ds["time"].values, y=ds["y"], x=ds["x"]))
    lcgee_median = composite.median(stack).sel(band="B04").values

    ref = []
    for item, m in zip(items, mask):
        with rasterio.open(sign_href(item.assets["B04"].href)) as src:
            dn = src.read(1).astype("float32")
        base = item.properties["s2:processing_baseline"]
        off = 1000.0 if float(base) >= 4.0 else 0.0
        value = np.where(dn == 0, np.nan, np.clip(dn - off, 0, None) / np.float32(10000))
        ref.append(np.where(m == clouds.CLEAR, value, np.nan).astype("float32"))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(np.stack(ref), axis=0)
    np.testing.assert_array_equal(lcgee_median, expected)
    count = composite.valid_count(stack).values
    np.testing.assert_array_equal(count, np.isfinite(np.stack(ref)).sum(0))
