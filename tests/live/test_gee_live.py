"""The live Earth Engine path: interactive limits, task start/status with retries, server-side
classification graphs and the trees upload. Offline tests fake only the single ``ee.data`` call
each step makes; tests marked ``live`` use the real service (LCGEE_LIVE=1 and
LCGEE_EE_PROJECT=<Cloud project>, after ``earthengine authenticate``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

pytest.importorskip("ee")

import ee

from lcgee import indices
from lcgee.errors import EarthEngineError, MissingDependencyError, ModelError, ParamsError
from lcgee.gee import classify, live, offline, session
from lcgee.gee.retry import RetryPolicy
from lcgee.gee.trees import EEClassifierSpec, booster_to_ee_trees
from lcgee.grid import Grid
from lcgee.params import EEParams

BANDS = ["B02", "B03", "B04", "B08", "B11"]
FEATURES = BANDS + ["NDVI"]
CLASSES = [10, 30, 50, 80]
GRID = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (100, 200))
TOO_MANY = ee.EEException("Too Many Requests (429): quota exceeded")


def _policy(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=lambda s: None, seed=0)


@pytest.fixture(scope="module")
def offline_session():
    session.init_offline()
    yield


@pytest.fixture(scope="module")
def spec() -> EEClassifierSpec:
    """A small 4-class model on bands + NDVI of random reflectance."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0.01, 0.6, (2000, len(BANDS)))
    ndvi = (X[:, 3] - X[:, 2]) / (X[:, 3] + X[:, 2])
    X = np.column_stack([X, ndvi])
    y = np.argmax(np.column_stack([ndvi, X[:, 0], X[:, 4], -ndvi]), axis=1)
    params = {"objective": "multiclass", "num_class": 4, "num_leaves": 7, "use_missing": False,
              "num_threads": 1, "verbose": -1, "seed": 1, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=FEATURES), num_boost_round=8)
    return booster_to_ee_trees(booster, class_values=CLASSES)


# ----------------------------------------------------------------------------- interactive limits


def test_check_interactive_passes_a_small_grid():
    # one mask byte per pixel on top of the value bytes (as the tiled downloader counts)
    assert live.check_interactive(GRID) == 40_000
    assert live.check_interactive(GRID, n_bands=3, bytes_per_pixel=4) == 300_000


def test_check_interactive_too_large_points_to_the_export_task():
    big = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (10_000, 10_000))
    with pytest.raises(EarthEngineError) as info:
        live.check_interactive(big)
    text = str(info.value)
    assert "100,000,000 pixels" in text and "190.7 MB" in text and "10000 x 10000 px" in text
    assert "ee.start_export: true" in text and "lcgee.gee.classify.export_task" in text
    # within 48 MB but one side over 32,768 px
    strip = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0), (2, 40_000))
    with pytest.raises(EarthEngineError, match="32,768 px a side"):
        live.check_interactive(strip)
    # the getDownloadURL limits are stricter
    with pytest.raises(EarthEngineError, match="32 MB and 10,000 px"):
        live.check_interactive(Grid(GRID.crs, GRID.transform, (100, 12_000)),
                               max_bytes=live.DOWNLOAD_MAX_BYTES, max_side=live.DOWNLOAD_MAX_SIDE)


def test_fetch_pixels_refuses_before_sending(offline_session, monkeypatch):
    def no_call(*args, **kwargs):
        raise AssertionError("computePixels must not be called")

    monkeypatch.setattr(ee.data, "computePixels", no_call)
    big = Grid(GRID.crs, GRID.transform, (20_000, 20_000))  # over FETCH_MAX_PIXELS
    with pytest.raises(EarthEngineError, match="export"):
        live.fetch_pixels(classify.placeholder_composite(), big, band="B04")


