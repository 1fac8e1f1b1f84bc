"""Accuracy assessment: metrics against scikit-learn, Olofsson et al. (2014), spatial block CV."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from lcgee.errors import DataError, DataWarning, ParamsError
from lcgee.evaluate import (
    area_adjusted,
    block_cv_splits,
    confusion,
    confusion_figure,
    metrics,
    spatial_blocks,
    to_json_ready,
)

# ----------------------------------------------------------------------------- metrics

CLASSES = [10, 20, 30, 40, 50, 60, 70]


def _random_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth never holds 60, predictions never hold 40; 70 is in neither."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice([10, 20, 30, 40, 50], size=400, p=[0.4, 0.25, 0.15, 0.1, 0.1])
    y_pred = np.where(rng.random(400) < 0.6, y_true, rng.choice([10, 20, 30, 50, 60], size=400))
    y_pred = np.where(y_pred == 40, 30, y_pred)
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed):
    y_true, y_pred = _random_labels(seed)
    present = [10, 20, 30, 40, 50, 60]
    assert 40 not in y_pred and 60 not in y_true  # the case under test
    m = metrics(y_true, y_pred, CLASSES)

    assert set(m) == {"overall_accuracy", "kappa", "macro_f1", "per_class", "confusion", "classes"}
    assert m["classes"] == CLASSES
    assert m["overall_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred, labels=CLASSES))
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", labels=present, zero_division=0))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro",
                                                       zero_division=0))
    np.testing.assert_array_equal(m["confusion"],
                                  skm.confusion_matrix(y_true, y_pred, labels=CLASSES))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y_true, y_pred, labels=present,
                                                             zero_division=0)
    for i, code in enumerate(present):
        got = m["per_class"][str(code)]
        assert got["precision"] == pytest.approx(prec[i])
        assert got["recall"] == pytest.approx(rec[i])
        assert got["f1"] == pytest.approx(f1[i])
        assert got["support"] == sup[i]
    assert m["per_class"]["40"]["precision"] == 0.0  # never predicted: zero_division=0
    assert m["per_class"]["70"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    json.dumps(m, allow_nan=False)


def test_confusion_orientation_rows_are_reference():
    cm = confusion([1, 1, 2], [1, 2, 2], [1, 2])
    np.testing.assert_array_equal(cm, [[1, 1], [0, 1]])  # the reference-1 sample mapped as 2


def test_unknown_labels_and_empty_input_are_refused():
    with pytest.raises(DataError, match="not in the class list"):
        metrics([10, 20, 99], [10, 20, 20], [10, 20])
    with pytest.raises(DataError, match="no samples"):
        metrics([], [], [10, 20])
    with pytest.raises(ParamsError, match="duplicates"):
        confusion([10], [10], [10, 10])


# ----------------------------------------------------------------------------- Olofsson 2014

# Olofsson et al. (2014) RSE 148, 42-57, section 5 (Table 8): sample counts with rows = MAP
# class and columns = reference class. (The transposed matrix, [[66, 0, 1, 2], ...] as rows =
# map, gives n_i. = 69, 56, 175, 340 and reproduces none of the published results below.)
PAPER_COUNTS = np.array([[66, 0, 5, 4],
                         [0, 55, 8, 12],
                         [1, 0, 153, 11],
                         [2, 1, 9, 313]])
PAPER_PIXELS = {"1": 200_000, "2": 150_000, "3": 3_200_000, "4": 6_450_000}  # 30 m pixels
PAPER_CLASSES = [1, 2, 3, 4]  # deforestation, forest gain, stable forest, stable non-forest


def _samples(counts: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(y_ref, y_map) arrays from a count matrix with rows = map, columns = reference."""
    i, j = np.indices(counts.shape)
    reps = counts.ravel()
    y_map = np.repeat(np.asarray(classes)[i.ravel()], reps)
    y_ref = np.repeat(np.asarray(classes)[j.ravel()], reps)
    return y_ref, y_map


def _paper_result(counts: np.ndarray = PAPER_COUNTS) -> dict:
    y_ref, y_map = _samples(counts, PAPER_CLASSES)
    return area_adjusted(y_ref, y_map, PAPER_PIXELS, PAPER_CLASSES, pixel_area_m2=900.0)


def test_olofsson_example_reproduces_published_numbers():
    r = _paper_result()
    assert r["n_samples"] == {"1": 75, "2": 75, "3": 165, "4": 325}
    assert r["total_area_ha"] == pytest.approx(900_000)
    assert round(r["overall_accuracy"], 3) == 0.947
    assert round(r["overall_accuracy_ci95"], 3) == 0.018
    for code, ua in zip("1234", [0.88, 0.73, 0.93, 0.96]):
        assert round(r["users_accuracy"][code]["estimate"], 2) == ua
    for code, pa in zip("1234", [0.75, 0.85, 0.93, 0.96]):
        assert round(r["producers_accuracy"][code]["estimate"], 2) == pa
    published_ha = {"1": (21_158, 6_158), "2": (11_686, 3_756), "3": (285_770, 15_510),
                    "4": (581_386, 16_282)}
    for code, (area, ci) in published_ha.items():
        assert r["area_ha"][code]["estimate"] == pytest.approx(area, abs=0.5)
        assert r["area_ha"][code]["ci95_ha"] == pytest.approx(ci, abs=0.5)
    assert r["area_ha"]["1"]["mapped"] == pytest.approx(18_000)


