"""The dry-run checks (:mod:`lcgee.gee.verify`) on a small LightGBM model: each check passes
where Earth Engine would reproduce the model and reports the exact number of disagreements when
it would not (a different model, altered local labels, a shifted local feature). The whole
dry run on a demo run: tests/e2e and lcgee.ee_stage; the tree strings themselves:
test_gee_trees.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from toys import synthetic  # tests/toys.py

from lcgee import indices, predict, samples, train
from lcgee.gee import verify
from lcgee.grid import Grid
from lcgee.params import TrainParams

GRID = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (120, 160))
NAMES = ["B02", "B04", "B08", "NDVI"]
BANDS = ["B02", "B04", "B08"]


def _bundle(seed: int, iterations: int):
    X, lab = synthetic(seed)
    table = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                                  per_class=300, seed=seed)
    return train.train_lightgbm(table, NAMES, TrainParams(num_iterations=iterations,
                                                          num_leaves=7),
                                class_values=[10, 40, 80])


@pytest.fixture(scope="module")
def bundle():
    return _bundle(0, 12)


@pytest.fixture(scope="module")
def stack():
    """A (band, y, x) feature stack as the composite stage writes it (NDVI from
    :func:`lcgee.indices.compute_indices`), noisy enough that the classes overlap, and a hole
    of NaN."""
    X, _ = synthetic(1)
    X = X + np.random.default_rng(1).normal(0, 0.02, X.shape).astype("float32")
    X[:, 40:44, 60:66] = np.nan
    bands = xr.DataArray(X[:3], dims=("band", "y", "x"), coords={"band": BANDS, **GRID.coords()})
    return indices.compute_indices(bands, ["NDVI"]).astype("float32")


@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    return model_dir, *verify.export_model(bundle, classifier_path=model_dir / "ee_classifier.json",
                                           graph_path=model_dir / "ee_graph.json")


def test_export_writes_the_tree_strings_and_the_graph_it_returns(exported, bundle):
    model_dir, spec, graph, route = exported
    assert spec.n_trees == bundle.booster.num_trees()
    assert spec.feature_names == NAMES and spec.class_values == [10, 40, 80]
    assert json.loads((model_dir / "ee_graph.json").read_text()) == graph
    assert json.loads((model_dir / "ee_classifier.json").read_text()) == json.loads(spec.to_json())
    assert route == "inline"  # a dozen small trees fit in one request


def test_holdout_keeps_valid_labelled_pixels_as_fed(stack, tmp_path):
    _, lab = synthetic(1)
    path = tmp_path / "holdout.parquet"
    table = verify.write_holdout(stack.values, lab, NAMES, path, n=500, seed=3)
    assert list(table.columns) == NAMES + ["label"] and len(table) == 500
    assert np.isfinite(table[NAMES].to_numpy()).all() and (table["label"] > 0).all()
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)
    # every row is one pixel of the stack, with its label
    flat = stack.values.reshape(len(NAMES), -1).T.astype(np.float64)
    rows = {tuple(r): int(lab.ravel()[i]) for i, r in enumerate(flat)}
    for values, label in zip(table[NAMES].to_numpy(), table["label"], strict=True):
        assert rows[tuple(values)] == label
    small = verify.write_holdout(stack.values, lab, NAMES, tmp_path / "all.parquet", n=10**9)
    assert len(small) == int((np.isfinite(flat).all(axis=1) & (lab.ravel() > 0)).sum())


def test_holdout_check_agrees_with_the_model_and_catches_another(exported, bundle, stack,
                                                                  tmp_path):
    _, spec, _, _ = exported
    _, lab = synthetic(1)
    holdout = verify.write_holdout(stack.values, lab, NAMES, tmp_path / "h.parquet", n=3000)
    assert verify.verify_holdout(spec, holdout, bundle) == {"samples": 3000, "disagreements": 0}
    other = _bundle(5, 3)  # another model: its labels differ on the overlapping pixels
    X = holdout[NAMES].to_numpy(np.float64)
    want = int((bundle.predict_labels(X) != other.predict_labels(X)).sum())
    assert want > 0
    assert verify.verify_holdout(spec, holdout, other)["disagreements"] == want


def test_graph_evaluated_offline_gives_the_local_map(exported, bundle, stack):
    _, _, graph, _ = exported
    local = predict.predict_map(stack, bundle).values
    check, ee_map = verify.verify_graph(graph, stack, local, BANDS)
    assert check == {"pixels": int((local > 0).sum()), "disagreements": 0,
                     "nodata_agrees": True}
    np.testing.assert_array_equal(ee_map, local)
    assert np.all(ee_map[40:44, 60:66] == 0)
    altered = local.copy()
    altered[100:102, 10:15] = np.where(altered[100:102, 10:15] == 10, 80, 10)
    altered[0, 0] = 0  # a pixel the local map calls nodata
    check, _ = verify.verify_graph(graph, stack, altered, BANDS)
    assert check["disagreements"] == 10 and check["nodata_agrees"] is False


def test_features_recomputed_server_side_match_and_a_shift_is_measured(exported, stack):
    _, spec, _, _ = exported
    diffs = verify.verify_features(spec, stack, BANDS)
    assert set(diffs) == set(NAMES)
    assert max(diffs.values()) < 1e-6
    shifted = stack.copy(deep=True)
    shifted.loc[{"band": "NDVI"}] = shifted.sel(band="NDVI") + 0.01
    diffs = verify.verify_features(spec, shifted, BANDS)
    assert diffs["NDVI"] == pytest.approx(0.01, rel=1e-3)
    assert max(diffs[b] for b in BANDS) < 1e-6
