"""lcgee.fastpredict: raw scores and labels identical to LightGBM's own predictor."""

from __future__ import annotations

import dask.array as da
import lightgbm as lgb
import numpy as np
import pytest
import xarray as xr

from lcgee.errors import ModelError
from lcgee.fastpredict import FastPredictor, _class_index

ATOL = 1e-10


def _table(n: int, n_features: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent means plus noise, float32, like reflectances and indices."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    means = np.random.default_rng(100 + n_classes).uniform(0.0, 0.5, (n_classes, n_features))
    X = means[y] + rng.normal(0.0, 0.08, (n, n_features))
    return X.astype(np.float32), y


def _train(params: dict, X: np.ndarray, y: np.ndarray, rounds: int, **dataset) -> lgb.Booster:
    """Single-threaded (also for predict): OpenMP LightGBM crawls on a busy shared machine."""
    base = {"verbose": -1, "num_threads": 1, "use_missing": False, "seed": 1}
    return lgb.train({**base, **params}, lgb.Dataset(X, y, **dataset), rounds)


def _multi(n_classes: int, **params) -> lgb.Booster:
    X, y = _table(3000, 6, n_classes, seed=n_classes)
    return _train({"objective": "multiclass", "num_class": n_classes, "num_leaves": 15,
                   **params}, X, y, 15)


@pytest.fixture(scope="module")
def models() -> dict[str, lgb.Booster]:
    X, y = _table(3000, 6, 2, seed=5)
    noise = np.random.default_rng(6).normal(size=(3000, 6)).astype(np.float32)
    return {
        "multi3": _multi(3),
        "multi8": _multi(8),
        "stumps": _train({"objective": "multiclass", "num_class": 3, "min_gain_to_split": 4.0},
                         noise, np.arange(3000) % 3, 10),
        "leaves48": _multi(3, num_leaves=48, min_data_in_leaf=5),
        "leaves100": _multi(3, num_leaves=100, min_data_in_leaf=5),
        "binary": _train({"objective": "binary", "num_leaves": 15}, X, y, 15),
        "ova": _multi(3, objective="multiclassova"),
        "rf": _train({"objective": "binary", "boosting": "rf", "bagging_freq": 1,
                      "bagging_fraction": 0.5, "num_leaves": 15}, X, y, 8),
        "regression": _train({"objective": "regression", "num_leaves": 15}, X, X[:, 0] * 3, 15),
    }


def _labels(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    """What LightGBM predicts: argmax of the probabilities (binary: p > 1 - p)."""
    p = booster.predict(X)
    return np.argmax(np.stack([1 - p, p], axis=1) if p.ndim == 1 else p, axis=1)


def _check(booster: lgb.Booster, X: np.ndarray, method: str = "auto") -> FastPredictor:
    fast = FastPredictor.from_booster(booster, method=method)
    raw = booster.predict(X, raw_score=True).reshape(len(X), -1)
    np.testing.assert_allclose(fast.raw_scores(X), raw, rtol=0, atol=ATOL)
    if booster.dump_model()["objective"] != "regression":
        np.testing.assert_array_equal(fast.predict_index(X), _labels(booster, X))
    return fast


def _random_rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.8, (n, 6))


def _thresholds(booster: lgb.Booster) -> dict[int, list[float]]:
    """Split thresholds per feature, from the dump."""
    out: dict[int, list[float]] = {}
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            out.setdefault(node["split_feature"], []).append(node["threshold"])
            stack += [node["left_child"], node["right_child"]]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["multi3", "multi8", "stumps", "leaves48", "binary", "ova", "rf",
                                  "regression"])
def test_random_rows_match_booster(models, name, dtype):
    fast = _check(models[name], _random_rows(3001).astype(dtype))
    assert fast.method == "bitvector"


def test_stump_model_has_stumps(models):
    leaves = [t["num_leaves"] for t in models["stumps"].dump_model()["tree_info"]]
    assert 1 in leaves and max(leaves) > 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_walk_kernel_matches_booster(models, dtype):
    _check(models["multi8"], _random_rows(1500).astype(dtype), method="walk")
    assert _check(models["leaves100"], _random_rows(1500).astype(dtype)).method == "walk"
    with pytest.raises(ModelError, match="64 leaves"):
        FastPredictor.from_booster(models["leaves100"], method="bitvector")


@pytest.mark.parametrize("method", ["bitvector", "walk"])
@pytest.mark.parametrize("name", ["multi3", "multi8", "stumps", "binary"])
def test_inputs_at_thresholds(models, name, method):
    """Features exactly at split thresholds (float64, float32-rounded, and one ulp off)."""
    booster = models[name]
    thresholds = _thresholds(booster)
    rng = np.random.default_rng(1)
    X = _random_rows(4000, seed=2)
    for f, values in thresholds.items():
        X[:, f] = rng.choice(values, len(X))
    X32 = X.astype(np.float32)
    for matrix in (X, np.nextafter(X, np.inf), np.nextafter(X, -np.inf), X32,
                   np.nextafter(X32, np.float32(np.inf)), np.nextafter(X32, np.float32(-np.inf))):
        _check(booster, matrix, method=method)


