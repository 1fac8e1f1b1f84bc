"""LightGBM -> Earth Engine tree strings: exact label parity, refusals, format and the reader."""

from __future__ import annotations

import json
import re

import lightgbm as lgb
import numpy as np
import pytest

from lcgee.errors import DataError, ModelError
from lcgee.gee import reader
from lcgee.gee.trees import (
    LGBM_ZERO,
    MAX_NODE_ID,
    EEClassifierSpec,
    booster_to_ee_trees,
    dump_to_ee_trees,
    format_number,
    tree_to_string,
    validate_feature_names,
)

NAMES = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
         "NDVI", "NDWI", "MNDWI", "NDBI"]
WORLDCOVER = [10, 20, 30, 40, 50, 60, 80, 90]
N_TEST = 20_000
#: The exact line format lcgee writes (no indentation, no spaces around the operator).
LINE_RE = re.compile(r"^(\d+)\) (root|[A-Za-z_][A-Za-z0-9_]* (<=|>) (-?\d+\.\d+)) 1 0 "
                     r"(0|-?\d+\.\d+)( \*)?$")


# ----------------------------------------------------------------------------- helpers


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (a + b)


def synthetic(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance-like bands around a per-class mean, four indices, 10 % label noise."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).uniform(0.02, 0.45, size=(n_classes, 10))
    y = rng.integers(0, n_classes, n)
    bands = np.clip(means[y] + rng.normal(0, 0.06, (n, 10)), 0.001, 0.9)
    b03, b04, b08, b11 = bands[:, 1], bands[:, 2], bands[:, 6], bands[:, 8]
    X = np.column_stack([bands, _nd(b08, b04), _nd(b03, b08), _nd(b03, b11), _nd(b11, b08)])
    noisy = rng.random(n) < 0.1
    y[noisy] = rng.integers(0, n_classes, noisy.sum())
    return X, y


def train(n_classes: int, rounds: int, seed: int, **extra) -> tuple[lgb.Booster, np.ndarray]:
    X, y = synthetic(12_000 + N_TEST, n_classes, seed)
    params = dict(objective="multiclass", num_class=n_classes, num_leaves=31, learning_rate=0.1,
                  use_missing=False, verbose=-1, num_threads=1, seed=seed, deterministic=True)
    params.update(extra)
    booster = lgb.train(params, lgb.Dataset(X[:12_000], y[:12_000], feature_name=NAMES), rounds)
    return booster, X[12_000:]


def thresholds_by_feature(dump: dict) -> dict[int, np.ndarray]:
    found: dict[int, list[float]] = {}
    stack = [info["tree_structure"] for info in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            found.setdefault(node["split_feature"], []).append(node["threshold"])
            stack += [node["left_child"], node["right_child"]]
    return {f: np.unique(v) for f, v in found.items()}


def adversarial(X: np.ndarray, dump: dict, seed: int, n: int = 6000) -> np.ndarray:
    """Rows whose features sit exactly on split thresholds (or one ulp above)."""
    rng = np.random.default_rng(seed)
    out = X[rng.integers(0, len(X), n)].copy()
    for f, values in thresholds_by_feature(dump).items():
        pick = values[rng.integers(0, len(values), n)]
        draw = rng.random(n)
        out[:, f] = np.where(draw < 0.45, pick, out[:, f])
        out[:, f] = np.where((draw >= 0.45) & (draw < 0.6), np.nextafter(pick, np.inf), out[:, f])
    return out


def predict(booster: lgb.Booster, X: np.ndarray, **kwargs) -> np.ndarray:
    return booster.predict(X, num_threads=1, **kwargs)


def lgb_labels(booster: lgb.Booster, X: np.ndarray, class_values: list[int]) -> np.ndarray:
    return np.asarray(class_values)[np.argmax(predict(booster, X), axis=1)]


def round6(tree: str) -> str:
    """What a 6-decimal writer (geemap) would produce: thresholds and leaf values rounded."""
    out = []
    for line in tree.split("\n"):
        line = re.sub(r"(<=|>) (-?[\d.]+)", lambda m: f"{m[1]} {float(m[2]):.6f}", line)
        if line.endswith(" *"):
            head, value = line[:-2].rsplit(" ", 1)
            line = f"{head} {float(value):.6f} *"
        out.append(line)
    return "\n".join(out)


def split(feature: int, threshold: float, left: dict, right: dict) -> dict:
    return {"split_index": 0, "split_feature": feature, "threshold": threshold,
            "decision_type": "<=", "default_left": True, "missing_type": "None",
            "left_child": left, "right_child": right}


def leaf(value: float) -> dict:
    return {"leaf_value": value}


def make_dump(structures: list[dict], n_classes: int = 2, n_features: int = 3) -> dict:
    return {"objective": f"multiclass num_class:{n_classes}", "num_class": n_classes,
            "num_tree_per_iteration": n_classes, "max_feature_idx": n_features - 1,
            "feature_names": [f"f{i}" for i in range(n_features)],
            "tree_info": [{"tree_index": i, "num_cat": 0, "tree_structure": s}
                          for i, s in enumerate(structures)]}


def eval_dict(node: dict, x: np.ndarray) -> float:
    """Direct evaluation of a dump dict (independent of both modules)."""
    while "split_feature" in node:
        node = node["left_child"] if x[node["split_feature"]] <= node["threshold"] else \
            node["right_child"]
    return node["leaf_value"]


def random_tree(rng: np.random.Generator, depth: int, max_depth: int) -> dict:
    if depth == max_depth or (depth > 0 and rng.random() < 0.35):
        return leaf(float(rng.normal()))
    return split(int(rng.integers(0, 3)), float(rng.normal()),
                 random_tree(rng, depth + 1, max_depth), random_tree(rng, depth + 1, max_depth))


def chain(depth: int, go_right: bool) -> dict:
    node = leaf(1.0)
    for d in range(depth):
        other = leaf(float(-d))
        node = split(0, d + 1.0, other, node) if go_right else split(0, d + 1.0, node, other)
    return node


# ----------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def model8():
    booster, X = train(8, 100, seed=1)
    spec = booster_to_ee_trees(booster, class_values=WORLDCOVER)
    return booster, X, spec


@pytest.fixture(scope="module")
def model3():
    booster, X = train(3, 150, seed=2)
    return booster, X, booster_to_ee_trees(booster)


@pytest.mark.parametrize("name", ["model3", "model8"])
def test_labels_and_raw_scores_match_lightgbm(name, request):
    booster, X, spec = request.getfixturevalue(name)
    assert len(X) >= N_TEST
    assert spec.n_trees == booster.num_trees()
    labels = reader.classify(spec, X)
    assert (labels == lgb_labels(booster, X, spec.class_values)).all()
    scores = reader.class_scores(spec, X)
    np.testing.assert_allclose(scores, predict(booster, X, raw_score=True), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["model3", "model8"])
def test_rows_on_thresholds_match_and_six_decimals_do_not(name, request):
    booster, X, spec = request.getfixturevalue(name)
    hard = adversarial(X, booster.dump_model(), seed=5)
    truth = lgb_labels(booster, hard, spec.class_values)
    assert (reader.classify(spec, hard) == truth).all()
    np.testing.assert_allclose(reader.class_scores(spec, hard),
                               predict(booster, hard, raw_score=True), rtol=0, atol=1e-9)
    rounded = EEClassifierSpec(spec.feature_names, spec.class_values, spec.output_mode,
                               [[round6(t) for t in per_class] for per_class in spec.trees])
    flipped = int((reader.classify(rounded, hard) != truth).sum())
    assert flipped >= 1, "6-decimal thresholds should flip labels of rows on thresholds"


def test_regression_mode_times_trees_equals_raw_sum(model8):
    _, X, spec = model8
    X = X[:3000]
    for per_class in spec.trees[:3]:
        raw = reader.evaluate_trees(per_class, X, spec.feature_names)
        assert raw.shape == (len(X), len(per_class))
        mean = reader.evaluate_trees(per_class, X, spec.feature_names, mode="REGRESSION")
        np.testing.assert_allclose(mean * len(per_class), raw.sum(axis=1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(reader.sum_trees(per_class, X, spec.feature_names),
                                   raw.sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(reader.classify(spec, X, mode="REGRESSION"),
                                  reader.classify(spec, X))


def test_every_line_has_the_documented_format(model8):
    _, _, spec = model8
    for per_class in spec.trees:
        for tree in per_class:
            lines = tree.split("\n")
            assert lines[0] == "1) root 1 0 0"
            ids = []
            for line in lines:
                match = LINE_RE.match(line)
                assert match, line
                ids.append(int(match[1]))
                if match[3]:  # 2k carries <=, 2k+1 carries >
                    assert match[3] == ("<=" if ids[-1] % 2 == 0 else ">")
            assert ids == preorder(set(ids)) and max(ids) <= MAX_NODE_ID


def preorder(ids: set[int]) -> list[int]:
    out, stack = [], [1]
    while stack:
        k = stack.pop()
        out.append(k)
        stack += [c for c in (2 * k + 1, 2 * k) if c in ids]
    return out


# ----------------------------------------------------------------------------- structure


def test_unbalanced_trees_are_numbered_and_evaluated_correctly():
    tree = split(0, 0.5, leaf(-1.0), split(1, 0.25, split(2, 0.75, leaf(2.0), leaf(3.0)), leaf(4.0)))
    assert tree_to_string(tree, ["f0", "f1", "f2"]).split("\n") == [
        "1) root 1 0 0",
        "2) f0 <= 0.5 1 0 -1.0 *",
        "3) f0 > 0.5 1 0 0",
        "6) f1 <= 0.25 1 0 0",
        "12) f2 <= 0.75 1 0 2.0 *",
        "13) f2 > 0.75 1 0 3.0 *",
        "7) f1 > 0.25 1 0 4.0 *",
    ]
    rng = np.random.default_rng(3)
    structures = [random_tree(rng, 0, 12) for _ in range(40)]
    spec = dump_to_ee_trees(make_dump(structures, n_classes=2))
    X = rng.normal(size=(2000, 3))
    got = reader.evaluate_trees([t for pair in zip(*spec.trees) for t in pair], X, spec.feature_names)
    want = np.array([[eval_dict(s, x) for s in structures] for x in X])
    np.testing.assert_array_equal(got, want)


def test_depth_limit():
    for right in (False, True):
        deep = tree_to_string(chain(30, right), ["f0", "f1", "f2"])
        assert max(int(line.split(")")[0]) for line in deep.split("\n")) <= MAX_NODE_ID
        with pytest.raises(ModelError, match="max_depth <= 30"):
            dump_to_ee_trees(make_dump([chain(31, right), leaf(0.0)]))
    ok = dump_to_ee_trees(make_dump([chain(30, True), leaf(0.0)]))
    assert "2147483647) f0 > 1.0 1 0 1.0 *" in ok.trees[0][0]


def test_thresholds_near_zero_follow_lightgbm_reading_tiny_values_as_zero():
    """LightGBM predicts with |x| <= 1e-35f read as 0; the written thresholds absorb that."""
    tiny = [-LGBM_ZERO, -LGBM_ZERO / 2, 0.0, 5e-324, LGBM_ZERO / 3, LGBM_ZERO]
    x = np.array(sorted({v for t in tiny for v in (t, -t, np.nextafter(t, -1), np.nextafter(t, 1))}
                        | {-1e-30, 1e-30, -1.0, 1.0}))[:, None]
    for t in tiny + [-1e-30, 1e-30, 0.5]:
        spec = dump_to_ee_trees(make_dump([split(0, t, leaf(-1.0), leaf(1.0)), leaf(0.0)], 2, 1))
        got = reader.evaluate_trees(spec.trees[0], x, spec.feature_names)[:, 0]
        as_lightgbm = np.where(np.abs(x[:, 0]) <= LGBM_ZERO, 0.0, x[:, 0]) <= t
        np.testing.assert_array_equal(got, np.where(as_lightgbm, -1.0, 1.0), err_msg=str(t))


def test_stumps_become_a_dummy_split():
    assert tree_to_string(leaf(0.25), ["f0", "f1"]) == (
        "1) root 1 0 0\n2) f0 <= 0.0 1 0 0.25 *\n3) f0 > 0.0 1 0 0.25 *")
    X, y = synthetic(3000, 3, seed=4)
    booster = lgb.train(dict(objective="multiclass", num_class=3, min_data_in_leaf=10_000,
                             use_missing=False, verbose=-1, num_threads=1),
                        lgb.Dataset(X, y, feature_name=NAMES), 3)
    assert all(info["num_leaves"] == 1 for info in booster.dump_model()["tree_info"])
    spec = booster_to_ee_trees(booster)
    np.testing.assert_allclose(reader.class_scores(spec, X), predict(booster, X, raw_score=True),
                               rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- refusals


def test_categorical_model_is_refused():
    rng = np.random.default_rng(6)
    X = np.column_stack([rng.integers(0, 8, 4000), rng.random(4000)])
    y = np.array([0, 2, 1, 2, 0, 1, 1, 0])[X[:, 0].astype(int)]
    booster = lgb.train(dict(objective="multiclass", num_class=3, verbose=-1, num_threads=1),
                        lgb.Dataset(X, y, feature_name=["LC", "B04"], categorical_feature=[0]), 3)
    with pytest.raises(ModelError, match="categorical") as info:
        booster_to_ee_trees(booster)
    assert "retrain without categorical" in str(info.value)


@pytest.mark.parametrize("extra", [dict(), dict(zero_as_missing=True)])
def test_missing_value_splits_are_refused(extra):
    X, y = synthetic(3000, 3, seed=7)
    if not extra:
        X[::7, 0] = np.nan  # default use_missing=True learns a NaN direction
    else:
        X[::3, 0] = 0.0
    booster = lgb.train(dict(objective="multiclass", num_class=3, verbose=-1, num_threads=1, **extra),
                        lgb.Dataset(X, y, feature_name=NAMES), 3)
    with pytest.raises(ModelError, match="use_missing=False") as info:
        booster_to_ee_trees(booster)
    assert ("NaN" if not extra else "Zero") in str(info.value)


def test_bad_feature_names_are_refused(model3):
    booster, _, _ = model3
    names = list(NAMES)
    names[7], names[9] = "B8.A", "my band"
    with pytest.raises(ModelError) as info:
        booster_to_ee_trees(booster, feature_names=names)
    assert "'B8.A'" in str(info.value) and "'my band'" in str(info.value)
    assert "Fix:" in str(info.value)
    for bad in (["8A"], ["root"], ["a", "a"], ["B-4"]):
        with pytest.raises(ModelError):
            validate_feature_names(bad)
    assert validate_feature_names(NAMES) == NAMES


def test_other_refusals():
    with pytest.raises(ModelError, match="classification"):
        dump_to_ee_trees({**make_dump([leaf(1.0)]), "objective": "regression"})
    with pytest.raises(ModelError, match="boosting='gbdt'"):
        dump_to_ee_trees({**make_dump([leaf(1.0), leaf(2.0)]), "average_output": True})
    with pytest.raises(ModelError, match="class_values"):
        dump_to_ee_trees(make_dump([leaf(1.0), leaf(2.0)]), class_values=[1, 2, 3])


# ----------------------------------------------------------------------------- spec, numbers


def test_json_round_trip_and_payload_growth(model3):
    booster, _, spec = model3
    text = spec.to_json()
    assert set(json.loads(text)) == {"feature_names", "class_values", "output_mode", "trees"}
    again = EEClassifierSpec.from_json(text)
    assert again == spec and again.to_json() == text
    assert spec.payload_bytes() == len(text.encode())
    small = dump_to_ee_trees(booster.dump_model(num_iteration=10))
    assert small.n_trees == 30 < spec.n_trees
    assert small.payload_bytes() < spec.payload_bytes()
    with pytest.raises(ModelError, match="keys"):
        EEClassifierSpec.from_json('{"trees": []}')


def test_binary_and_sklearn_models():
    X, y = synthetic(6000, 2, seed=8)
    booster = lgb.train(dict(objective="binary", use_missing=False, verbose=-1, num_threads=1),
                        lgb.Dataset(X, y, feature_name=NAMES), 30)
    spec = booster_to_ee_trees(booster, class_values=[40, 50])
    want = np.where(predict(booster, X) > 0.5, 50, 40)
    assert (reader.classify(spec, X) == want).all()
    np.testing.assert_allclose(reader.class_scores(spec, X)[:, 1],
                               predict(booster, X, raw_score=True), rtol=0, atol=1e-9)
    X3, y3 = synthetic(6000, 3, seed=9)
    codes = np.array([10, 30, 80])[y3]
    clf = lgb.LGBMClassifier(n_estimators=20, use_missing=False, verbose=-1, n_jobs=1)
    clf.fit(X3, codes)
    spec = booster_to_ee_trees(clf, feature_names=NAMES)
    assert spec.class_values == [10, 30, 80]
    assert (reader.classify(spec, X3) == clf.predict(X3)).all()


def test_format_number_round_trips_without_exponent():
    rng = np.random.default_rng(10)
    special = [1e-35, 1.0000000180025095e-35, -2.5e-20, 5e-324, 1e22, 0.1, 1 / 3, -0.0,
               123456789.123, 2.0**-1074, 1.7976931348623157e308]
    randoms = np.frombuffer(rng.bytes(8 * 2000), dtype=np.float64)
    for x in special + [float(v) for v in randoms if np.isfinite(v)]:
        text = format_number(x)
        assert "e" not in text.lower() and float(text) == x, (x, text)
    assert format_number(0.1) == "0.1" and format_number(1e-35).startswith("0.0000")
    with pytest.raises(ValueError):
        format_number(float("nan"))


# ----------------------------------------------------------------------------- the reader


@pytest.mark.parametrize(("text", "line"), [
    ("1) root 1 0 0\n2) f0<=0.5 1 0 1 *\n3 f0>0.5 1 0 2 *", 3),          # malformed
    ("1) root 1 0 0\n2) f0<=0.5 1 0 1 *\n3) f0>0.5 1 0 x *", 3),         # not a number
    ("1) root 1 0 0\n2) f0<=0.5 1 0 1 *\n7) f0>0.5 1 0 2 *", 3),         # broken numbering
    ("1) root 1 0 0\n2) f0<=0.5 1 0 1 *\n3) f1>0.5 1 0 2 *", 3),         # sibling mismatch
    ("1) root 1 0 0\n2) f0<=0.5 1 0 1 *\n3) f0<=0.5 1 0 2 *", 3),        # not complementary
    ("1) root 1 0 0\n2) f0<=0.5 1 0 1\n3) f0>0.5 1 0 2 *", 2),           # internal, no children
    ("2) f0<=0.5 1 0 1 *", 1),                                           # no root
])
def test_reader_names_the_bad_line(text, line):
    with pytest.raises(ModelError, match=f"Error parsing line {line}"):
        reader.parse_tree(text)


def test_reader_accepts_spaced_operators_and_public_style():
    text = "1) root 9999 9999 9999\n  2) f0 <= -0.15 9999 9999 1 *\n  3) f0 > -0.15 9999 9999 2 *"
    X = np.array([[-0.15], [-0.2], [np.nextafter(-0.15, 1)]])
    np.testing.assert_array_equal(reader.evaluate_trees([text], X, ["f0"])[:, 0], [1, 1, 2])
    with pytest.raises(DataError, match="NaN"):
        reader.evaluate_trees([text], np.array([[np.nan]]), ["f0"])
    with pytest.raises(ModelError, match="not among the feature names"):
        reader.evaluate_trees([text], X, ["g0"])