def test_olofsson_error_matrix_in_area_proportions():
    r = _paper_result()
    p = np.array(r["error_matrix_proportions"])
    weights = np.array([0.02, 0.015, 0.32, 0.645])
    np.testing.assert_allclose(p.sum(axis=1), weights)  # rows = map strata
    assert p[0, 0] == pytest.approx(0.02 * 66 / 75)
    assert p.sum() == pytest.approx(1.0)
    assert np.trace(p) == pytest.approx(r["overall_accuracy"])
    json.dumps(r, allow_nan=False)


def test_transposed_matrix_does_not_reproduce_the_paper():
    r = _paper_result(PAPER_COUNTS.T)
    assert round(r["users_accuracy"]["1"]["estimate"], 2) != 0.88
    assert abs(r["area_ha"]["1"]["estimate"] - 21_158) > 1_000


def _stehman_ratio(y, x, strata, weights):
    """Stratified ratio estimator and its SE (Stehman 2014, eqs. 27-28, no finite correction)."""
    keys = list(weights)
    ybar = np.array([y[strata == h].mean() for h in keys])
    xbar = np.array([x[strata == h].mean() for h in keys])
    w = np.array([weights[h] for h in keys])
    ratio = (w @ ybar) / (w @ xbar)
    var = 0.0
    for h, wh in zip(keys, w):
        yh, xh = y[strata == h], x[strata == h]
        cov = np.cov(yh, xh, ddof=1)
        var += wh**2 * (cov[0, 0] + ratio**2 * cov[1, 1] - 2 * ratio * cov[0, 1]) / yh.size
    return ratio, np.sqrt(var) / (w @ xbar)


def test_olofsson_standard_errors_match_an_independent_sample_level_estimator():
    """Eqs. 5, 6, 7 and 10 agree with Stehman's (2014) general stratified ratio estimator."""
    r = _paper_result()
    y_ref, y_map = _samples(PAPER_COUNTS, PAPER_CLASSES)
    total = sum(PAPER_PIXELS.values())
    weights = {c: PAPER_PIXELS[str(c)] / total for c in PAPER_CLASSES}
    ones = np.ones(y_ref.size)
    est, se = _stehman_ratio((y_ref == y_map).astype(float), ones, y_map, weights)
    assert r["overall_accuracy"] == pytest.approx(est)
    assert r["overall_accuracy_se"] == pytest.approx(se)
    for c in PAPER_CLASSES:
        hit = ((y_ref == c) & (y_map == c)).astype(float)
        est, se = _stehman_ratio(hit, (y_map == c).astype(float), y_map, weights)
        assert r["users_accuracy"][str(c)]["se"] == pytest.approx(se)
        est, se = _stehman_ratio(hit, (y_ref == c).astype(float), y_map, weights)
        assert r["producers_accuracy"][str(c)]["estimate"] == pytest.approx(est)
        assert r["producers_accuracy"][str(c)]["se"] == pytest.approx(se)
        est, se = _stehman_ratio((y_ref == c).astype(float), ones, y_map, weights)
        assert r["area_ha"][str(c)]["proportion"] == pytest.approx(est)
        assert r["area_ha"][str(c)]["se"] == pytest.approx(se * r["total_area_ha"])


def test_thin_strata_warn_and_give_undefined_intervals():
    counts = PAPER_COUNTS.copy()
    counts[1] = [0, 1, 0, 0]  # forest gain: a single sample
    y_ref, y_map = _samples(counts, PAPER_CLASSES)
    with pytest.warns(DataWarning, match="fewer than 2"):
        r = area_adjusted(y_ref, y_map, PAPER_PIXELS, PAPER_CLASSES, pixel_area_m2=900.0)
    assert r["overall_accuracy"] is not None
    assert r["overall_accuracy_ci95"] is None
    assert r["users_accuracy"]["2"]["estimate"] == 1.0 and r["users_accuracy"]["2"]["se"] is None
    assert r["users_accuracy"]["1"]["ci95"] is not None  # other strata keep their intervals
    assert r["area_ha"]["2"]["ci95_ha"] is None
    json.dumps(r, allow_nan=False)

    counts[1] = 0  # forest gain mapped but never sampled
    y_ref, y_map = _samples(counts, PAPER_CLASSES)
    with pytest.warns(DataWarning):
        r = area_adjusted(y_ref, y_map, PAPER_PIXELS, PAPER_CLASSES, pixel_area_m2=900.0)
    assert r["n_samples"]["2"] == 0
    assert r["overall_accuracy"] is None and r["area_ha"]["1"]["estimate"] is None