def test_fetch_pixels_request_and_retry(offline_session, monkeypatch):
    calls = []

    def compute_pixels(request):
        calls.append(request)
        if len(calls) == 1:
            raise TOO_MANY
        out = np.zeros((GRID.height, GRID.width), dtype=[("landcover", "u1")])
        out["landcover"] = 30
        return out

    monkeypatch.setattr(ee.data, "computePixels", compute_pixels)
    pixels = live.fetch_pixels(classify.placeholder_composite().select(["B04"], ["landcover"]),
                               GRID, policy=_policy())
    assert pixels.shape == (100, 200) and np.all(pixels == 30) and len(calls) == 2
    request = calls[-1]
    assert request["fileFormat"] == "NUMPY_NDARRAY"
    assert request["grid"] == {
        "dimensions": {"width": 200, "height": 100}, "crsCode": "EPSG:32633",
        "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": 500000.0,
                            "shearY": 0.0, "scaleY": -10.0, "translateY": 6000000.0}}
    assert "Image.unmask" in request["expression"].serialize()


def test_compare_maps():
    local = np.array([[0, 10, 10], [30, 30, 50]])
    remote = np.array([[10, 10, 0], [30, 50, 50]])
    assert live.compare_maps(remote, local) == {"pixels": 5, "agree": 3, "agreement": 0.6,
                                                "ee_nodata": 1}


# ----------------------------------------------------------------------------- tasks


class StandInTask:
    """Quacks like ``ee.batch.Task``: ``start()`` raises the queued errors first."""

    def __init__(self, name: str, errors=(), states=("READY",)):
        self.config = {"description": name}
        self.id = None
        self.state = "UNSUBMITTED"
        self.errors = list(errors)
        self.states = list(states)
        self.starts = 0

    def start(self):
        self.starts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.id = f"ID_{self.config['description']}"

    def status(self):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"state": state, "id": self.id,
                **({"error_message": "boom"} if state == "FAILED" else {})}


def test_start_tasks_retries_429_and_reports_ids():
    a, b = StandInTask("lc_0", errors=[TOO_MANY, TOO_MANY]), StandInTask("lc_1")
    table = live.start_tasks([a, b], policy=_policy())
    assert a.starts == 3 and b.starts == 1
    assert list(table["description"]) == ["lc_0", "lc_1"]
    assert list(table["task_id"]) == ["ID_lc_0", "ID_lc_1"]
    assert list(table["state"]) == ["READY", "READY"]
    # a second call starts nothing again
    live.start_tasks([a, b], policy=_policy())
    assert a.starts == 3 and b.starts == 1


def test_start_tasks_non_transient_failure_is_not_retried():
    a = StandInTask("lc_0")
    b = StandInTask("lc_1", errors=[ee.EEException("Cannot overwrite asset 'projects/p/assets/lc_1'.")])
    c = StandInTask("lc_2")
    with pytest.raises(EarthEngineError) as info:
        live.start_tasks([a, b, c], policy=_policy())
    assert b.starts == 1 and c.starts == 0
    text = str(info.value)
    assert "Cannot overwrite asset" in text and "not retried" in text
    assert "already started: lc_0 (ID_lc_0)" in text and "task 'lc_1'" in text


def test_start_tasks_exhausted_retries():
    a = StandInTask("lc_0", errors=[TOO_MANY] * 5)
    with pytest.raises(EarthEngineError, match="after 3 attempts") as info:
        live.start_tasks([a], policy=_policy(3))
    assert a.starts == 3
    assert "already started: none" in str(info.value)


def test_task_table_retries_status_and_shows_errors():
    a = StandInTask("lc_0", states=["FAILED"])
    a.id = "ID_lc_0"
    original = a.status
    failures = [TOO_MANY]

    def flaky_status():
        if failures:
            raise failures.pop()
        return original()

    a.status = flaky_status
    unstarted = StandInTask("lc_1")
    table = live.task_table([a, (unstarted, {"path": "projects/p/assets/lc_1"})], policy=_policy())
    assert table.to_dict("records") == [
        {"description": "lc_0", "task_id": "ID_lc_0", "state": "FAILED", "path": None,
         "error": "boom"},
        {"description": "lc_1", "task_id": None, "state": "UNSUBMITTED",
         "path": "projects/p/assets/lc_1", "error": None}]


