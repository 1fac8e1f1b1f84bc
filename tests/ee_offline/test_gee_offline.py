"""Earth Engine graphs built offline and evaluated locally: feature and label parity, routing,
exports and session handling. No network is used."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest
import xarray as xr

pytest.importorskip("ee")

from lcgee import indices
from lcgee.errors import EarthEngineError, ModelError
from lcgee.gee import classify, offline, session
from lcgee.gee.trees import EEClassifierSpec, booster_to_ee_trees
from lcgee.grid import Grid

BANDS = ["B02", "B03", "B04", "B08", "B11"]
INDEX_NAMES = ["NDVI", "NDWI", "MNDWI"]
FEATURES = BANDS + INDEX_NAMES
CLASSES = [10, 30, 50, 80]
SIZE = 64


# ----------------------------------------------------------------------------- fixtures


def _composite(seed: int) -> dict[str, np.ndarray]:
    """Synthetic reflectance (float32, 0.01-0.6) with spatial structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    out = {}
    for i, band in enumerate(BANDS):
        smooth = 0.3 + 0.25 * np.sin(3 * xx * (i + 1) + 2 * yy) * np.cos(2 * yy * (i + 2))
        out[band] = np.clip(smooth + rng.normal(0, 0.05, (SIZE, SIZE)), 0.01, 0.6) \
            .astype(np.float32)
    return out


def _local_features(bands: dict[str, np.ndarray]) -> xr.DataArray:
    da = xr.DataArray(np.stack([bands[b] for b in BANDS]), dims=("band", "y", "x"),
                      coords={"band": BANDS})
    return indices.compute_indices(da, INDEX_NAMES)


def _matrix(features: dict[str, np.ndarray] | xr.DataArray) -> np.ndarray:
    if isinstance(features, xr.DataArray):
        cols = [features.sel(band=f).values.ravel() for f in FEATURES]
    else:
        cols = [np.asarray(features[f]).ravel() for f in FEATURES]
    return np.stack(cols, axis=1).astype(np.float64)


@pytest.fixture(scope="module")
def offline_session():
    session.init_offline()
    yield
    # leave the offline session in place: other tests in this module rely on it


@pytest.fixture(scope="module")
def model():
    """A 4-class LightGBM model on bands + indices of a synthetic composite."""
    train = _local_features(_composite(1))
    X = _matrix(train)
    # labels from a rule with noise so trees use bands and indices
    ndvi, mndwi, b11 = X[:, 5], X[:, 7], X[:, 4]
    score = np.stack([ndvi, mndwi, b11, -ndvi - mndwi], axis=1)
    score += np.random.default_rng(2).normal(0, 0.05, score.shape)
    y = np.argmax(score, axis=1)
    params = {"objective": "multiclass", "num_class": 4, "num_leaves": 15, "learning_rate": 0.2,
              "use_missing": False, "num_threads": 1, "verbose": -1, "seed": 3,
              "deterministic": True, "force_row_wise": True}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=FEATURES), num_boost_round=30)
    return booster


# ----------------------------------------------------------------------------- session


def test_init_offline_is_idempotent_and_needs_no_network(offline_session):
    import ee

    session.init_offline()
    session.init_offline()
    assert session.session_mode() == "offline"
    # the catalog is loaded: Classifier and Image methods exist and graphs serialise
    image = ee.Image.constant(1).add(2)
    assert json.loads(image.serialize())["values"]
    assert hasattr(ee.Classifier, "decisionTreeEnsemble")


def test_init_live_without_credentials_says_how_to_authenticate(monkeypatch, tmp_path):
    import ee

    # no stored credentials, no ADC file, no GCE metadata probing: nothing to find, no network
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("EE_CREDENTIALS", raising=False)

    def no_default(*args, **kwargs):
        import google.auth.exceptions

        raise google.auth.exceptions.DefaultCredentialsError("none (test)")

    monkeypatch.setattr("google.auth.default", no_default)
    monkeypatch.setattr(ee.oauth, "get_credentials_path", lambda: str(tmp_path / "none"))
    try:
        with pytest.raises(EarthEngineError, match="earthengine authenticate"):
            session.init_live("my-project")
    finally:
        session.init_offline()


