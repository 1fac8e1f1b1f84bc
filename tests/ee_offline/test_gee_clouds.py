"""The Earth Engine cloud-mask graph (lcgee.gee.cloudmask), built with the real earthengine-api
offline and evaluated by lcgee.gee.offline on the demo world's arrays, against the local
implementation (lcgee.clouds) on the same scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ee_fakes import info  # tests/ee_fakes.py

from lcgee import clouds, ee_stage, load, masks
from lcgee.errors import EarthEngineError
from lcgee.gee import cloudmask, emulator, offline, session
from lcgee.gee.connection import EarthEngineOptions
from lcgee.gee.retry import RetryPolicy
from lcgee.scenes import gee_index

NO_WAIT = RetryPolicy(sleep=lambda s: None, seed=0)
TUTORIAL_PARAMS = clouds.CloudMaskParams.from_mapping(clouds.TUTORIAL)


@pytest.fixture(scope="module", autouse=True)
def _offline_session():
    session.init_offline()


@pytest.fixture(scope="module")
def scenes(small_search, small_world):
    """Six scenes (one with a nodata wedge) read through the STAC API: arrays on the grid."""
    client, found = small_search
    grid = small_world.grid
    # scenes of the grid's UTM zone: Earth Engine computes a scene in its own projection, so
    # its masks equal the local ones only where that projection is the grid's
    items = [it for it in found if it.properties.get("proj:code") == grid.crs][:6]
    prob, missing = masks.load_probability(client, items, grid, chunk=128)
    assert not missing
    ds = load.load_stack(items, grid, ["B08", "SCL"], chunk=128)
    nir = load.reflectance(ds, ["B08"]).sel(band="B08", drop=True).values
    return {"items": items, "grid": grid, "prob": prob.values, "nir": nir,
            "scl": ds["SCL"].values, "azimuth": ds["sun_azimuth"].values, "client": client}


def _sources(scenes, t, window=None, azimuth=None):
    idx = gee_index(scenes["items"][t])
    cut = (slice(None), slice(None)) if window is None else window
    nir = scenes["nir"][t][cut]
    dn = np.where(np.isnan(nir), np.nan, np.rint(nir.astype(np.float64) * 10000))
    scl = np.where(np.isnan(nir), np.nan, scenes["scl"][t][cut].astype(np.float64))
    sr_id = f"{cloudmask.SR_COLLECTION}/{idx}"
    images = {sr_id: {"B8": dn, "SCL": scl},
              f"{cloudmask.PROBABILITY_COLLECTION}/{idx}": {"probability": scenes["prob"][t][cut]}}
    az = float(scenes["azimuth"][t]) if azimuth is None else azimuth
    return idx, images, {sr_id: {"MEAN_SOLAR_AZIMUTH_ANGLE": az}}


def _local(scenes, t, grid, params, window=None):
    cut = (slice(None), slice(None)) if window is None else window
    return clouds.s2cloudless_mask(
        scenes["prob"][t][cut], scenes["nir"][t][cut], scenes["scl"][t][cut],
        sun_azimuth=float(scenes["azimuth"][t]), resolution=grid.resolution,
        origin=(grid.transform[2], grid.transform[5]),
        anchor=(grid.transform[2], grid.transform[5]), **params)


def _offline(scenes, t, grid, params, window=None, azimuth=None):
    idx, images, props = _sources(scenes, t, window, azimuth)
    image = cloudmask.mask_codes(*cloudmask.scene_images(idx),
                                 clouds.CloudMaskParams.from_mapping(params), crs=grid)
    graph = json.loads(image.serialize())
    return offline.evaluate_graph(graph, images=images, properties=props,
                                  grid=grid)[cloudmask.MASK_BAND]


@pytest.mark.parametrize("params", [dict(clouds.TUTORIAL), dict(clouds.AGGRESSIVE),
                                    {**clouds.TUTORIAL, "exact_buffer": True}],
                         ids=["tutorial", "aggressive", "exact-buffer"])
def test_graph_equals_local_implementation_on_demo_scenes(scenes, params):
    grid = scenes["grid"]
    nodata_seen = 0
    for t in range(len(scenes["items"])):
        local = _local(scenes, t, grid, params)
        got = _offline(scenes, t, grid, params)
        assert got.dtype == np.uint8
        assert np.array_equal(got, local), f"scene {t}: {np.count_nonzero(got != local)} px differ"
        nodata_seen += int(np.count_nonzero(local == clouds.NODATA))
        assert np.count_nonzero(local == clouds.CLOUD) and np.count_nonzero(local == clouds.SHADOW)
    assert nodata_seen > 0  # the nodata edge case is part of the comparison


def test_graph_equals_local_on_a_window_not_aligned_to_100m(scenes):
    grid = scenes["grid"]
    window = (slice(37, 37 + 251), slice(53, 53 + 199))  # origin 370 m / 530 m off the grid
    sub = grid.window(37, 53, 251, 199)
    for t in (0, 3):
        local = _local(scenes, t, sub, dict(clouds.AGGRESSIVE), window)
        got = _offline(scenes, t, sub, dict(clouds.AGGRESSIVE), window)
        assert np.array_equal(got, local)


def test_comparison_is_sensitive_to_the_sun_direction(scenes):
    """Negative control: the graph with the opposite sun puts shadows elsewhere."""
    grid = scenes["grid"]
    t = 4
    local = _local(scenes, t, grid, dict(clouds.TUTORIAL))
    flipped = _offline(scenes, t, grid, dict(clouds.TUTORIAL),
                       azimuth=float(scenes["azimuth"][t]) + 180.0)
    shadow_local = local == clouds.SHADOW
    shadow_flipped = flipped == clouds.SHADOW
    assert np.count_nonzero(shadow_local != shadow_flipped) > 0.2 * np.count_nonzero(shadow_local)


@pytest.mark.parametrize("preset,buffer_px", [("tutorial", 5.0), ("aggressive", 10.0)])
def test_graph_uses_the_tutorial_scales_and_radii(preset, buffer_px):
    params = dict(clouds.PRESETS[preset])
    graph = json.loads(cloudmask.mask_codes(*cloudmask.scene_images("X"),
                                            clouds.CloudMaskParams.from_mapping(params)).serialize())
    calls = list(offline.invocations(graph))
    assert {"Image.directionalDistanceTransform", "Image.focalMin", "Image.focalMax",
            "Image.reproject", "Element.get"} <= {c["functionName"] for c in calls}
    scales = sorted({c["arguments"]["scale"]["constantValue"] for c in calls
                     if c["functionName"] == "Image.reproject"})
    assert scales == [20, 100]
    ddt = [c for c in calls if c["functionName"] == "Image.directionalDistanceTransform"]
    assert ddt[0]["arguments"]["maxDistance"]["constantValue"] == params["cld_prj_dist"] * 10
    radii = {c["functionName"]: c["arguments"]["radius"]["constantValue"] for c in calls
             if c["functionName"] in ("Image.focalMin", "Image.focalMax")}
    assert radii == {"Image.focalMin": 2, "Image.focalMax": buffer_px}
    thresholds = [c["arguments"]["image2"] for c in calls if c["functionName"] == "Image.gt"]
    assert any(json.dumps(params["cld_prb_thresh"]) in json.dumps(t) for t in thresholds)
    # The tutorial's projection when no CRS is pinned.
    assert "Image.projection" in {c["functionName"] for c in calls}


def test_joined_collection_uses_the_tutorial_join():
    import ee

    region = ee.Geometry.Rectangle([130.3, 33.5, 130.5, 33.7])
    col = cloudmask.masked_collection(region, "2021-04-01", "2021-10-01", cloud_filter=60,
                                      params=TUTORIAL_PARAMS)
    text = col.serialize()
    for needle in ("Join.saveFirst", "s2cloudless", "CLOUDY_PIXEL_PERCENTAGE",
                   cloudmask.SR_COLLECTION, cloudmask.PROBABILITY_COLLECTION,
                   "Image.directionalDistanceTransform", "system:index"):
        assert needle in text, needle


def test_bad_parameters_are_refused_before_any_graph():
    with pytest.raises(Exception, match="cld_prb_thresh"):
        cloudmask.mask_codes(*cloudmask.scene_images("X"),
                             clouds.CloudMaskParams(cld_prb_thresh=150))


def test_confirm_matches_one_batched_query_with_retry(scenes):
    ee_stub = ee_stage.demo_earth_engine(scenes["client"], scenes["items"], scenes["grid"])
    ids = [gee_index(it) for it in scenes["items"]] + ["20990101T000000_20990101T000000_T52SFC"]
    calls = []

    def flaky(query):
        calls.append(query)
        if len(calls) == 1:
            import ee

            raise ee.EEException("Too Many Requests: rate limit exceeded (429)")
        return ee_stub.get_info(query)

    found, missing = cloudmask.confirm_matches(ids, connection=info(flaky), policy=NO_WAIT)
    assert found == ids[:-1] and missing == ids[-1:]
    assert len(calls) == 2  # one query, retried once
    text = calls[0].serialize()  # both collections asked in the same request
    assert text.count("AggregateFeatureCollection.array") == 2
    assert cloudmask.SR_COLLECTION in text and cloudmask.PROBABILITY_COLLECTION in text


def test_confirm_matches_reports_a_refusal():
    import ee

    def refused(query):
        raise ee.EEException("Permission denied on project x")

    with pytest.raises(EarthEngineError, match="refused"):
        cloudmask.confirm_matches(["a"], connection=info(refused), policy=NO_WAIT)


def test_emulator_answers_tiles_of_the_whole_mask(scenes):
    """Tiles requested from the stand-in equal windows of the whole-scene local mask."""
    grid = scenes["grid"]
    ee_stub = ee_stage.demo_earth_engine(scenes["client"], scenes["items"], grid)
    t = 1
    idx = gee_index(scenes["items"][t])
    image = cloudmask.mask_codes(*cloudmask.scene_images(idx), TUTORIAL_PARAMS,
                                 crs=grid)
    local = _local(scenes, t, grid, dict(clouds.TUTORIAL))
    tile = grid.window(100, 40, 90, 130)
    a, b, c, d, e, f = tile.transform
    out = ee_stub.compute_pixels({
        "expression": image, "fileFormat": "NUMPY_NDARRAY",
        "grid": {"dimensions": {"width": tile.width, "height": tile.height},
                 "affineTransform": {"scaleX": a, "shearX": b, "translateX": c,
                                     "shearY": d, "scaleY": e, "translateY": f},
                 "crsCode": tile.crs}})
    assert out.dtype.names == (cloudmask.MASK_BAND,)
    assert np.array_equal(out[cloudmask.MASK_BAND], local[100:190, 40:170])


def test_gee_source_equals_local_source_and_resumes(scenes, tmp_path):
    """The stage's `gee` source through the stand-in: equal to the `local` source on every
    scene; a scene Earth Engine lacks falls back; a rerun is served from the tile cache."""
    from lcgee.params import CloudParams

    grid, items, client = scenes["grid"], scenes["items"], scenes["client"]
    stub = ee_stage.demo_earth_engine(client, items, grid)
    stub.catalog.discard(gee_index(items[2]))  # Earth Engine has no counterpart for this one
    cfg = CloudParams(source="gee", fallback="local", preset="aggressive")
    ee_args = EarthEngineOptions(connection=stub, cache_dir=tmp_path, workers=3, progress=False)
    got = masks.scene_masks(items, grid, cfg, client=client, chunk=128, earth_engine=ee_args)
    local = masks.scene_masks(items, grid, cfg.model_copy(update={"source": "local"}),
                              client=client, chunk=128)
    assert [i for i, _, _ in got] == [it.id for it in items]
    assert [s for _, s, _ in got] == ["gee", "gee", "local", "gee", "gee", "gee"]
    for (_, _, a), (_, _, b) in zip(got, local, strict=True):
        assert np.array_equal(a.values, b.values)
    first = stub.requests
    assert first >= 5
    again = masks.scene_masks(items, grid, cfg, client=client, chunk=128, earth_engine=ee_args)
    assert stub.requests == first  # every tile came from the cache
    assert all(np.array_equal(a.values, b.values) for (_, _, a), (_, _, b) in zip(got, again))


def test_gee_source_without_credentials_falls_back_or_stops(scenes, caplog):
    from lcgee.params import CloudParams

    grid, items, client = scenes["grid"], scenes["items"][:2], scenes["client"]
    session.init_offline()  # no live session
    cfg = CloudParams(source="gee", fallback="scl")
    got = masks.scene_masks(items, grid, cfg, client=client, chunk=128)
    assert [s for _, s, _ in got] == ["scl", "scl"]
    assert "earthengine authenticate" in caplog.text
    with pytest.raises(EarthEngineError, match="earthengine authenticate"):
        masks.scene_masks(items, grid, cfg.model_copy(update={"fallback": "none"}),
                          client=client, chunk=128)


def test_offline_evaluator_refuses_what_it_cannot_evaluate(scenes):
    from lcgee.errors import DataError

    grid = scenes["grid"]
    idx, images, props = _sources(scenes, 0)
    graph = json.loads(cloudmask.mask_codes(*cloudmask.scene_images(idx), TUTORIAL_PARAMS,
                                            crs=grid).serialize())
    with pytest.raises(DataError, match="grid="):  # reprojecting needs the sources' grid
        offline.evaluate_graph(graph, images=images, properties=props)
    with pytest.raises(DataError, match="MEAN_SOLAR_AZIMUTH_ANGLE"):
        offline.evaluate_graph(graph, images=images, grid=grid)
    with pytest.raises(DataError, match="no arrays"):
        offline.evaluate_graph(graph, images=images, grid=grid,
                               properties={**props, "other/image": {"a": 1}})
    import ee

    square = ee.Image(f"{cloudmask.SR_COLLECTION}/{idx}").select("B8").focalMax(2, "square")
    with pytest.raises(offline.UnsupportedOperationError, match="circle"):
        offline.evaluate_graph(json.loads(square.serialize()), images=images, grid=grid)


def test_emulator_refuses_malformed_requests(scenes):
    from lcgee.errors import DataError

    stub = emulator.OfflineEarthEngine(scenes["grid"], lambda asset_id: ({}, {}))
    with pytest.raises(DataError, match="affineTransform"):
        stub.compute_pixels({"expression": {}, "grid": {"dimensions": {"width": 2}}})
    with pytest.raises(DataError, match="NUMPY_NDARRAY"):
        stub.compute_pixels({"expression": {}, "fileFormat": "GEO_TIFF", "grid": {}})
