"""Accuracy assessment: confusion matrices, metrics, Olofsson area estimates, spatial block CV.

Orientation, everywhere in this module unless a docstring says otherwise:

* :func:`confusion` and :func:`metrics` put the **reference (true) class in rows** and the
  **map (predicted) class in columns**, like ``sklearn.metrics.confusion_matrix``.
* :func:`area_adjusted` follows Olofsson et al. (2014) instead: its error matrix has the
  **map class in rows** (the strata) and the **reference class in columns**.

Good practice (Olofsson et al. 2014, Remote Sensing of Environment 148, 42-57): evaluate on a
stratified random sample by map class, report the error matrix in estimated area proportions,
accuracies with 95 % confidence intervals, and areas estimated from the reference sample.
Random pixel splits leak spatial autocorrelation (Ploton et al. 2020), so hold out whole
spatial blocks: :func:`spatial_blocks` and :func:`block_cv_splits`.

matplotlib is imported lazily (only :func:`confusion_figure` needs it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lcgee.errors import DataError, DataWarning, ParamsError
from lcgee.labels import WORLDCOVER

__all__ = [
    "confusion",
    "metrics",
    "area_adjusted",
    "spatial_blocks",
    "block_cv_splits",
    "to_json_ready",
    "evaluate_map",
    "confusion_figure",
]

#: Two-sided 95 % normal quantile used for every confidence interval (as in Olofsson 2014).
Z95 = 1.96


# --------------------------------------------------------------------------- helpers


def _key(code: Any) -> str:
    """A class code as a JSON object key: ``np.int64(40)`` -> ``"40"``."""
    return str(code.item() if isinstance(code, np.generic) else code)


def _plain(code: Any) -> Any:
    """A class code as a plain Python scalar."""
    return code.item() if isinstance(code, np.generic) else code


def _class_array(classes: Sequence[Any]) -> np.ndarray:
    arr = np.asarray(list(classes))
    if arr.ndim != 1 or arr.size == 0:
        raise ParamsError("the class list is empty", where="classes",
                          fix="pass the class codes to evaluate, e.g. [10, 20, 30]")
    if np.unique(arr).size != arr.size:
        raise ParamsError(f"the class list has duplicates: {arr.tolist()}", where="classes",
                          fix="list each class code once")
    return arr


def _indices(y: Any, classes: np.ndarray, name: str) -> np.ndarray:
    """Position of each label of ``y`` in ``classes``; unknown labels raise :class:`DataError`."""
    y = np.asarray(y).ravel()
    sorter = np.argsort(classes, kind="stable")
    try:
        pos = np.searchsorted(classes[sorter], y).clip(0, classes.size - 1)
    except TypeError as exc:
        raise DataError(f"labels of type {y.dtype} cannot be compared with the class codes "
                        f"of type {classes.dtype}", where=name,
                        fix="pass labels and classes of the same kind (e.g. both int)") from exc
    idx = sorter[pos]
    unknown = classes[idx] != y
    if unknown.any():
        bad = sorted({_plain(v) for v in y[unknown]}, key=str)[:10]
        raise DataError(f"{int(unknown.sum())} labels are not in the class list (e.g. {bad})",
                        where=name, fix="add those codes to `classes` or drop those samples")
    return idx


def _count_matrix(rows: Any, cols: Any, classes: np.ndarray, names: tuple[str, str]) -> np.ndarray:
    r = _indices(rows, classes, names[0])
    c = _indices(cols, classes, names[1])
    if r.size != c.size:
        raise DataError(f"{names[0]} has {r.size} labels but {names[1]} has {c.size}",
                        fix="pass one reference and one map label per sample")
    k = classes.size
    return np.bincount(r * k + c, minlength=k * k).reshape(k, k).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, fill, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nan_to_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------- confusion & metrics


def confusion(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[Any]) -> np.ndarray:
    """Confusion matrix of counts: ``cm[i, j]`` = samples of reference class ``classes[i]``
    that the map labels ``classes[j]``.

    Rows are the reference (true) class, columns the map (predicted) class, in the order of
    ``classes`` -- the same as ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=classes)``.
    Labels not in ``classes`` raise :class:`~lcgee.errors.DataError` rather than being dropped.
    """
    cls = _class_array(classes)
    return _count_matrix(y_true, y_pred, cls, ("y_true", "y_pred"))


def _kappa(cm: np.ndarray) -> float:
    """Cohen's kappa from a count matrix; NaN when chance agreement is perfect."""
    n = cm.sum()
    po = np.trace(cm) / n
    pe = float(cm.sum(axis=1) @ cm.sum(axis=0)) / n**2
    return float((po - pe) / (1 - pe)) if pe != 1 else float("nan")