def test_init_live_bad_key_file_does_not_echo_it(monkeypatch, tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account", "private_key": "SECRET-KEY-TEXT"')
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    try:
        with pytest.raises(EarthEngineError) as info:
            session.init_live("my-project")
    finally:
        session.init_offline()
    assert "SECRET" not in str(info.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(info.value)


# ----------------------------------------------------------------------------- parity


def _graph_and_run(spec: EEClassifierSpec, composite: dict[str, np.ndarray], mode: str):
    features_img = classify.feature_image(classify.placeholder_composite(), spec.feature_names)
    features_graph = json.loads(features_img.serialize())
    labels_graph = classify.classification_graph(spec, mode=mode)
    # the graph survives a JSON round trip (what ee_graph.json holds)
    labels_graph = json.loads(json.dumps(labels_graph))
    return (offline.evaluate_graph(features_graph, composite),
            offline.evaluate_graph(labels_graph, composite))


@pytest.mark.parametrize("mode", ["RAW_REGRESSION", "REGRESSION"])
def test_offline_graph_matches_local_features_and_lightgbm(offline_session, model, mode):
    spec = booster_to_ee_trees(model, class_values=CLASSES)
    composite = _composite(11)
    feats, labels = _graph_and_run(spec, composite, mode)

    assert list(feats) == FEATURES
    local = _local_features(composite)
    for name in FEATURES:
        np.testing.assert_allclose(feats[name], local.sel(band=name).values, atol=1e-6, rtol=0)

    assert list(labels) == ["landcover"]
    got = labels["landcover"]
    assert got.shape == (SIZE, SIZE) and got.dtype == np.uint8
    # LightGBM on the locally computed features (what the local pipeline would map)
    expected_local = np.asarray(CLASSES)[np.argmax(model.predict(_matrix(local)), axis=1)]
    # ... and on the features as Earth Engine computes them (double precision)
    expected_ee = np.asarray(CLASSES)[np.argmax(model.predict(_matrix(feats)), axis=1)]
    assert np.array_equal(got.ravel(), expected_ee)
    assert np.array_equal(got.ravel(), expected_local)
    assert len(np.unique(got)) >= 3  # the test exercises several classes


def test_raw_regression_graph_shape(offline_session, model):
    spec = booster_to_ee_trees(model, class_values=CLASSES)
    graph = classify.classification_graph(spec)
    names = offline.function_names(graph)
    assert {"Classifier.decisionTreeEnsemble", "Classifier.setOutputMode", "Image.classify",
            "Image.arrayReduce", "Image.arrayArgmax", "Image.remap", "Image.toUint8"} <= names
    text = json.dumps(graph)
    assert "RAW_REGRESSION" in text and "Image.load" in text


def test_masked_pixels_stay_masked(offline_session, model):
    spec = booster_to_ee_trees(model, class_values=CLASSES)
    composite = _composite(5)
    composite["B04"] = composite["B04"].copy()
    composite["B04"][:3, :] = np.nan
    out = offline.evaluate_graph(classify.classification_graph(spec), composite, masked=True)
    lab = out["landcover"]
    assert lab.mask[:3, :].all() and not lab.mask[3:, :].any()


# ----------------------------------------------------------------------------- errors


def test_feature_image_refuses_unknown_feature(offline_session):
    with pytest.raises(ModelError, match="elevation"):
        classify.feature_image(classify.placeholder_composite(), ["B04", "elevation", "NDVI"])
    # an extra band is fine when declared
    img = classify.feature_image(classify.placeholder_composite(), ["B04", "elevation"],
                                 available_bands=["B04", "elevation"])
    assert "elevation" in img.serialize()


def test_offline_evaluator_lists_unknown_functions(offline_session):
    import ee

    image = ee.Image(classify.PLACEHOLDER_ID).select(["B04"]).focal_max(2).sqrt()
    with pytest.raises(offline.UnsupportedOperationError) as info:
        offline.evaluate_graph(json.loads(image.serialize()), _composite(0))
    assert "Image.focal_max" in str(info.value) or "Image.focalMax" in str(info.value) \
        or "Image.reduceNeighborhood" in str(info.value)
    assert "Image.sqrt" in str(info.value)


def test_ee_divide_by_zero_is_masked_like_the_local_nan(offline_session):
    comp = _composite(0)
    comp["B08"][:8] = 0
    comp["B04"][:8] = 0
    img = classify.feature_image(classify.placeholder_composite(), ["NDVI"])
    out = offline.evaluate_graph(json.loads(img.serialize()), comp)
    assert np.all(np.isnan(out["NDVI"][:8])) and np.all(np.isfinite(out["NDVI"][8:]))
    # Earth Engine's own divide gives 0 there (API reference), which the evaluator models
    raw = classify.placeholder_composite().select(["B08"]).divide(
        classify.placeholder_composite().select(["B04"]))
    assert np.all(offline.evaluate_graph(json.loads(raw.serialize()), comp)["B08"][:8] == 0)


# ----------------------------------------------------------------------------- routing, export


def test_payload_route_switches_to_table_asset(offline_session, model):
    spec = booster_to_ee_trees(model, class_values=CLASSES)
    assert classify.payload_route(spec) == "inline"
    tree = spec.trees[0][0]
    n_big = int(9_000_000 / len(tree)) + 1
    big = EEClassifierSpec(spec.feature_names, [1, 2], trees=[[tree] * n_big, [tree]])
    assert big.payload_bytes() > 8_000_000
    assert classify.payload_route(big) == "table-asset"
    assert classify.payload_route(spec, limit_bytes=spec.payload_bytes()) == "table-asset"
    fc = classify.trees_feature_collection(spec)
    assert "Feature" in fc.serialize()
    clf = classify.classifier_from_table("projects/p/assets/trees", 0, "RAW_REGRESSION")
    assert "decisionTreeEnsemble" in clf.serialize()


GRID = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (100, 200))


@pytest.mark.parametrize("to,key", [("asset", "assetExportOptions"),
                                    ("drive", "fileExportOptions"),
                                    ("cloud-storage", "fileExportOptions")])
def test_export_task_config(offline_session, to, key):
    img = classify.placeholder_composite().select(["B04"])
    path = "projects/p/assets/lc" if to == "asset" else "bucket/lc"
    (task, cfg), = classify.export_task(img, GRID, to=to, path=path, max_pixels=123_456_789)
    assert task.task_type == "EXPORT_IMAGE" and task.state == "UNSUBMITTED"
    assert cfg["type"] == "EXPORT_IMAGE" and cfg["destination"] == to
    assert cfg["crs"] == "EPSG:32633" and cfg["dimensions"] == "200x100"
    assert cfg["crsTransform"] == list(GRID.transform)
    assert task.config["maxPixels"] == {"value": "123456789"}
    assert key in task.config
    expr = task.config["expression"].serialize()
    assert "EPSG:32633" in expr and "500000" in expr


@pytest.mark.parametrize("n", [3, 4, 6])
def test_export_task_splits(offline_session, n):
    img = classify.placeholder_composite().select(["B04"])
    tasks = classify.export_task(img, GRID, to="asset", path="projects/p/assets/lc", split=n)
    assert len(tasks) == n
    cfgs = [c for _, c in tasks]
    assert len({c["path"] for c in cfgs}) == n
    total = sum(int(c["dimensions"].split("x")[0]) * int(c["dimensions"].split("x")[1])
                for c in cfgs)
    assert total == GRID.width * GRID.height
    origins = {(c["crsTransform"][2], c["crsTransform"][5]) for c in cfgs}
    assert len(origins) == n
    region_tasks = classify.export_task(img, (10.0, 45.0, 11.0, 46.0), to="drive", path="f",
                                        scale=10, crs="EPSG:32633", split=3)
    assert len(region_tasks) == 3
    boxes = [c["region"] for _, c in region_tasks]
    assert all(c["scale"] == 10.0 and c["crs"] == "EPSG:32633" for _, c in region_tasks)
    assert min(b[0] for b in boxes) == 10.0 and max(b[2] for b in boxes) == 11.0
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    assert area == pytest.approx(1.0)


def test_export_model_writes_where_the_stage_layer_says(offline_session, model, tmp_path):
    """verify knows no run-directory names: the tree strings and the graph go to the paths
    it is given (here not the run layout's), and nothing else is written."""
    from types import SimpleNamespace

    from lcgee.gee import verify

    bundle = SimpleNamespace(booster=model, feature_names=FEATURES, class_values=CLASSES)
    trees, graph_file = tmp_path / "a" / "trees.txt", tmp_path / "b" / "graph.txt"
    spec, graph, route = verify.export_model(bundle, classifier_path=trees, graph_path=graph_file)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        "a/trees.txt", "b/graph.txt"]
    assert trees.read_text() == booster_to_ee_trees(model, feature_names=FEATURES,
                                                    class_values=CLASSES).to_json()
    assert json.loads(graph_file.read_text()) == json.loads(json.dumps(graph))
    assert graph == classify.classification_graph(spec) and route == classify.payload_route(spec)