def test_real_export_tasks_start_with_one_request_id(offline_session, monkeypatch):
    requests = []

    def export_image(request_id, config):
        requests.append(request_id)
        if len(requests) < 3:
            raise TOO_MANY
        return {"name": f"projects/lcgee-offline/operations/OP{len(requests)}"}

    def get_operation(name):
        return {"name": name, "done": False,
                "metadata": {"state": "PENDING", "description": "lc", "type": "EXPORT_IMAGE"}}

    monkeypatch.setattr(ee.data, "exportImage", export_image)
    monkeypatch.setattr(ee.data, "getOperation", get_operation)
    image = classify.placeholder_composite().select(["B04"])
    tasks = classify.export_task(image, GRID, to="asset", path="projects/p/assets/lc", split=2,
                                 description="lc")
    table = live.start_tasks(tasks, policy=_policy())
    # the first task needed three tries, all with the same request id (no duplicate task)
    assert len(requests) == 4 and len(set(requests[:3])) == 1 and requests[3] != requests[0]
    assert list(table["task_id"]) == ["OP3", "OP4"]
    assert list(table["state"]) == ["READY", "READY"]
    assert list(table["path"]) == ["projects/p/assets/lc_0", "projects/p/assets/lc_1"]
    assert list(table["dimensions"]) == ["100x100", "100x100"]
    assert set(table["crs"]) == {"EPSG:32633"} and set(table["maxPixels"]) == {10_000_000_000}


def test_start_tasks_checks_max_pixels_first(offline_session):
    image = classify.placeholder_composite().select(["B04"])
    tasks = classify.export_task(image, GRID, path="projects/p/assets/lc", max_pixels=15_000)
    with pytest.raises(ParamsError, match=r"ee\.export_split"):
        live.start_tasks(tasks, policy=_policy())
    assert tasks[0][0].id is None
    split = classify.export_task(image, GRID, path="projects/p/assets/lc", max_pixels=15_000,
                                 split=2)
    for task, _ in split:  # 10,000 px each: accepted (stand-in start, no network)
        task.start = lambda t=task: setattr(t, "id", "X")
        task.status = lambda: {"state": "READY"}
    assert list(live.start_tasks(split)["state"]) == ["READY", "READY"]


def test_wait_tasks_polls_until_done_and_times_out():
    a = StandInTask("a", states=["READY", "RUNNING", "COMPLETED"])
    b = StandInTask("b", states=["RUNNING", "FAILED"])
    a.id, b.id = "A", "B"
    waits = []
    table = live.wait_tasks([a, b], poll=5, sleep=waits.append, policy=_policy())
    assert list(table["state"]) == ["COMPLETED", "FAILED"] and waits == [5, 5]

    stuck = StandInTask("c", states=["RUNNING"])
    stuck.id = "C"
    now = iter(range(0, 1000, 10))
    with pytest.raises(EarthEngineError, match="still \\['RUNNING'\\] after 30 s"):
        live.wait_tasks([stuck], timeout=30, poll=10, sleep=lambda s: None,
                        clock=lambda: next(now), policy=_policy())
    with pytest.raises(EarthEngineError, match="never started"):
        live.wait_tasks([StandInTask("d")])


def test_export_path_for():
    p = EEParams(project="my-proj")
    assert live.export_path_for(p, "demo") == "projects/my-proj/assets/lcgee_demo"
    assert live.export_path_for(EEParams(export_to="drive"), "demo") == "lcgee"
    gcs = EEParams(export_to="cloud-storage", export_path="gs://bucket/maps/lc")
    assert live.export_path_for(gcs, "demo") == "bucket/maps/lc"
    with pytest.raises(ParamsError, match="gs://bucket/prefix"):
        live.export_path_for(EEParams(export_to="cloud-storage"), "demo")
    with pytest.raises(ParamsError, match=r"ee\.project"):
        live.export_path_for(EEParams(), "demo")
    assert live.trees_asset_for(p, "demo") == "projects/my-proj/assets/lcgee_demo_trees"
    assert live.policy_for(EEParams(retries=3)).attempts == 3


# ----------------------------------------------------------------------------- classification