def metrics(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[Any]) -> dict[str, Any]:
    """Overall accuracy, Cohen's kappa, macro F1 and per-class scores of a labelled sample.

    Returns a dict with exactly these keys:

    * ``overall_accuracy`` -- fraction of samples where map equals reference.
    * ``kappa`` -- Cohen's kappa (NaN if undefined, i.e. all samples in one class).
    * ``macro_f1`` -- unweighted mean F1 over the *present* classes: those of ``classes``
      occurring in ``y_true`` or ``y_pred``. A class that occurs on one side only has F1 = 0
      (it counts, as ``zero_division=0`` in scikit-learn); a class absent from both is left out.
      Equals ``f1_score(y_true, y_pred, average="macro", labels=present, zero_division=0)``.
    * ``per_class`` -- keyed by the class code as str: ``precision`` (user's accuracy),
      ``recall`` (producer's accuracy), ``f1`` and ``support`` (reference count). A zero
      denominator gives 0 (``zero_division=0``); a class absent from both sides gets ``None``
      for the three scores and support 0.
    * ``confusion`` -- counts as nested lists, rows = reference, columns = map (see
      :func:`confusion`).
    * ``classes`` -- the class codes in matrix order.
    """
    cls = _class_array(classes)
    cm = confusion(y_true, y_pred, cls)
    n = int(cm.sum())
    if n == 0:
        raise DataError("there are no samples to evaluate", where="y_true",
                        fix="pass at least one labelled sample")
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = _safe_div(tp, predicted, fill=0.0)
    recall = _safe_div(tp, support, fill=0.0)
    f1 = _safe_div(2 * precision * recall, precision + recall, fill=0.0)
    present = (support + predicted) > 0
    per_class = {}
    for i, code in enumerate(cls):
        scores = (precision[i], recall[i], f1[i]) if present[i] else (None, None, None)
        per_class[_key(code)] = {
            "precision": None if scores[0] is None else float(scores[0]),
            "recall": None if scores[1] is None else float(scores[1]),
            "f1": None if scores[2] is None else float(scores[2]),
            "support": int(support[i]),
        }
    return {
        "overall_accuracy": float(np.trace(cm) / n),
        "kappa": _kappa(cm),
        "macro_f1": float(f1[present].mean()),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "classes": [_plain(c) for c in cls],
    }


# --------------------------------------------------------------------------- Olofsson et al. 2014


def _pixel_counts(map_pixel_counts: Mapping[Any, int], classes: np.ndarray) -> np.ndarray:
    """Mapped pixels per class in ``classes`` order; keys may be codes or their str."""
    by_key = {_key(k): v for k, v in map_pixel_counts.items()}
    wanted = {_key(c) for c in classes}
    extra = {k: v for k, v in by_key.items() if k not in wanted and v}
    if extra:
        raise DataError(f"mapped pixel counts name classes not in the class list: {sorted(extra)}",
                        where="map_pixel_counts",
                        fix="add those codes to `classes` so the total area is complete")
    counts = np.array([float(by_key.get(_key(c), 0)) for c in classes])
    if (counts < 0).any() or not np.isfinite(counts).all() or counts.sum() <= 0:
        raise DataError("mapped pixel counts must be finite, non-negative and not all zero",
                        where="map_pixel_counts", fix="count the map's pixels per class")
    return counts


