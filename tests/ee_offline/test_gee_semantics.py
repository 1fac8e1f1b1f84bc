"""Issue 12: lcgee's Earth Engine graphs checked against Earth Engine's documented semantics
(docs/earth-engine-semantics.md): exports, request sizes, tree text, masks and footprints,
qualityMosaic, empty periods, grid origins, coarse reads, WorldCover and the whole chain.
No network is used."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ee")

from ee_fakes import pixels  # tests/ee_fakes.py
from toys import masked_stack  # tests/toys.py

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
    got = live.fetch_pixels(image, grid, connection=pixels(compute), cache_dir=tmp_path)
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
    small = live.fetch_pixels(image, GRID, connection=pixels(compute), cache_dir=tmp_path)
    assert len(requests) == 1 and small.shape == GRID.shape



# ----------------------------------------------------------------------------- 1, 7: composites


def _evaluate_composite(image, client, items, grid, bands):
    from lcgee import ee_stage
    from lcgee.gee import offline

    graph = json.loads(image.serialize())
    loader = ee_stage.stac_loader(client, items, grid, chunk=128, bands=bands)
    images, props = {}, {}
    for asset_id in sorted(offline.loaded_ids(graph)):
        images[asset_id], props[asset_id] = loader(asset_id)
    return offline.evaluate_graph(graph, images=images, properties=props, grid=grid)


@pytest.fixture(scope="module")
def scenes(small_search, small_world):
    client, found = small_search
    items = found[:8]
    grid = small_world.grid
    cfg, masked = masked_stack(client, items, grid, BANDS4)
    return client, items, grid, cfg, masked


BANDS4 = ["B02", "B04", "B08", "B11"]


def test_empty_month_gives_masked_bands_not_a_server_error(offline_session, scenes):
    import datetime as dt

    from lcgee.gee import composite as gee_composite
    from lcgee.gee import offline
    from lcgee.masks import cloud_params
    from lcgee.scenes import gee_index

    client, items, grid, cfg, _ = scenes
    first = min(it.datetime for it in items).date()
    start = dt.date(first.year - 1, first.month, 1)  # a year of months without scenes first
    image = gee_composite.scene_composite([gee_index(it) for it in items[:2]], method="monthly",
                                          bands=BANDS4, cloud=cloud_params(cfg), crs=grid,
                                          dates=(start, first), index_names=["NDVI"])
    out = _evaluate_composite(image, client, items[:2], grid, BANDS4)
    empty = f"m{start.year:04d}{start.month:02d}_"
    assert np.all(np.isnan(out[empty + "B04"])) and np.all(np.isnan(out[empty + "NDVI"]))
    full = f"m{first.year:04d}{first.month:02d}_"
    assert np.isfinite(out[full + "B04"]).mean() > 0.3
    # the evaluator models the failure the service reports for a band-less image
    ee = pytest.importorskip("ee")
    bare = ee.ImageCollection.fromImages([]).median().select(["B4"])
    with pytest.raises(EarthEngineError, match="applied to an Image with no bands"):
        offline.evaluate_graph(json.loads(bare.serialize()), {"B4": np.zeros((2, 2))})


def test_best_and_monthly_server_composites_equal_the_local_ones(offline_session, scenes):
    from lcgee import composite
    from lcgee.gee import composite as gee_composite
    from lcgee.masks import cloud_params
    from lcgee.scenes import gee_index

    client, items, grid, cfg, masked = scenes
    keys = [gee_index(it) for it in items]
    from lcgee.masks import load_probability

    prob, _ = load_probability(client, items, grid, chunk=128)
    score = prob.assign_coords(time=masked["time"].values).fillna(100.0)
    local = composite.composite(masked, "best", score=score)["composite"].values
    image = gee_composite.scene_composite(keys, method="best", bands=BANDS4,
                                          cloud=cloud_params(cfg), crs=grid)
    out = _evaluate_composite(image, client, items, grid, BANDS4)
    for k, band in enumerate(BANDS4):
        assert np.array_equal(np.isnan(out[band]), np.isnan(local[k])), band
        ok = np.isfinite(local[k])
        np.testing.assert_allclose(out[band][ok], local[k][ok], atol=2e-7)

    monthly = composite.composite(masked, "monthly")["composite"]
    times = [it.datetime.date() for it in items]
    image = gee_composite.scene_composite(keys, method="monthly", bands=BANDS4,
                                          cloud=cloud_params(cfg), crs=grid,
                                          dates=(min(times), max(times)))
    out = _evaluate_composite(image, client, items, grid, BANDS4)
    assert monthly.sizes["month"] >= 2
    for m, start in enumerate(monthly["month"].values):
        prefix = "m" + str(start)[:7].replace("-", "") + "_"
        for k, band in enumerate(BANDS4):
            loc = monthly.values[m, k]
            assert np.array_equal(np.isnan(out[prefix + band]), np.isnan(loc)), prefix + band
            ok = np.isfinite(loc)
            np.testing.assert_allclose(out[prefix + band][ok], loc[ok], atol=2e-7)


# ----------------------------------------------------------------------------- 9: tree text


def test_tree_lines_use_the_proven_spacing_at_full_precision():
    from lcgee.gee.trees import tree_to_string

    threshold = 0.12345678901234567
    tree = {"split_index": 0, "split_feature": 0, "threshold": threshold, "decision_type": "<=",
            "default_left": True, "missing_type": "None",
            "left_child": {"leaf_value": -0.1}, "right_child": {"leaf_value": 1 / 3}}
    lines = tree_to_string(tree, ["B4"]).split("\n")
    assert lines[1] == f"2) B4 <= {threshold!r} 1 0 -0.1 *"  # geemap: f"{cnt}) {fname} {sign} ..."
    assert lines[2] == f"3) B4 > {threshold!r} 1 0 {1 / 3!r} *"
    assert float(lines[1].split()[3]) == threshold


def test_table_route_builds_features_like_the_proven_exporter(offline_session):
    from lcgee.gee.trees import EEClassifierSpec

    tree = "1) root 1 0 0\n2) B4 <= 0.5 1 0 -1.0 *\n3) B4 > 0.5 1 0 1.0 *"
    spec = EEClassifierSpec(["B4"], [10, 20], trees=[[tree], [tree]])
    fc = json.loads(classify.trees_feature_collection(spec).serialize())
    text = json.dumps(fc)
    assert "GeometryConstructors.Point" in text  # a dummy geometry, not None
    assert tree.replace("\n", "#") in text and tree not in text
    clf = json.loads(classify.classifier_from_table("projects/p/assets/trees", 0,
                                                    "RAW_REGRESSION").serialize())
    calls = [c for c in _calls(clf) if c["functionName"] == "String.replace"]
    assert calls and calls[0]["arguments"]["regex"]["constantValue"] == "#"
    assert calls[0]["arguments"]["replacement"]["constantValue"] == "\n"


def _calls(graph):
    from lcgee.gee import offline

    return list(offline.invocations(graph))


# ----------------------------------------------------------------------------- 10: output modes


def test_regression_fallback_says_it_is_undocumented(offline_session):
    from lcgee.errors import DataWarning
    from lcgee.gee.trees import EEClassifierSpec
    from lcgee.params import EEParams

    tree = "1) root 1 0 0\n2) B04 <= 0.5 1 0 -1.0 *\n3) B04 > 0.5 1 0 1.0 *"
    spec = EEClassifierSpec(["B04"], [10, 20], trees=[[tree], [tree]])
    with pytest.warns(DataWarning, match="does not document"):
        classify.classification_graph(spec, mode="REGRESSION")
    assert "UNDOCUMENTED" in EEParams.model_fields["output_mode"].description


# ----------------------------------------------------------------------------- 6: footprints


def test_pixels_outside_a_granule_footprint_are_nodata(offline_session):
    from lcgee import clouds
    from lcgee.gee import cloudmask, offline

    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (60, 80))
    rng = np.random.default_rng(0)
    b8 = rng.uniform(2000, 4000, grid.shape)
    b8[:, 50:] = np.nan  # the granule's data ends at column 50
    scl = np.where(np.isnan(b8), np.nan, 4.0)
    prob = rng.uniform(0, 30, grid.shape)
    prob[:, 50:] = np.nan
    sr, pr = cloudmask.scene_images("X")
    graph = json.loads(cloudmask.mask_codes(sr, pr, crs=grid).serialize())
    images = {f"{cloudmask.SR_COLLECTION}/X": {"B8": b8, "SCL": scl},
              f"{cloudmask.PROBABILITY_COLLECTION}/X": {"probability": prob}}
    props = {f"{cloudmask.SR_COLLECTION}/X": {"MEAN_SOLAR_AZIMUTH_ANGLE": 150.0}}
    codes = offline.evaluate_graph(graph, images=images, properties=props, grid=grid,
                                   masked=True)[cloudmask.MASK_BAND]
    assert np.all(codes[:, 50:] == clouds.NODATA) and not np.ma.is_masked(codes[:, 50:])
    assert np.all(codes[:, :45] == clouds.CLEAR)
    # the evaluator models mask() as keeping the footprint (API reference of Image.mask)
    ee = pytest.importorskip("ee")
    m = offline.evaluate_graph(json.loads(ee.Image("a").mask().serialize()),
                               images={"a": {"B8": b8}}, masked=True)["B8"]
    assert np.ma.getmaskarray(m)[:, 50:].all() and np.all(m[:, :50] == 1)


# ----------------------------------------------------------------------------- 12: whole chain


def test_whole_server_chain_equals_the_local_map_bit_for_bit(offline_session, scenes):
    """DN scenes -> cloud mask -> median -> reflectance -> indices -> trees -> labels, as the
    server graph says, evaluated offline, against the local pipeline: the same features bit
    for bit and 0 label flips (float32 casts in the graph by design)."""
    import lightgbm as lgb
    import xarray as xr

    from lcgee import composite, indices
    from lcgee.gee import composite as gee_composite
    from lcgee.gee.trees import booster_to_ee_trees
    from lcgee.masks import cloud_params
    from lcgee.scenes import gee_index

    client, items, grid, cfg, masked = scenes
    index_names = ["NDVI", "NDWI", "SAVI", "EVI"]  # constants too
    local_comp = composite.composite(masked, "median")["composite"]
    feats = indices.compute_indices(local_comp, index_names)
    names = [str(b) for b in feats["band"].values]
    X = feats.values.reshape(len(names), -1).T.astype(np.float64)
    ok = np.all(np.isfinite(X), axis=1)
    rng = np.random.default_rng(0)
    y = np.digitize(X[:, names.index("NDVI")], [0.2, 0.4]) * ok  # 3 classes
    train = rng.choice(np.flatnonzero(ok), 5000, replace=False)
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 15, "verbose": -1,
              "num_threads": 1, "seed": 0, "deterministic": True, "min_data_in_leaf": 5}
    booster = lgb.train(params, lgb.Dataset(X[train], y[train], feature_name=names),
                        num_boost_round=20)
    local = np.zeros(X.shape[0], np.uint8)
    local[ok] = np.array([10, 20, 30])[np.argmax(booster.predict(X[ok]), axis=1)]
    spec = booster_to_ee_trees(booster, class_values=[10, 20, 30])

    image = gee_composite.scene_composite([gee_index(it) for it in items], method="median",
                                          bands=BANDS4, cloud=cloud_params(cfg), crs=grid)
    graph = classify.classification_graph(spec, image, available_bands=BANDS4)
    out = _evaluate_composite_graph(graph, client, items, grid)
    ee_map = np.nan_to_num(out["landcover"]).astype(np.uint8).ravel()
    assert int((ee_map != local).sum()) == 0
    features = classify.feature_image(image, names, available_bands=BANDS4)
    got = _evaluate_composite_graph(json.loads(features.serialize()), client, items, grid)
    for k, name in enumerate(names):
        assert np.array_equal(got[name], feats.values[k], equal_nan=True), name
    assert isinstance(feats, xr.DataArray)


def _evaluate_composite_graph(graph, client, items, grid):
    from lcgee import ee_stage
    from lcgee.gee import offline

    loader = ee_stage.stac_loader(client, items, grid, chunk=128, bands=BANDS4)
    images, props = {}, {}
    for asset_id in sorted(offline.loaded_ids(graph)):
        images[asset_id], props[asset_id] = loader(asset_id)
    return offline.evaluate_graph(graph, images=images, properties=props, grid=grid)


# ----------------------------------------------------------------------------- 11: WorldCover


def test_worldcover_from_earth_engine_through_the_tiled_downloader(offline_session, small_search,
                                                                   small_world, tmp_path):
    from lcgee import labels
    from lcgee.gee import emulator, worldcover
    from lcgee.gee.connection import EarthEngineOptions

    client, _ = small_search
    grid = small_world.grid
    truth = labels.load_worldcover(grid, source="demo", client=client).values

    def loader(asset_id):
        assert asset_id == worldcover.WORLDCOVER_IMAGE
        return {"Map": np.where(truth == 0, np.nan, truth.astype(np.float64))}, {}

    standin = emulator.OfflineEarthEngine(grid, loader)
    got = labels.load_worldcover(grid, source="earth-engine", earth_engine=EarthEngineOptions(
        connection=standin, cache_dir=tmp_path))
    assert got.dtype == np.uint8 and np.array_equal(got.values, truth)
    assert standin.requests >= 1
    # coarser grid: mode of the 10 m codes, as the Planetary Computer route (odc-stac "mode")
    coarse = grid.coarsen(2)
    got2 = labels.load_worldcover(coarse, source="earth-engine", earth_engine=EarthEngineOptions(
        connection=standin, cache_dir=tmp_path)).values
    blocks = truth.reshape(coarse.height, 2, coarse.width, 2).transpose(0, 2, 1, 3).reshape(
        coarse.height, coarse.width, 4)
    unanimous = np.all(blocks == blocks[..., :1], axis=-1)
    assert np.array_equal(got2[unanimous], blocks[..., 0][unanimous])
    three = np.sum(blocks == blocks[..., :1], axis=-1) >= 3  # a clear majority
    assert np.array_equal(got2[three & (blocks[..., 0] > 0)],
                          blocks[..., 0][three & (blocks[..., 0] > 0)])
    with pytest.raises(Exception, match="whole multiple"):
        worldcover.fine_grid(Grid(grid.crs, (15.0, 0, 0, 0, -15.0, 0), (4, 4)))


# ----------------------------------------------------------------------------- 4: grid origins


def test_pinned_working_grids_are_anchored_at_the_grid_corner_on_both_sides(offline_session):
    from lcgee import clouds
    from lcgee.gee import cloudmask, offline

    grid = Grid("EPSG:32652", (10.0, 0.0, 620030.0, 0.0, -10.0, 3725360.0), (40, 50))
    graph = json.loads(cloudmask.mask_codes(*cloudmask.scene_images("X"), crs=grid).serialize())
    repro = [c for c in offline.invocations(graph) if c["functionName"] == "Image.reproject"]
    assert len(repro) >= 2 and all("crsTransform" in c["arguments"] and "scale" not in
                                   c["arguments"] for c in repro)
    text = json.dumps(graph)
    for scale in (100.0, 20.0):
        assert json.dumps([scale, 0, 620030.0, 0, -scale, 3725360.0]) in text
    # the local algorithm's 100 m cells start at the same corner (not at multiples of 100 m)
    cols = clouds._coarse_offsets(10.0, 100.0, (620030.0, 3725360.0), (620030.0, 3725360.0))
    assert cols == (0.0, 0.0)
    assert clouds._coarse_offsets(10.0, 100.0, (620030.0, 3725360.0)) == (-3.0, -4.0)


# ----------------------------------------------------------------------------- 5: coarse reads


def test_pyramid_reads_average_continuous_bands_and_sample_the_others(offline_session):
    from lcgee.gee import offline

    ee = pytest.importorskip("ee")
    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (8, 8))
    prob = np.arange(64, dtype=float).reshape(8, 8)
    prob[0, 0] = np.nan  # masked: left out of its block's mean
    scl = np.arange(64, dtype=float).reshape(8, 8) + 100
    graph = json.loads(ee.Image("a").reproject(crs="EPSG:32633", scale=20).serialize())
    near = offline.evaluate_graph(graph, images={"a": {"probability": prob, "SCL": scl}},
                                  grid=grid)
    pyr = offline.evaluate_graph(graph, images={"a": {"probability": prob, "SCL": scl}},
                                 grid=grid, pyramid_bands=("probability",))
    assert near["probability"][0, 2] == prob[1, 3]  # nearest: the pixel under the 20 m centre
    assert pyr["probability"][0, 2] == pytest.approx(np.mean(prob[0:2, 2:4]))
    assert pyr["probability"][0, 0] == pytest.approx(np.mean([1.0, 8.0, 9.0]))
    assert pyr["SCL"][0, 2] == scl[0, 2]  # sampled: the block's top-left pixel


def test_dry_run_chain_graph_equals_the_local_chain_on_synthetic_scenes(offline_session):
    import xarray as xr

    from lcgee import composite, indices
    from lcgee.gee import chain, offline, reader
    from lcgee.gee.trees import EEClassifierSpec

    rng = np.random.default_rng(5)
    bands = ["B04", "B08"]
    n, shape = 4, (12, 10)
    dn = rng.integers(1, 6000, (n, 2, *shape)).astype(np.float64)
    dn[:, :, 0, 0] = 0  # both bands 0 reflectance-wise -> NDVI 0/0: local NaN, unclassified
    codes = rng.choice([0, 0, 0, 1, 2], (n, *shape)).astype(np.uint8)
    refl = (dn.astype(np.float32) / np.float32(10000)).astype(np.float32)
    masked = np.where((codes == 0)[:, None], refl, np.float32(np.nan))
    stack = xr.DataArray(masked, dims=("time", "band", "y", "x"),
                         coords={"band": bands, "time": np.arange(n)})
    feats = indices.compute_indices(composite.composite(stack, "median")["composite"], ["NDVI"])
    tree = "1) root 1 0 0\n2) NDVI <= 0.1 1 0 -1.0 *\n3) NDVI > 0.1 1 0 1.0 *"
    other = "1) root 1 0 0\n2) B04 <= 0.3 1 0 0.5 *\n3) B04 > 0.3 1 0 -0.5 *"
    spec = EEClassifierSpec(["B04", "B08", "NDVI"], [10, 20], trees=[[tree], [other]])
    X = feats.values.reshape(3, -1).T.astype(np.float64)
    ok = np.all(np.isfinite(X), axis=1)
    local = np.zeros(X.shape[0], np.uint8)
    local[ok] = reader.classify(spec, X[ok])
    graph = chain.chain_graph(spec, n, method="median", bands=bands, index_names=["NDVI"])
    images = {}
    for i in range(n):
        images[chain.SCENE_ID.format(i)] = {"B4": dn[i, 0], "B8": dn[i, 1]}
        images[chain.MASK_ID.format(i)] = {"cloud_mask": codes[i].astype(np.float64)}
    out = offline.evaluate_graph(graph, images=images)
    ee_map = np.nan_to_num(out["landcover"]).astype(np.uint8).ravel()
    assert not ok.all() and np.array_equal(ee_map, local)