def test_unmapped_class_without_samples_is_harmless():
    y_ref, y_map = _samples(PAPER_COUNTS, PAPER_CLASSES)
    pixels = {int(k): v for k, v in PAPER_PIXELS.items()}  # int keys work too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = area_adjusted(y_ref, y_map, pixels, [*PAPER_CLASSES, 5], pixel_area_m2=900.0)
    assert r["area_ha"]["5"]["estimate"] == 0.0
    assert round(r["overall_accuracy"], 3) == 0.947
    assert r["producers_accuracy"]["5"]["estimate"] is None


def test_area_adjusted_refuses_bad_pixel_counts():
    y_ref, y_map = _samples(PAPER_COUNTS, PAPER_CLASSES)
    with pytest.raises(DataError, match="not in the class list"):
        area_adjusted(y_ref, y_map, {**PAPER_PIXELS, "9": 10}, PAPER_CLASSES)
    with pytest.raises(DataError, match="not all zero"):
        area_adjusted(y_ref, y_map, {}, PAPER_CLASSES)
    with pytest.raises(ParamsError):
        area_adjusted(y_ref, y_map, PAPER_PIXELS, PAPER_CLASSES, pixel_area_m2=0)


# ----------------------------------------------------------------------------- spatial blocks


def test_spatial_blocks_ids():
    rows = np.array([0, 9, 10, 0, 25, -1])
    cols = np.array([0, 9, 0, 10, 25, 0])
    ids = spatial_blocks(rows, cols, 10)
    assert ids[0] == ids[1]  # same 10 x 10 block
    assert len({ids[0], ids[2], ids[3], ids[4], ids[5]}) == 5
    assert sorted(set(ids.tolist())) == list(range(5))
    with pytest.raises(ParamsError):
        spatial_blocks(rows, cols, 0)


@pytest.mark.parametrize("seed", [0, 3])
def test_block_cv_keeps_blocks_whole_and_tests_each_sample_once(seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 500, 2000), rng.integers(0, 500, 2000)
    blocks = spatial_blocks(rows, cols, 100)
    splits = block_cv_splits(blocks, n_splits=5, seed=seed)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(blocks.size))
    for train, test in splits:
        assert test.size and train.size + test.size == blocks.size
        assert not set(blocks[train]) & set(blocks[test])
    again = block_cv_splits(blocks, n_splits=5, seed=seed)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))


def test_block_cv_refuses_too_few_blocks():
    blocks = spatial_blocks(np.arange(100), np.arange(100), 50)  # two blocks
    with pytest.raises(DataError, match="only 2 distinct spatial blocks for 5 folds"):
        block_cv_splits(blocks, n_splits=5, seed=0)
    with pytest.raises(ParamsError):
        block_cv_splits(blocks, n_splits=1, seed=0)


# ----------------------------------------------------------------------------- output


def test_to_json_ready_round_trips():
    d = {np.int64(40): {"a": np.float32(0.5), "b": np.arange(3), "c": (np.bool_(True), 2)},
         "nan": np.float64("nan"), "inf": float("inf"), "m": np.eye(2)}
    text = json.dumps(to_json_ready(d), allow_nan=False)
    assert json.loads(text) == {"40": {"a": 0.5, "b": [0, 1, 2], "c": [True, 2]},
                                "nan": None, "inf": None, "m": [[1.0, 0.0], [0.0, 1.0]]}


def test_confusion_figure_returns_a_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    y_true, y_pred = _random_labels(0)
    cm = confusion(y_true, y_pred, CLASSES)
    for normalize in (None, "true", "all"):
        fig = confusion_figure(cm, CLASSES, normalize=normalize, class_names={60: "Bare"})
        assert isinstance(fig, Figure)
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert labels[3] == "40 Cropland" and labels[5] == "60 Bare"
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert f"{cm[0, 0]}\n{100 * cm[0, 0] / cm[0].sum():.0f}%" in texts
        plt.close(fig)
    with pytest.raises(ParamsError):
        confusion_figure(cm, CLASSES, normalize="rows")


def test_evaluate_map_census_and_sample():
    from lcgee.evaluate import evaluate_map

    rng = np.random.default_rng(3)
    ref = rng.choice([10, 40, 80], size=(60, 60))
    pred = np.where(rng.random((60, 60)) < 0.8, ref, 40)
    pred[:5] = 0  # no valid composite
    out = evaluate_map(pred, ref, [10, 40, 80], per_stratum=50, seed=1)
    valid = pred > 0
    assert out["n_pixels"] == valid.sum()
    assert out["overall_accuracy"] == pytest.approx((pred == ref)[valid].mean())
    aa = out["area_adjusted"]
    assert sum(aa["n_samples"].values()) == 150
    assert 0.6 < aa["overall_accuracy"] < 1 and aa["overall_accuracy_ci95"] > 0
    assert sum(v["mapped"] for v in aa["area_ha"].values()) == pytest.approx(valid.sum() / 100)