@pytest.mark.parametrize("method", ["bitvector", "walk"])
def test_every_node_at_its_threshold(method):
    """One feature only: x = threshold reaches each node with a tie (catches < versus <=)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (4000, 1))
    y = (np.sin(12 * x[:, 0]) > 0).astype(int) + (x[:, 0] > 0.7)
    booster = _train({"objective": "multiclass", "num_class": 3, "num_leaves": 15}, x, y, 10)
    t = np.array(sorted(set(_thresholds(booster)[0])))[:, None]
    above = np.nextafter(t, np.inf)
    assert not np.allclose(booster.predict(t, raw_score=True), booster.predict(above, raw_score=True))
    for matrix in (t, above, t.astype(np.float32), np.nextafter(t.astype(np.float32), np.float32(2))):
        _check(booster, matrix, method=method)


def test_tiny_values_read_as_zero():
    """LightGBM reads |x| <= 1e-35 as 0: with a threshold at 0, 1e-36 must go left."""
    x = np.linspace(-1, 1, 2000)[:, None]
    booster = _train({"objective": "regression", "num_leaves": 4, "min_data_in_leaf": 20}, x,
                     (x[:, 0] > 0.01) * 1.0, 3)
    lines = [line for line in booster.model_to_string().splitlines()
             if not line.startswith("tree_sizes=")]  # sizes would no longer match
    i = next(i for i, line in enumerate(lines) if line.startswith("threshold="))
    lines[i] = "threshold=" + " ".join(["0"] * len(lines[i].split("=")[1].split()))
    edited = lgb.Booster(model_str="\n".join(lines) + "\n")
    X = np.array([[0.0], [1e-36], [-1e-36], [1e-35], [1.1e-35], [np.float32(1e-35)], [1e-30]])
    raw = edited.predict(X, raw_score=True)
    assert raw[1] == raw[0] and raw[6] != raw[0]  # the test has power
    for method in ("bitvector", "walk"):
        _check(edited, X, method)
        _check(edited, X.astype(np.float32), method)


def test_infinite_inputs(models):
    X = _random_rows(300)
    X[::3, 1] = np.inf
    X[1::3, 2] = -np.inf
    _check(models["multi8"], X)
    _check(models["multi8"], X, method="walk")


def test_nan_input_refused(models):
    fast = FastPredictor.from_booster(models["multi3"])
    X = _random_rows(50)
    X[7, 2] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        fast.predict_index(X)
    raw = fast.raw_scores(X, check_finite=False)  # scored as 0, like LightGBM
    np.testing.assert_allclose(raw, models["multi3"].predict(X, raw_score=True), rtol=0, atol=ATOL)


def test_categorical_model_refused():
    X, y = _table(2000, 4, 3, seed=9)
    X[:, 0] = np.random.default_rng(0).integers(0, 5, len(X))
    y = (X[:, 0] == 2).astype(int) + (X[:, 0] == 4) * 2
    booster = _train({"objective": "multiclass", "num_class": 3, "min_data_per_group": 5,
                      "cat_smooth": 1}, X, y, 3, categorical_feature=[0])
    with pytest.raises(ModelError, match="categorical") as info:
        FastPredictor.from_booster(booster)
    assert "retrain" in str(info.value)


def test_nan_trained_model_refused():
    X, y = _table(2000, 4, 2, seed=10)
    X[::5, 1] = np.nan
    y = np.where(np.isnan(X[:, 1]), 1, y)
    booster = _train({"objective": "binary", "use_missing": True}, X, y, 5)
    with pytest.raises(ModelError, match="missing_type=NaN") as info:
        FastPredictor.from_booster(booster)
    assert "use_missing=False" in str(info.value)


def test_zero_as_missing_model():
    """Refused exactly when some node sends 0 against its threshold."""
    X, y = _table(2000, 4, 2, seed=11)
    X[::3, 0] = 0
    y = np.where(X[:, 0] == 0, 1, y)
    booster = _train({"objective": "binary", "zero_as_missing": True, "use_missing": True},
                     X, y, 10)
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    against = False
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            against |= node["missing_type"] == "Zero" and node["default_left"] != (0 <= node["threshold"])
            stack += [node["left_child"], node["right_child"]]
    if against:
        with pytest.raises(ModelError, match="missing_type=Zero"):
            FastPredictor.from_booster(booster)
    else:
        _check(booster, np.where(_random_rows(500)[:, :4] > 0.5, 0, _random_rows(500)[:, :4]))


def test_linear_tree_refused():
    X, _ = _table(1000, 3, 2, seed=12)
    booster = _train({"objective": "regression", "linear_tree": True}, X, X[:, 0] * 2.0, 3)
    with pytest.raises(ModelError, match="linear"):
        FastPredictor.from_booster(booster)


def test_classifier_labels_and_model_file(tmp_path):
    X, y = _table(2000, 5, 4, seed=13)
    codes = np.array([10, 30, 50, 80])[y]
    clf = lgb.LGBMClassifier(n_estimators=10, num_leaves=15, verbose=-1, use_missing=False,
                             n_jobs=1)
    clf.fit(X, codes)
    rows = _random_rows(700)[:, :5]
    fast = FastPredictor.from_booster(clf)
    np.testing.assert_array_equal(fast.predict_labels(rows, clf.classes_), clf.predict(rows))
    clf.booster_.save_model(tmp_path / "model.txt")
    from_file = FastPredictor.from_model_file(tmp_path / "model.txt")
    np.testing.assert_array_equal(from_file.raw_scores(rows), fast.raw_scores(rows))
    with pytest.raises(ModelError, match="does not exist"):
        FastPredictor.from_model_file(tmp_path / "missing.txt")


def test_bad_inputs(models):
    fast = FastPredictor.from_booster(models["multi3"])
    with pytest.raises(ModelError, match="shape"):
        fast.raw_scores(np.zeros((4, 5)))
    with pytest.raises(ModelError, match="class values"):
        fast.predict_labels(np.zeros((4, 6)), [1, 2])
    with pytest.raises(ModelError, match="no classes"):
        FastPredictor.from_booster(models["regression"]).predict_index(np.zeros((2, 6)))
    assert fast.raw_scores(np.zeros((0, 6))).shape == (0, 3)


def test_near_ties_follow_probabilities():
    """Raw scores 1e-17 apart give equal softmax probabilities: argmax takes the first."""
    raw = np.array([[0.0, 1e-17, -1.0], [0.5, 0.5, 0.0], [0.0, 2.0, 1.0]])
    out = np.empty(3, np.int64)
    _class_index(raw, 1, 1.0, 0, out)
    p = np.exp(raw - raw.max(axis=1, keepdims=True))
    np.testing.assert_array_equal(out, np.argmax(p / p.sum(axis=1, keepdims=True), axis=1))
    assert out.tolist() == [0, 0, 1]
    _class_index(raw, 2, 1.0, 0, out)  # multiclassova: per-class sigmoids tie too
    assert out.tolist() == [0, 0, 1]
    _class_index(np.array([[1e-17], [-1e-17], [1e-3]]), 3, 1.0, 0, out)  # binary: p > 1 - p
    assert out.tolist() == [0, 0, 1]


def _image(fast: FastPredictor, chunks: dict | None) -> xr.DataArray:
    names = list(fast.feature_names)
    rng = np.random.default_rng(4)
    bands = ["extra", *names[::-1]]  # other order plus a band the model does not use
    data = rng.uniform(-0.2, 0.7, (len(bands), 37, 45)).astype(np.float32)
    data[2, 3:6, 4:9] = np.nan
    data[0, 10, :] = np.nan  # NaN in an unused band does not matter
    image = xr.DataArray(data, dims=("band", "y", "x"),
                         coords={"band": bands, "y": np.arange(37.0), "x": np.arange(45.0)})
    return image.chunk(chunks) if chunks else image


@pytest.mark.parametrize("chunks", [None, {"band": 2, "y": 16, "x": 20}])
def test_predict_map(models, chunks):
    fast = FastPredictor.from_booster(models["multi3"])
    image = _image(fast, chunks)
    out = fast.predict_map(image, fast.feature_names, [10, 20, 30], nodata=0)
    assert out.dims == ("y", "x") and out.dtype == np.uint8
    assert isinstance(out.data, da.Array) == bool(chunks)
    labels = out.values
    X = image.sel(band=list(fast.feature_names)).values.reshape(6, -1).T
    invalid = np.isnan(X).any(axis=1)
    assert invalid.sum() == 15
    expected = np.array([10, 20, 30])[_labels(models["multi3"], np.nan_to_num(X))]
    expected[invalid] = 0
    np.testing.assert_array_equal(labels.ravel(), expected)
    np.testing.assert_array_equal(out["x"], image["x"])


def test_predict_map_missing_features(models):
    fast = FastPredictor.from_booster(models["multi3"])
    image = _image(fast, None).drop_sel(band=["Column_1", "Column_4"])
    with pytest.raises(ModelError, match=r"Column_1.*Column_4"):
        fast.predict_map(image, fast.feature_names, [1, 2, 3])
    with pytest.raises(ModelError, match="also a class"):
        fast.predict_map(_image(fast, None), fast.feature_names, [0, 1, 2], nodata=0)