def test_classify_live_inline_matches_the_dry_run_graph(offline_session, spec):
    composite = classify.placeholder_composite()
    image = live.classify_live(spec, composite, GRID)
    text = image.serialize()
    assert "Image.clip" in text and "decisionTreeEnsemble" in text and "EPSG:32633" in text
    # without the clip it is exactly the graph the dry run verified
    unclipped = json.loads(live.classify_live(spec, composite).serialize())
    assert unclipped == classify.classification_graph(spec, composite)


def test_classify_live_monthly_stack_is_used_as_is(offline_session, spec):
    from lcgee.params import load_params

    demo = load_params(Path(__file__).resolve().parents[2] / "params" / "demo.yaml")
    assert live.composite_bands(demo, spec) == list(demo.features.bands)
    monthly = demo.model_copy(update={"composite": demo.composite.model_copy(
        update={"method": "monthly"})})
    names = ["m202306_B04", "m202306_NDVI", "m202307_NDVI"]
    stacked = EEClassifierSpec(names, [10, 30], trees=[[spec.trees[0][0].replace(
        "B04", "m202306_B04").replace("NDVI", "m202307_NDVI")]] * 2)
    assert live.composite_bands(monthly, stacked) == names
    image = live.classify_live(stacked, classify.placeholder_composite(), GRID,
                               available_bands=live.composite_bands(monthly, stacked))
    assert "m202307_NDVI" in image.serialize()


def test_classify_live_large_model_needs_the_table(offline_session, spec):
    tree = spec.trees[0][0]
    n_big = int(9_000_000 / len(tree)) + 1
    big = EEClassifierSpec(spec.feature_names, [10, 30], trees=[[tree] * n_big, [tree]])
    with pytest.raises(ModelError, match="ensure_trees_table"):
        live.classify_live(big, classify.placeholder_composite(), GRID)
    image = live.classify_live(big, classify.placeholder_composite(), GRID,
                               trees_table="projects/p/assets/trees")
    text = image.serialize()
    assert "projects/p/assets/trees" in text and "AggregateFeatureCollection.array" in text
    assert tree not in text  # the trees stay server-side


def test_tree_chunks_keep_every_tree_in_order(spec):
    chunks = live.tree_chunks(spec, chunk_bytes=3000)
    assert len(chunks) > 2
    rows = [row for chunk in chunks for row in chunk]
    assert rows == [(k, i, t) for k, trees in enumerate(spec.trees) for i, t in enumerate(trees)]
    assert all(sum(len(t) + 64 for *_, t in chunk) <= 3000 or len(chunk) == 1 for chunk in chunks)
    assert len(live.tree_chunks(spec)) == 1


def test_ensure_trees_table_uploads_only_missing_chunks(offline_session, spec, monkeypatch):
    n = len(live.tree_chunks(spec, chunk_bytes=3000))
    ids = live._chunk_ids(spec, "projects/p/assets/trees", n)
    exported = []

    def list_assets(params):
        assert params == {"parent": "projects/p/assets"}
        return {"assets": [{"id": ids[0], "name": ids[0], "type": "TABLE"}]}

    def export_table(request_id, config):
        exported.append(config["assetExportOptions"]["earthEngineDestination"]["name"])
        return {"name": f"projects/lcgee-offline/operations/T{len(exported)}"}

    def get_operation(name):
        return {"name": name, "done": True,
                "metadata": {"state": "SUCCEEDED", "description": "t", "type": "EXPORT_TABLE"}}

    monkeypatch.setattr(ee.data, "listAssets", list_assets)
    monkeypatch.setattr(ee.data, "exportTable", export_table)
    monkeypatch.setattr(ee.data, "getOperation", get_operation)
    table = live.ensure_trees_table(spec, "projects/p/assets/trees", chunk_bytes=3000,
                                    policy=_policy(), poll=0)
    assert len(exported) == n - 1 and all(ids[0] not in name for name in exported)
    text = table.serialize()
    assert all(i in text for i in ids) and "Collection.flatten" in text
    # a retrained model gets other asset ids
    other = EEClassifierSpec(spec.feature_names, spec.class_values, trees=spec.trees[::-1])
    assert live._chunk_ids(other, "projects/p/assets/trees", n)[0] != ids[0]