def _warn_thin_strata(n_i: np.ndarray, weights: np.ndarray, classes: np.ndarray) -> None:
    thin = [_plain(c) for c, n, w in zip(classes, n_i, weights) if w > 0 and n < 2]
    if thin:
        warnings.warn(
            f"map classes {thin} have fewer than 2 reference samples: their variance is "
            "undefined (NaN), and with no sample at all their area proportions are too; "
            "sample at least ~75 points per map class (Olofsson et al. 2014)",
            DataWarning, stacklevel=3)
    unmapped = [_plain(c) for c, n, w in zip(classes, n_i, weights) if w == 0 and n > 0]
    if unmapped:
        warnings.warn(f"map classes {unmapped} have samples but no mapped pixels: their "
                      "stratum weight is 0, so those samples do not count", DataWarning,
                      stacklevel=3)


def _proportions(n: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Error matrix in estimated area proportions, p_ij = W_i n_ij / n_i. (Olofsson 2014)."""
    n_i = n.sum(axis=1)
    p = weights[:, None] * _safe_div(n, n_i[:, None])
    p[weights == 0] = 0.0  # an empty stratum contributes nothing, sampled or not
    return p


def _inverse_dof(n_i: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """1 / (n_i. - 1) for strata with weight; NaN when n_i. < 2; 0 for empty strata."""
    inv = _safe_div(np.ones_like(n_i, dtype=float), n_i - 1.0)
    inv[n_i < 2] = np.nan
    inv[weights == 0] = 0.0
    return inv


def _olofsson(n: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """Stratified estimators and standard errors from counts ``n`` (rows = map) and weights."""
    n_i = n.sum(axis=1).astype(float)
    inv = _inverse_dof(n_i, weights)
    p = _proportions(n, weights)
    p_col = p.sum(axis=0)
    frac = _safe_div(n, n_i[:, None])  # n_ij / n_i.
    users = np.diag(frac).copy()
    producers = _safe_div(np.diag(p), p_col)
    overall = float(np.trace(p))
    var_o = np.sum(np.where(weights > 0, weights**2 * users * (1 - users) * inv, 0.0))
    var_u = users * (1 - users) * _safe_div(np.ones_like(n_i), n_i - 1.0)
    var_u[n_i < 2] = np.nan
    var_p = _producers_variance(frac, weights, inv, users, producers, p_col)
    var_area = np.sum((weights[:, None] * p - p**2) * inv[:, None], axis=0)  # eq. 10 squared
    return {"p": p, "p_col": p_col, "overall": overall, "se_overall": float(np.sqrt(var_o)),
            "users": users, "se_users": np.sqrt(var_u), "producers": producers,
            "se_producers": np.sqrt(var_p), "se_area": np.sqrt(var_area), "n_i": n_i}


def _producers_variance(frac: np.ndarray, weights: np.ndarray, inv: np.ndarray, users: np.ndarray,
                        producers: np.ndarray, p_col: np.ndarray) -> np.ndarray:
    """V(P_j) of Olofsson et al. (2014) eq. 7, written with area weights W instead of N."""
    k = weights.size
    out = np.full(k, np.nan)
    for j in range(k):
        if p_col[j] == 0:
            continue
        own = weights[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) * inv[j]
        if weights[j] == 0:
            own = 0.0
        others = [weights[i] ** 2 * frac[i, j] * (1 - frac[i, j]) * inv[i]
                  for i in range(k) if i != j and weights[i] > 0]
        out[j] = (own + producers[j] ** 2 * float(np.sum(others))) / p_col[j] ** 2
    return out


def _estimate(value: float, se: float) -> dict[str, float | None]:
    return {"estimate": _nan_to_none(value), "se": _nan_to_none(se),
            "ci95": _nan_to_none(Z95 * se)}


def area_adjusted(y_ref: ArrayLike, y_map: ArrayLike, map_pixel_counts: Mapping[Any, int],
                  classes: Sequence[Any], *, pixel_area_m2: float = 100.0) -> dict[str, Any]:
    """Accuracy and area estimates for a stratified random sample by map class (Olofsson 2014).

    The strata are the map classes; ``map_pixel_counts`` gives the mapped pixels per class
    (keys: class codes or their str), so W_i = mapped proportion of class i. Counts n_ij have
    **rows = map class i, columns = reference class j**. Estimators (Olofsson et al. 2014):

    * ``error_matrix_proportions`` p_ij = W_i n_ij / n_i., nested lists, rows = map.
    * ``overall_accuracy`` O = sum_i p_ii; V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1) (eq. 5).
    * ``users_accuracy`` U_i = p_ii / p_i. = n_ii / n_i.; V = U_i (1 - U_i) / (n_i. - 1) (eq. 6).
    * ``producers_accuracy`` P_j = p_jj / p_.j with the variance of eq. 7.
    * ``area_ha`` A_j = p_.j * total area; S(p_.j) = sqrt(sum_i (W_i p_ij - p_ij^2) / (n_i. - 1))
      (eq. 10), times the total area.

    Every ``ci95`` (and ``ci95_ha``, ``overall_accuracy_ci95``) is the **half-width** of the
    95 % interval, 1.96 SE: report ``estimate ± ci95``, as the paper does. Accuracy entries are
    ``{"estimate", "se", "ci95"}``; area entries are ``{"estimate", "se", "ci95_ha",
    "mapped", "proportion"}`` in hectares (``mapped`` = the map's own area). Undefined values
    are ``None``. A map class with mapped pixels but fewer than 2 samples gets an undefined
    (NaN) variance contribution, so the intervals depending on it are ``None``; with no sample
    at all its area proportions are undefined too. Both warn with
    :class:`~lcgee.errors.DataWarning`. The result is plain Python: ``json.dumps`` accepts it.
    """
    cls = _class_array(classes)
    if not pixel_area_m2 > 0:
        raise ParamsError(f"pixel_area_m2 must be positive, got {pixel_area_m2}",
                          where="pixel_area_m2", fix="pass the area of one pixel in m², e.g. 100")
    n = _count_matrix(y_map, y_ref, cls, ("y_map", "y_ref"))
    counts = _pixel_counts(map_pixel_counts, cls)
    weights = counts / counts.sum()
    _warn_thin_strata(n.sum(axis=1), weights, cls)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = _olofsson(n, weights)
    total_ha = counts.sum() * pixel_area_m2 / 1e4
    keys = [_key(c) for c in cls]
    area = {k: {"estimate": _nan_to_none(est["p_col"][j] * total_ha),
                "se": _nan_to_none(est["se_area"][j] * total_ha),
                "ci95_ha": _nan_to_none(Z95 * est["se_area"][j] * total_ha),
                "mapped": float(weights[j] * total_ha),
                "proportion": _nan_to_none(est["p_col"][j])} for j, k in enumerate(keys)}
    return {
        "classes": [_plain(c) for c in cls],
        "overall_accuracy": _nan_to_none(est["overall"]),
        "overall_accuracy_se": _nan_to_none(est["se_overall"]),
        "overall_accuracy_ci95": _nan_to_none(Z95 * est["se_overall"]),
        "users_accuracy": {k: _estimate(est["users"][i], est["se_users"][i])
                           for i, k in enumerate(keys)},
        "producers_accuracy": {k: _estimate(est["producers"][j], est["se_producers"][j])
                               for j, k in enumerate(keys)},
        "area_ha": area,
        "total_area_ha": float(total_ha),
        "error_matrix_proportions": to_json_ready(est["p"]),
        "error_matrix_counts": n.tolist(),
        "n_samples": {k: int(est["n_i"][i]) for i, k in enumerate(keys)},
    }


# --------------------------------------------------------------------------- spatial blocks


def spatial_blocks(rows: ArrayLike, cols: ArrayLike, block_px: int) -> np.ndarray:
    """Block id of each sample from its pixel row/col, with square blocks of ``block_px`` pixels.

    Ids are consecutive integers 0..k-1 over the occupied blocks, ordered by block row then
    block column. Choose ``block_px`` larger than the spatial autocorrelation range.
    """
    r, c = np.asarray(rows).ravel(), np.asarray(cols).ravel()
    if r.shape != c.shape:
        raise DataError(f"rows has {r.size} values but cols has {c.size}",
                        fix="pass one row and one column per sample")
    if int(block_px) != block_px or block_px < 1:
        raise ParamsError(f"block_px must be a positive integer, got {block_px}",
                          where="block_px", fix="use a block size in pixels, e.g. 64")
    if r.size == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = np.stack([np.floor_divide(r, block_px), np.floor_divide(c, block_px)], axis=1)
    _, ids = np.unique(pairs.astype(np.int64), axis=0, return_inverse=True)
    return ids.ravel().astype(np.int64)


def block_cv_splits(block_ids: ArrayLike, n_splits: int = 5, seed: int = 0
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds that keep every spatial block whole.

    Blocks are relabelled in a seeded random order and then dealt out by scikit-learn's
    ``GroupKFold`` (which balances sample counts), so no block is in both the training and
    the test part of a fold and every sample is tested exactly once. Returns a list of
    ``(train_idx, test_idx)`` sorted int arrays. Fewer distinct blocks than ``n_splits``
    raises :class:`~lcgee.errors.DataError`.
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(block_ids).ravel()
    if int(n_splits) != n_splits or n_splits < 2:
        raise ParamsError(f"n_splits must be an integer of at least 2, got {n_splits}",
                          where="n_splits", fix="use e.g. 5 folds")
    uniq, inverse = np.unique(groups, return_inverse=True)
    if uniq.size < n_splits:
        raise DataError(f"only {uniq.size} distinct spatial blocks for {n_splits} folds",
                        where="block_ids",
                        fix="use smaller blocks (block_px), fewer folds, or more samples")
    shuffled = np.random.default_rng(seed).permutation(uniq.size)[inverse.ravel()]
    folds = GroupKFold(n_splits=int(n_splits)).split(np.zeros(groups.size), groups=shuffled)
    return [(np.sort(train).astype(np.int64), np.sort(test).astype(np.int64))
            for train, test in folds]


# --------------------------------------------------------------------------- output


def to_json_ready(d: Any) -> Any:
    """A copy of ``d`` that ``json.dumps(..., allow_nan=False)`` accepts.

    numpy scalars and arrays become Python numbers and lists, tuples become lists, dict keys
    become str (``np.int64(40)`` -> ``"40"``), and NaN / infinity become ``None``.
    """
    if isinstance(d, Mapping):
        return {k if isinstance(k, str) else _key(k): to_json_ready(v) for k, v in d.items()}
    if isinstance(d, np.ndarray):
        return to_json_ready(d.tolist())
    if isinstance(d, list | tuple | set):
        return [to_json_ready(v) for v in d]
    if isinstance(d, np.generic):
        d = d.item()
    if isinstance(d, float):
        return _nan_to_none(d)
    return d


def _class_labels(classes: Sequence[Any], class_names: Mapping[Any, str] | None,
                  colors: Mapping[Any, str] | None) -> tuple[list[str], list[str | None]]:
    names = {_key(k): v for k, v in (class_names or {}).items()}
    cols = {_key(k): v for k, v in (colors or {}).items()}
    labels, colours = [], []
    for code in classes:
        k, wc = _key(code), WORLDCOVER.get(_plain(code))
        name = names.get(k, wc[0] if wc else None)
        labels.append(f"{k} {name}" if name else k)
        colours.append(cols.get(k, wc[1] if wc else None))
    return labels, colours


def _normalized(cm: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize is None:
        return cm.astype(float)
    axis = {"true": 1, "pred": 0, "all": None}.get(normalize, "bad")
    if axis == "bad":
        raise ParamsError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}",
                          where="normalize", fix="use normalize='true' for row percentages")
    return _safe_div(cm, cm.sum(axis=axis, keepdims=axis is not None), fill=0.0)


def confusion_figure(cm: ArrayLike, classes: Sequence[Any], *, normalize: str | None = None,
                     title: str = "Confusion matrix (rows: reference, columns: map)",
                     class_names: Mapping[Any, str] | None = None,
                     colors: Mapping[Any, str] | None = None) -> Any:
    """A confusion-matrix figure: each cell shows its count and its row percentage.

    ``cm`` has rows = reference and columns = map (as :func:`confusion`). Cells are shaded by
    the counts (``normalize=None``) or by the matrix normalised over rows (``"true"``),
    columns (``"pred"``) or everything (``"all"``). Tick labels read like ``"40 Cropland"``
    (names from ``class_names``, else the WorldCover table) on a background of the class
    colour (``colors``, else WorldCover's). Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise DataError(f"the confusion matrix has shape {cm.shape} for {len(classes)} classes",
                        where="cm", fix="pass a square matrix with one row per class")
    shade = _normalized(cm, normalize)
    rows_pct = 100 * _safe_div(cm, cm.sum(axis=1, keepdims=True), fill=0.0)
    labels, colours = _class_labels(classes, class_names, colors)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(2.2 + 0.85 * k, 1.6 + 0.75 * k))
    im = ax.imshow(shade, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="count" if normalize is None else f"fraction ({normalize})")
    threshold = (np.nanmax(shade) if shade.size else 0) / 2
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{rows_pct[i, j]:.0f}%", ha="center", va="center",
                    fontsize=8, color="white" if shade[i, j] > threshold else "black")
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        for tick, colour in zip(ticks, colours):
            if colour:
                tick.set_bbox({"facecolor": colour, "alpha": 0.45, "edgecolor": "none", "pad": 1})
    ax.set_xlabel("map (predicted)")
    ax.set_ylabel("reference (true)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def evaluate_map(pred: np.ndarray, ref: np.ndarray, classes: Sequence[int], *, seed: int = 0,
                 per_stratum: int = 100, pixel_area_m2: float = 100.0) -> dict[str, Any]:
    """Evaluate a map region against a reference map of the same pixels.

    Every pixel where both have a class counts for :func:`metrics` (a census). For
    :func:`area_adjusted`, a stratified random sample of ``per_stratum`` pixels per map class
    plays the part of the reference sample Olofsson et al. (2014) assume.
    """
    valid = (pred > 0) & (ref > 0)
    present = sorted({int(c) for c in classes} | {int(c) for c in np.unique(ref[valid])}
                     | {int(c) for c in np.unique(pred[valid])})
    out = metrics(ref[valid], pred[valid], present)
    rng = np.random.default_rng(seed)
    picks = []
    for code in np.unique(pred[valid]):
        idx = np.flatnonzero(valid.ravel() & (pred.ravel() == code))
        picks.append(rng.choice(idx, size=min(per_stratum, idx.size), replace=False))
    sample = np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)
    codes, counts = np.unique(pred[pred > 0], return_counts=True)
    out["area_adjusted"] = area_adjusted(
        ref.ravel()[sample], pred.ravel()[sample],
        {int(c): int(n) for c, n in zip(codes, counts)}, present, pixel_area_m2=pixel_area_m2)
    out["n_pixels"] = int(valid.sum())
    out["sample_per_stratum"] = per_stratum
    return out
