"""Tests of the embedded demo world (lcgee.demo.world).

They run on the session's small world (``small_world`` in conftest.py: 384 px, 22 scenes) and
read everything back from disk (COGs with rasterio, STAC JSON), so they check what later stages
will see, not the generator's internals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from lcgee.demo import world as world_module
from lcgee.demo.world import (
    BASELINE_CHANGE,
    DEMO_GRID,
    DEMO_REGIONS,
    S2_BANDS,
    SCL_CLEAR_AS_CLOUD,
    SCL_CLOUD_RECALL,
    SCL_HAZE_RECALL,
    SCL_SHADOW_AS_WATER,
    SCL_SHADOW_RECALL,
    SCL_WATER_AS_SHADOW,
    WORLDCOVER_CLASSES,
    WorldSpec,
    build_world,
)
from lcgee.errors import ParamsError

ID_RE = re.compile(r"^(S2[AB])_MSIL2A_(\d{8}T\d{6})_R(\d{3})_T(\d{2}[A-Z]{3})_(\d{8}T\d{6})$")
DATASTRIP_RE = re.compile(r"^S2[AB]_OPER_MSI_L2A_DS_\w{4}_(\d{8}T\d{6})_S(\d{8}T\d{6})_N\d\d\.\d\d$")
RES = 10.0


@pytest.fixture(scope="session")
def world(small_world):
    return small_world


@pytest.fixture(scope="session")
def items(world):
    data = json.loads(world.item_collection_path("sentinel-2-l2a").read_text())
    return {it["id"]: it for it in data["features"]}


def _originals(world):
    return [s for s in world.scenes() if s["duplicate_of"] is None]


def _on_world_grid(world):
    """Originals published on the world grid (not warped into the second UTM zone)."""
    return [s for s in _originals(world) if s["epsg"] == world.grid.epsg]


def _read(path, band=1):
    with rasterio.open(path) as src:
        return src.read(band)


def _agg(mask, f):
    h, w = mask.shape
    return mask.reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _shift(mask, dr, dc):
    out = np.zeros_like(mask)
    h, w = mask.shape
    if abs(dr) >= h or abs(dc) >= w:
        return out
    out[max(dr, 0): h + min(dr, 0), max(dc, 0): w + min(dc, 0)] = \
        mask[max(-dr, 0): h - max(dr, 0), max(-dc, 0): w - max(dc, 0)]
    return out


def _anti_solar_offset(height_m, azimuth, zenith):
    """Rows/cols from a cloud to its shadow: height * tan(zenith) towards azimuth + 180."""
    dist = height_m * math.tan(math.radians(zenith)) / RES
    toward = math.radians(azimuth + 180.0)
    return round(-dist * math.cos(toward)), round(dist * math.sin(toward))


# ---- clouds and shadows ---------------------------------------------------------------------
def test_shadows_fall_anti_solar_at_height_times_tan_zenith(world, items):
    """Each cloud object, moved by height * tan(zenith) towards azimuth + 180, lands on shadow.

    Alternative displacements (towards the sun, sideways, half or 1.6 times the distance) land
    on much less shadow, so the test pins both direction and distance.
    """
    exact, alternatives = [], {}
    for scene in _on_world_grid(world):
        props = items[scene["item_id"]]["properties"]
        az, zen = props["s2:mean_solar_azimuth"], props["s2:mean_solar_zenith"]
        height = world.truth_cloud_height(scene["item_id"])
        shadow = world.truth_shadow(scene["item_id"])
        cloud = world.truth_cloud(scene["item_id"], include_haze=False)
        for h in np.unique(height[height > 0]):
            core = height == h
            moved = _shift(core, *_anti_solar_offset(float(h), az, zen))
            visible = moved & ~cloud  # a shadow under a cloud is hidden
            if core.sum() < 300 or visible.sum() < 100:
                continue
            exact.append(shadow[visible].mean())
            for scale, turn in ((1.0, 180.0), (1.0, 90.0), (1.0, -90.0), (0.5, 0.0), (1.6, 0.0)):
                alt = _shift(core, *_anti_solar_offset(h * scale, az + turn, zen)) & ~cloud
                if alt.sum() >= 100:
                    alternatives.setdefault((scale, turn), []).append(shadow[alt].mean())
    assert len(exact) >= 5
    assert min(exact) >= 0.99
    for key, values in alternatives.items():
        assert np.mean(values) < 0.7, key
    assert np.mean(np.concatenate([np.asarray(v) for v in alternatives.values()])) < 0.5
    assert np.mean(alternatives[(1.0, 180.0)]) < 0.5  # nothing towards the sun


def test_sun_angles_follow_the_season(world):
    scenes = _originals(world)
    for s in scenes:
        assert 100 < s["sun_azimuth"] < 170
        assert 15 < s["sun_zenith"] < 62
        assert s["datetime"][11:13] == "02"
    zen = {s["datetime"][5:7]: s["sun_zenith"] for s in scenes}
    summer = [z for m, z in zen.items() if m in ("06", "07")]
    winter = [z for m, z in zen.items() if m in ("12", "01")]
    assert summer and winter and max(summer) < 25 and min(winter) > 50


def test_cloud_cover_varies_with_nearly_clear_scenes(world):
    cover = [s["cloud_fraction"] for s in _originals(world)]
    assert min(cover) < 0.02 and sum(c < 0.05 for c in cover) >= 2
    assert max(cover) > 0.4
    assert any(s["haze_fraction"] > 0.05 for s in world.scenes())


def test_cloud_probability_is_high_in_clouds_moderate_in_haze(world):
    values = {"cloud": [], "haze": [], "clear": [], "bright": []}
    landcover = world.truth_landcover()
    for s in _originals(world):
        prob = _read(world.root / "cogs" / s["system_index"] / "probability.tif")
        code = _read(world.root / "truth" / "clouds" / f"{s['item_id']}.tif")
        valid = prob != 255
        clear = valid & (code == 0) & ~world.truth_shadow(s["item_id"])
        values["cloud"].append(prob[valid & (code == 2)])
        values["haze"].append(prob[valid & (code == 1)])
        values["clear"].append(prob[clear & ~np.isin(landcover, (50, 60))])
        values["bright"].append(prob[clear & np.isin(landcover, (50, 60))])
    med = {k: float(np.median(np.concatenate(v))) for k, v in values.items()}
    assert med["cloud"] >= 80
    assert 30 <= med["haze"] <= 60
    assert med["clear"] <= 15
    assert med["bright"] > med["clear"] + 5  # s2cloudless flags bright ground


# ---- processing baseline and clean reflectance ----------------------------------------------
@pytest.mark.parametrize("band", ["B02", "B05", "B01"])
def test_harmonized_clear_pixels_equal_surface_reflectance(world, items, band):
    f = S2_BANDS[band] // 10
    for s in _on_world_grid(world):
        new = date.fromisoformat(s["datetime"][:10]) >= BASELINE_CHANGE
        assert (items[s["item_id"]]["properties"]["s2:processing_baseline"] >= "04.00") == new
        dn = _read(world.root / "cogs" / s["item_id"] / f"{band}.tif").astype(np.int32)
        truth = world.surface_reflectance(s["item_id"], band).astype(np.int32)
        contaminated = world.truth_cloud(s["item_id"]) | world.truth_shadow(s["item_id"])
        clear = (_agg(contaminated, f) == 0) & (truth > 0)
        assert clear.sum() > 0 or s["cloud_fraction"] > 0.3
        assert np.array_equal(dn[clear] - truth[clear], np.full(clear.sum(), 1000 if new else 0))
        assert (dn[dn > 0] >= (1001 if new else 1)).all()
        assert np.array_equal(dn == 0, truth == 0)  # nodata strip


def test_clouds_brighten_and_shadows_darken(world):
    ratios_cloud, ratios_shadow = [], []
    for s in _on_world_grid(world):
        dn = _read(world.root / "cogs" / s["item_id"] / "B08.tif").astype(float) - s["offset"]
        truth = world.surface_reflectance(s["item_id"], "B08").astype(float)
        cloud = world.truth_cloud(s["item_id"], include_haze=False) & (truth > 0)
        shadow = world.truth_shadow(s["item_id"]) & ~world.truth_cloud(s["item_id"]) & (truth > 0)
        if cloud.sum() > 100:
            ratios_cloud.append(np.median(dn[cloud] / truth[cloud]))
        if shadow.sum() > 100:
            ratios_shadow.append(np.median(dn[shadow] / truth[shadow]))
    assert np.median(ratios_cloud) > 1.3
    assert 0.2 < np.median(ratios_shadow) < 0.6


def test_nodata_strip_in_a_few_scenes(world):
    strips = [s for s in _on_world_grid(world) if s["nodata_fraction"] > 0]
    assert 1 <= len(strips) <= 4
    s = strips[0]
    scl = _read(world.root / "cogs" / s["item_id"] / "SCL.tif")
    b05 = _read(world.root / "cogs" / s["item_id"] / "B05.tif")
    assert (scl == 0).any() and np.array_equal(scl == 0, b05 == 0)
    edge = (scl[:, 0] == 0).all() or (scl[:, -1] == 0).all()
    assert edge


# ---- SCL ------------------------------------------------------------------------------------
def test_scl_disagrees_with_truth_at_the_documented_rates(world):
    landcover = world.truth_landcover()
    n = {k: 0 for k in ("cloud", "cloud_hit", "haze", "haze_hit", "shadow", "shadow_3",
                        "shadow_6", "water", "water_3", "clear", "clear_cloud")}
    for s in _on_world_grid(world):
        scl = _read(world.root / "cogs" / s["item_id"] / "SCL.tif")
        code = _read(world.root / "truth" / "clouds" / f"{s['item_id']}.tif")
        shadow = world.truth_shadow(s["item_id"])
        valid = scl > 0
        cloud = (_agg(code == 2, 2) >= 0.5) & valid
        haze = (_agg(code >= 1, 2) >= 0.5) & ~cloud & valid
        shade = (_agg(shadow, 2) >= 0.5) & ~cloud & ~haze & valid
        clear = (_agg((code == 0) & ~shadow, 2) == 1) & valid
        water = clear & (_agg(landcover == 80, 2) >= 0.5)
        is_cloud = np.isin(scl, (8, 9, 10))
        for key, mask, hit in (("cloud", cloud, is_cloud), ("haze", haze, is_cloud),
                               ("water", water, scl == 3), ("clear", clear, is_cloud)):
            n[key] += mask.sum()
            n[{"cloud": "cloud_hit", "haze": "haze_hit", "water": "water_3",
               "clear": "clear_cloud"}[key]] += (mask & hit).sum()
        n["shadow"] += shade.sum()
        n["shadow_3"] += (shade & (scl == 3)).sum()
        n["shadow_6"] += (shade & (scl == 6)).sum()
    rates = {
        "scl_cloud_recall": (n["cloud_hit"] / n["cloud"], SCL_CLOUD_RECALL),
        "scl_haze_recall": (n["haze_hit"] / n["haze"], SCL_HAZE_RECALL),
        "scl_shadow_recall": (n["shadow_3"] / n["shadow"], SCL_SHADOW_RECALL),
        "scl_shadow_as_water": (n["shadow_6"] / n["shadow"], SCL_SHADOW_AS_WATER),
        "scl_water_as_shadow": (n["water_3"] / n["water"], SCL_WATER_AS_SHADOW),
        "scl_clear_as_cloud": (n["clear_cloud"] / n["clear"], SCL_CLEAR_AS_CLOUD),
    }
    achieved = world.meta["scl"]["achieved"]
    for name, (measured, designed) in rates.items():
        assert abs(measured - designed) < 0.01, name
        assert abs(measured - achieved[name]) < 0.002, name
    assert SCL_CLOUD_RECALL < 1 and SCL_SHADOW_RECALL + SCL_SHADOW_AS_WATER < 1


# ---- labels -----------------------------------------------------------------------------------
def test_label_agreement_is_about_75_percent_and_worst_at_boundaries(world):
    truth, labels = world.truth_landcover(), world.labels()
    agreement = (truth == labels).mean()
    assert 0.70 <= agreement <= 0.80
    assert abs(agreement - world.meta["labels"]["agreement"]) < 1e-3
    assert set(np.unique(labels)) <= set(WORLDCOVER_CLASSES)
    from scipy import ndimage

    boundary = (ndimage.maximum_filter(truth, 5) != ndimage.minimum_filter(truth, 5))
    err_boundary = (truth != labels)[boundary].mean()
    err_interior = (truth != labels)[~boundary].mean()
    assert err_boundary > err_interior + 0.1
    # thematic confusions between similar classes, e.g. grass -> crop, shrub -> tree
    assert ((truth == 30) & (labels == 40)).sum() > 0
    assert ((truth == 20) & (labels == 10)).sum() > 0


def test_worldcover_item_like_planetary_computer(world):
    data = json.loads(world.item_collection_path("esa-worldcover").read_text())
    (item,) = data["features"]
    real = json.loads((Path(__file__).resolve().parents[1] / "data" / "pc" / "esa-worldcover-item.json")
                      .read_text())
    assert item["properties"]["esa_worldcover:product_version"] == "2.0.0"
    assert item["properties"]["start_datetime"].startswith("2021-01-01")
    assert item["properties"]["proj:epsg"] == 4326 == real["properties"]["proj:epsg"]
    assert set(real["properties"]) - {"created"} <= set(item["properties"])
    assert "https://stac-extensions.github.io/classification/v1.0.0/schema.json" in \
        item["stac_extensions"]
    classes = item["assets"]["map"]["classification:classes"]
    assert classes == real["assets"]["map"]["classification:classes"]  # color-hint, no name
    with rasterio.open(world.root / item["assets"]["map"]["href"]) as src:
        assert src.nodata == 0 and src.dtypes[0] == "uint8" and src.crs.to_epsg() == 4326
        assert src.res == pytest.approx((1 / 12000, 1 / 12000))
        assert src.transform.c * 12000 == pytest.approx(round(src.transform.c * 12000))
        published = src.read(1)
    # what a run sees on the UTM grid: the published map at pixel centres (world.labels())
    from lcgee.demo._worldcover import onto_grid, publish_grid

    geo = publish_grid(world.grid)
    assert published.shape == geo.shape
    assert np.array_equal(onto_grid(published, geo, world.grid), world.labels())


# ---- regions ----------------------------------------------------------------------------------
def test_regions_have_the_classes_to_train_and_map(world):
    truth = world.truth_landcover()
    assert set(DEMO_REGIONS) == {"train_west", "train_east", "map_south"}
    for name in DEMO_REGIONS:
        r0, r1, c0, c1 = world.region_window(name)
        classes = set(np.unique(truth[r0:r1, c0:c1]).tolist())
        assert len(classes) >= 6 and {10, 40, 50, 80} <= classes, (name, classes)
        grid = world.region_grid(name)
        assert grid.offset_in(world.grid) == (r0, c0) and grid.shape == (r1 - r0, c1 - c0)
    assert world.grid.transform == DEMO_GRID.transform


def test_paddies_flood_in_early_summer_and_green_up(world):
    sub = world.truth_subclass()
    paddy = sub == 41
    scenes = _originals(world)

    def doy(s):
        return datetime.fromisoformat(s["datetime"][:10]).timetuple().tm_yday

    flood = min(scenes, key=lambda s: abs(doy(s) - 150))
    summer = min(scenes, key=lambda s: abs(doy(s) - 235))
    assert abs(doy(flood) - 150) <= 15 and abs(doy(summer) - 235) <= 20

    def index(s, a, b):
        x = world.surface_reflectance(s["item_id"], a).astype(float)
        y = world.surface_reflectance(s["item_id"], b).astype(float)
        return (x - y) / (x + y + 1e-9)

    assert np.median(index(flood, "B03", "B08")[paddy]) > 0  # water-like (NDWI > 0)
    assert np.median(index(summer, "B08", "B04")[paddy]) > 0.6  # green rice (NDVI)
    forest = sub == 11
    assert np.median(index(flood, "B08", "B04")[forest]) > 0.7


# ---- STAC shape -------------------------------------------------------------------------------
def test_items_have_the_planetary_computer_shape(world, items):
    required = {"datetime", "platform", "constellation", "instruments", "eo:cloud_cover",
                "s2:mgrs_tile", "s2:datatake_id", "s2:datastrip_id", "s2:granule_id",
                "s2:product_uri", "s2:processing_baseline", "s2:product_type",
                "s2:mean_solar_azimuth", "s2:mean_solar_zenith", "proj:epsg",
                "s2:high_proba_clouds_percentage", "s2:water_percentage"}
    real = json.loads((Path(__file__).resolve().parents[1] / "data" / "pc" / "sentinel-2-l2a-items.json")
                      .read_text())["features"][0]
    by_id = {s["item_id"]: s for s in world.scenes()}
    for item_id, item in items.items():
        m = ID_RE.match(item_id)
        assert m, item_id
        mission, take, _, tile, _ = m.groups()
        props = item["properties"]
        assert required <= set(props) and item["collection"] == "sentinel-2-l2a"
        assert props["platform"] == f"Sentinel-2{mission[-1]}"
        # two UTM zones: the world's tile and a neighbouring zone's
        assert (props["s2:mgrs_tile"], props["proj:epsg"]) in {("52SFC", 32652),
                                                              ("53SJC", 32653)}
        assert props["s2:mgrs_tile"] == tile and props["s2:product_type"] == "S2MSI2A"
        assert props["s2:datatake_id"].startswith(f"G{mission}_{take}_")
        strip = DATASTRIP_RE.match(props["s2:datastrip_id"])
        assert strip and strip.group(2) > take
        assert by_id[item_id]["system_index"] == f"{take}_{strip.group(2)}_T{tile}"
        # the real field set: every real property, no proj:code, no raster:bands (nodata is
        # not declared), the extra assets
        assert set(real["properties"]) <= set(props) and "proj:code" not in props
        assert "raster:bands" not in json.dumps(item)
        assert set(item["assets"]) == set(S2_BANDS) | {"SCL", "AOT", "WVP", "visual",
                                                       "granule-metadata", "rendered_preview"}
        for key, asset in item["assets"].items():
            assert not asset["href"].startswith("/") and "://" not in asset["href"]
            assert (world.root / asset["href"]).is_file()
            assert asset["type"] == real["assets"][key]["type"], key
            assert asset["roles"] == real["assets"][key]["roles"], key
            if key in S2_BANDS:
                assert asset["eo:bands"][0]["name"] == key
                assert asset["gsd"] == S2_BANDS[key]
        w, s_, e, n = item["bbox"]
        assert 130.2 < w < e < 130.6 and 33.4 < s_ < n < 33.7
    pystac.ItemCollection.from_dict(json.loads(world.item_collection_path("sentinel-2-l2a")
                                               .read_text()))


def test_asset_metadata_matches_the_cogs(world, items):
    item = next(iter(items.values()))
    for asset in item["assets"].values():
        if "proj:shape" not in asset:
            continue  # metadata XML, PNG preview
        with rasterio.open(world.root / asset["href"]) as src:
            assert list(src.shape) == asset["proj:shape"]
            assert list(src.transform)[:6] == asset["proj:transform"]
            assert src.crs.to_epsg() == item["properties"]["proj:epsg"]


def test_second_zone_scenes_load_onto_the_world_grid(world, items):
    """Scenes published in EPSG:32653 come back onto the EPSG:32652 grid with their values."""
    from lcgee.load import load_stack, reflectance

    zone53 = [s for s in _originals(world) if s["epsg"] == 32653]
    assert 2 <= len(zone53) <= len(_originals(world)) // 4
    picked = [pystac.Item.from_dict({**items[s["item_id"]], "links": []}) for s in zone53[:2]]
    for it in picked:
        for a in it.assets.values():
            a.href = str(world.root / a.href)
        with rasterio.open(it.assets["B04"].href) as src:
            assert src.crs.to_epsg() == 32653
    refl = reflectance(load_stack(picked, world.grid, ["B04"], chunk=256), ["B04"]).compute()
    for t, s in enumerate(zone53[:2]):
        truth = world.surface_reflectance(s["item_id"], "B04")
        clear = ~(world.truth_cloud(s["item_id"]) | world.truth_shadow(s["item_id"])) & (truth > 0)
        got = np.rint(refl.isel(time=t).sel(band="B04").values * 10000)
        inner = np.zeros_like(clear)
        inner[2:-2, 2:-2] = True  # the warped edge may lose a pixel
        same = (got == truth)[clear & inner].mean()
        assert same > 0.9, same


def test_duplicate_granule_pair(world, items):
    dup = world.meta["duplicate"]
    a, b = items[dup["original"]], items[dup["duplicate"]]
    ma, mb = ID_RE.match(a["id"]), ID_RE.match(b["id"])
    assert ma.group(2) == mb.group(2) and ma.group(5) != mb.group(5)
    # reprocessed at a newer baseline (02.xx/03.xx -> 05.10): same datatake, new baseline suffix
    pa, pb = a["properties"], b["properties"]
    assert pa["s2:datatake_id"][:-7] == pb["s2:datatake_id"][:-7]
    assert pb["s2:processing_baseline"] == "05.10" and pa["s2:processing_baseline"] < "04.00"
    b04a = _read(world.root / a["assets"]["B04"]["href"]).astype(int)
    b04b = _read(world.root / b["assets"]["B04"]["href"]).astype(int)
    assert np.array_equal(np.where(b04a > 0, b04a + 1000, 0), b04b)  # the offset it carries
    sa = DATASTRIP_RE.match(a["properties"]["s2:datastrip_id"]).group(2)
    assert sa == DATASTRIP_RE.match(b["properties"]["s2:datastrip_id"]).group(2)
    same_key = [s for s in world.scenes() if s["system_index"] == dup["system_index"]]
    assert len(same_key) == 2 and len({s["system_index"] for s in world.scenes()}) == \
        len(world.scenes()) - 1


def test_collections_and_probability_items(world):
    for cid in ("sentinel-2-l2a", "esa-worldcover", "s2-cloud-probability"):
        coll = pystac.Collection.from_dict(json.loads(world.collection_path(cid).read_text()))
        assert coll.id == cid
        feats = json.loads(world.item_collection_path(cid).read_text())["features"]
        (bbox,) = coll.extent.spatial.bboxes
        for it in feats:
            assert it["collection"] == cid
            assert bbox[0] <= it["bbox"][0] and it["bbox"][2] <= bbox[2]
    probs = json.loads(world.item_collection_path("s2-cloud-probability").read_text())["features"]
    assert {p["id"] for p in probs} == {s["system_index"] for s in world.scenes()}
    assert all(set(p["assets"]) == {"probability"} for p in probs)


def test_acquisition_dates(world):
    scenes = _originals(world)
    days = [date.fromisoformat(s["datetime"][:10]) for s in scenes]
    assert len(scenes) >= 20 and (days[-1] - days[0]).days >= 365
    assert days[0] < BASELINE_CHANGE <= days[-1]
    for s, d in zip(scenes, days):
        assert (d - days[0]).days % 5 == 0
        same = [d2 for s2, d2 in zip(scenes, days) if s2["platform"] == s["platform"]]
        assert all((d2 - d).days % 10 == 0 for d2 in same)
    assert {s["platform"] for s in scenes} == {"Sentinel-2A", "Sentinel-2B"}


# ---- files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("asset", "res"), [("B02", 10), ("B05", 20), ("B01", 60), ("SCL", 20)])
def test_cogs_are_tiled_with_overviews_at_native_resolution(world, asset, res):
    s = world.scenes()[0]
    with rasterio.open(world.root / "cogs" / s["item_id"] / f"{asset}.tif") as src:
        assert src.res == (res, res)
        assert src.profile["tiled"] and src.block_shapes[0] == (512, 512)
        assert len(src.overviews(1)) >= 1
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert "TIFFTAG_DATETIME" not in src.tags()


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "build.json"}


def test_same_seed_same_bytes_other_seed_other_world(world, tmp_path):
    again = build_world(world.spec, tmp_path / "again", progress=False, workers=1)
    assert again.root != world.root
    first, second = _hashes(world.root), _hashes(again.root)
    assert len(first) > 300 and first == second
    small = WorldSpec(seed=world.spec.seed, size=192, n_scenes=20)
    other = WorldSpec(seed=world.spec.seed + 1, size=192, n_scenes=20)
    a = _hashes(build_world(small, tmp_path / "a", progress=False).root)
    b = _hashes(build_world(other, tmp_path / "b", progress=False).root)
    assert a["truth/landcover.tif"] != b["truth/landcover.tif"]
    assert a["world.json"] != b["world.json"]


def test_cache_is_reused_and_failed_builds_leave_nothing(world, tmp_path, monkeypatch):
    stamp = (world.root / "build.json").read_bytes()
    same = build_world(world.spec, world.root.parent, progress=False)
    assert same.root == world.root and (world.root / "build.json").read_bytes() == stamp
    assert not [p for p in world.root.parent.iterdir() if ".tmp-" in p.name]

    def boom(spec, root, **_):
        (root / "half.txt").write_text("half a world")
        raise RuntimeError("crash")

    monkeypatch.setattr(world_module, "generate", boom)
    with pytest.raises(RuntimeError):
        build_world(WorldSpec(seed=5, size=192, n_scenes=20), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_builder_loses_the_rename_and_uses_the_winner(world, tmp_path, monkeypatch):
    spec = WorldSpec(seed=11, size=192, n_scenes=20)
    final = tmp_path / f"world-v{world_module.WORLD_VERSION}-{spec.key}"

    def slow_builder(spec_, root, **_):
        (root / "world.json").write_text("{}")  # this builder's (unused) result
        final.mkdir()  # meanwhile another process finished first
        meta = dict(world.meta, spec=dataclasses.asdict(spec))
        (final / "world.json").write_text(json.dumps(meta))

    monkeypatch.setattr(world_module, "generate", slow_builder)
    got = build_world(spec, tmp_path, progress=False)
    assert got.root == final and got.spec == spec
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_spec_validation():
    with pytest.raises(ParamsError):
        WorldSpec(size=200)
    with pytest.raises(ParamsError):
        WorldSpec(start="2022-02-01")
    assert WorldSpec().key != WorldSpec(seed=1).key