def test_ensure_trees_table_reports_failed_upload(offline_session, spec, monkeypatch):
    monkeypatch.setattr(ee.data, "listAssets", lambda params: {"assets": []})
    monkeypatch.setattr(ee.data, "exportTable",
                        lambda rid, cfg: {"name": "projects/lcgee-offline/operations/T1"})
    monkeypatch.setattr(ee.data, "getOperation", lambda name: {
        "name": name, "done": True, "error": {"message": "Asset folder does not exist"},
        "metadata": {"state": "FAILED", "description": "t", "type": "EXPORT_TABLE"}})
    with pytest.raises(EarthEngineError, match="Asset folder does not exist"):
        live.ensure_trees_table(spec, "projects/p/assets/trees", policy=_policy(), poll=0)


def test_landcover_vis_and_missing_geemap(offline_session, monkeypatch):
    image, vis = live.landcover_vis(classify.placeholder_composite().select(["B04"], ["landcover"]))
    assert vis["min"] == 0 and vis["max"] == 10 and len(vis["palette"]) == 11
    assert vis["palette"][0] == "006400" and "Image.remap" in image.serialize()
    monkeypatch.setitem(sys.modules, "geemap", None)
    with pytest.raises(MissingDependencyError, match=r"lcgee\[maps\]"):
        live.ee_map(classify.placeholder_composite(), GRID)


# ----------------------------------------------------------------------------- live service


@pytest.fixture(scope="module")
def live_session():
    project = os.environ.get("LCGEE_EE_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        pytest.skip(f"set LCGEE_EE_PROJECT to a Cloud project; {session.AUTH_HELP}")
    session.init_live(project)
    yield
    session.init_offline()


TINY = Grid("EPSG:32632", (10.0, 0.0, 470000.0, 0.0, -10.0, 5040000.0), (32, 32))


@pytest.mark.live
def test_live_constant_composites_match_the_offline_graph(live_session, spec):
    rows = np.random.default_rng(5).uniform(0.02, 0.5, (6, len(BANDS)))
    small = Grid(TINY.crs, TINY.transform, (2, 2))
    graph = classify.classification_graph(spec)
    for row in rows:
        composite = ee.Image.constant([float(v) for v in row]).rename(BANDS)
        got = live.fetch_pixels(live.classify_live(spec, composite, small), small)
        expected = offline.evaluate_graph(graph, {b: np.full((2, 2), v) for b, v in zip(BANDS, row)})
        assert np.array_equal(got, expected["landcover"]), row


@pytest.mark.live
def test_live_sentinel2_tiny_area(live_session, spec):
    region = live.grid_geometry(TINY)
    s2 = (ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").filterBounds(region)
          .filterDate("2023-06-01", "2023-09-01").filter(ee.Filter.lt("CLOUDY_PIXEL_PERCENTAGE", 20))
          .median())
    composite = classify.harmonized_to_reflectance(s2, BANDS)
    labels = live.fetch_pixels(live.classify_live(spec, composite, TINY), TINY)
    assert labels.shape == TINY.shape
    assert set(np.unique(labels)) <= {0, *CLASSES}
    assert (labels > 0).mean() > 0.9
    # the features Earth Engine computes agree with the local index definition
    feats = live.fetch_pixels(classify.feature_image(composite, FEATURES), TINY, band="NDVI",
                              bytes_per_pixel=8)
    bands = {b: live.fetch_pixels(composite, TINY, band=b, bytes_per_pixel=8) for b in ("B04", "B08")}
    local = indices.evaluate(indices.INDICES["NDVI"], bands)
    ok = np.isfinite(local)  # 0/0: NaN locally, 0 in Earth Engine
    assert ok.mean() > 0.9
    np.testing.assert_allclose(feats[ok], local[ok], atol=1e-6)


@pytest.mark.live
def test_live_map_builds(live_session, spec):
    pytest.importorskip("geemap")
    composite = ee.Image.constant([0.05, 0.08, 0.06, 0.3, 0.2]).rename(BANDS)
    m = live.ee_map(live.classify_live(spec, composite, TINY), TINY)
    assert len(m.layers) >= 3
