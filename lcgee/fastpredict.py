"""Exact and fast LightGBM prediction for land-cover maps (numba, no C compiler needed).

:class:`FastPredictor` flattens ``Booster.dump_model()`` into NumPy arrays and scores pixels
with numba kernels: raw scores equal ``booster.predict(X, raw_score=True)`` (bit for bit in the
tests), class indices equal ``argmax(booster.predict(X))``, about 10-40x faster than
``Booster.predict`` on 2 cores (``bench/predict.py``). Semantics reproduced from LightGBM:

* a split sends ``x`` left when ``x <= threshold``, in float64 (float32 input is widened
  exactly; other dtypes are cast to float32 first, as LightGBM's Python package does);
* ``|x| <= 1e-35`` (``kZeroThreshold``) and NaN are read as 0;
* class ``k`` sums, in float64 and tree order, the leaves of trees ``t % n_outputs == k`` (the
  boost-from-average score is in the first trees); ``boosting="rf"`` divides by the number of
  iterations before probabilities (not in raw scores);
* class index: argmax of the softmax (``multiclass``) or per-class sigmoid (``multiclassova``)
  probabilities, ``p > 1 - p`` for ``binary``; near-ties of the raw scores are settled on the
  probabilities computed as LightGBM computes them.

Refused with :class:`~lcgee.errors.ModelError`, as Earth Engine could not reproduce them (lcgee
trains without NaN, ``use_missing=False``, ``zero_as_missing=False``): categorical splits,
``missing_type=NaN`` nodes, ``missing_type=Zero`` nodes whose default side differs from the
comparison, linear trees. NaN input raises unless ``check_finite=False`` (then it is scored as
0, like LightGBM); :meth:`FastPredictor.predict_map` writes ``nodata`` there instead.

Kernels: ``"bitvector"`` (trees of up to 64 leaves) is QuickScorer (Lucchese et al., SIGIR
2015): one bit per leaf, each node whose test is false clears the leaves of its left subtree,
the exit leaf is the lowest set bit. Nodes sorted by (tree block, feature, threshold) let a
group of 256 rows scan each feature's thresholds once, vectorized over rows. For float32 input
thresholds are rounded down to float32, which keeps ``x > t`` exact. ``"walk"`` traverses trees
row by row, for larger trees.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dask.array as da
import numba
import numpy as np
import xarray as xr
from llvmlite import ir
from numba.extending import intrinsic

from lcgee.errors import ModelError

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = ["FastPredictor", "Method", "METHODS"]

Method = Literal["auto", "bitvector", "walk"]
METHODS: tuple[str, ...] = ("auto", "bitvector", "walk")

_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: the literal 1e-35f widened to double
_GROUP = 256  # rows scored together by the bitvector kernel (one parallel task)
_TREE_BLOCK = 32  # trees whose bitvectors stay in L1 cache while their nodes are scanned
_MAX_BITVECTOR_LEAVES = 64
_RAW, _SOFTMAX, _SIGMOID, _BINARY = 0, 1, 2, 3  # how class indices follow from raw scores
_JIT: dict[str, Any] = {"nogil": True, "cache": True, "fastmath": False}
_RETRAIN = ("retrain with lcgee's settings: numeric features only (no categorical_feature), "
            "no NaN in the training table, use_missing=False, zero_as_missing=False, "
            "linear_tree=False, so that Earth Engine can reproduce the model")


# ---- numba kernels -------------------------------------------------------------------------
@intrinsic
def _cttz(typingctx: Any, x: Any) -> Any:
    """Count trailing zeros (LLVM ``cttz``): the index of the lowest set bit of ``x``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return x(x), codegen


@numba.njit(inline="always", **_JIT)
def _load_rows(X: np.ndarray, start: int, count: int, group: int, xs: np.ndarray) -> None:
    """Rows ``start:start + count`` of ``X`` into ``xs`` (feature, row) as LightGBM reads them.

    ``|x| <= kZeroThreshold`` and NaN become 0; rows past ``count`` repeat row ``start``.
    """
    for r in range(group):
        row = start + r if r < count else start
        for f in range(X.shape[1]):
            x = X[row, f]
            xs[f, r] = x if abs(x) > _ZERO else 0.0


@numba.njit(inline="always", **_JIT)
def _bitvector_rows(X: np.ndarray, start: int, stop: int, model: tuple, group: int,
                    out: np.ndarray) -> None:
    """QuickScorer over rows ``start:stop`` (at most ``group``) into ``out`` (row, class).

    ``group`` is a run-time value on purpose: a compile-time trip count gets the row loops
    fully unrolled, and LLVM then cannot vectorize them (it needs a run-time alias check).
    """
    fptr, thr, node_tree, mask, full, tree_ptr, leaf_ptr, leaf_value, tree_class = model
    nf = X.shape[1]
    n_blocks = tree_ptr.size - 1
    max_trees = 0
    for b in range(n_blocks):
        max_trees = max(max_trees, tree_ptr[b + 1] - tree_ptr[b])
    v = np.empty((max_trees, group), mask.dtype)
    xs = np.empty((nf, group), thr.dtype)
    xmax = np.empty(nf, thr.dtype)
    acc = np.zeros((out.shape[1], group), np.float64)
    count = stop - start
    _load_rows(X, start, count, group, xs)
    for f in range(nf):
        xmax[f] = xs[f].max()
    for b in range(n_blocks):
        t0 = tree_ptr[b]
        v[:, :] = full
        for f in range(nf):
            for j in range(fptr[b * nf + f], fptr[b * nf + f + 1]):
                t = thr[j]
                if t >= xmax[f]:  # thresholds are sorted: no row goes right here or later
                    break
                m = mask[j]
                i = node_tree[j]
                for r in range(group):
                    v[i, r] &= m if xs[f, r] > t else full
        for i in range(tree_ptr[b + 1] - t0):
            k = tree_class[t0 + i]
            base = leaf_ptr[t0 + i]
            for r in range(group):
                acc[k, r] += leaf_value[base + _cttz(v[i, r])]
    out[start:stop, :] = acc[:, :count].T


@numba.njit(inline="always", **_JIT)
def _walk_rows(X: np.ndarray, start: int, stop: int, model: tuple, group: int,
               out: np.ndarray) -> None:
    """Tree traversal, tree by tree over rows ``start:stop``; children ``< 0`` are leaves."""
    feature, thr, child, root, leaf_value, tree_class = model
    xs = np.empty((X.shape[1], group), thr.dtype)
    acc = np.zeros((out.shape[1], group), np.float64)
    count = stop - start
    _load_rows(X, start, count, group, xs)
    for t in range(root.size):
        k = tree_class[t]
        for r in range(count):
            node = root[t]
            while node >= 0:  # child 2n is the left one (x <= threshold), 2n + 1 the right one
                node = child[2 * node + (xs[feature[node], r] > thr[node])]
            acc[k, r] += leaf_value[~node]
    out[start:stop, :] = acc[:, :count].T


@numba.njit(**_JIT)
def _bitvector_serial(X: np.ndarray, model: tuple, group: int, out: np.ndarray) -> None:
    """Single-threaded, GIL-free: for Dask tasks (Dask supplies the parallelism)."""
    for start in range(0, X.shape[0], group):
        _bitvector_rows(X, start, min(X.shape[0], start + group), model, group, out)


@numba.njit(parallel=True, **_JIT)
def _bitvector_parallel(X: np.ndarray, model: tuple, group: int, out: np.ndarray) -> None:
    """Multi-threaded over groups of rows: for in-memory input."""
    n = X.shape[0]
    for g in numba.prange((n + group - 1) // group):
        _bitvector_rows(X, g * group, min(n, (g + 1) * group), model, group, out)


@numba.njit(**_JIT)
def _walk_serial(X: np.ndarray, model: tuple, group: int, out: np.ndarray) -> None:
    """Single-threaded, GIL-free tree walk: for Dask tasks."""
    for start in range(0, X.shape[0], group):
        _walk_rows(X, start, min(X.shape[0], start + group), model, group, out)


@numba.njit(parallel=True, **_JIT)
def _walk_parallel(X: np.ndarray, model: tuple, group: int, out: np.ndarray) -> None:
    """Multi-threaded tree walk over groups of rows."""
    n = X.shape[0]
    for g in numba.prange((n + group - 1) // group):
        _walk_rows(X, g * group, min(n, (g + 1) * group), model, group, out)


@numba.njit(**_JIT)
def _class_index(raw: np.ndarray, kind: int, sigmoid: float, n_avg: int, out: np.ndarray) -> None:
    """Most probable class per row (ties to the lowest index, like ``np.argmax``).

    Scores are divided by ``n_avg`` first when it is > 0 (``boosting="rf"``), as LightGBM does.
    """
    s = np.empty(raw.shape[1], np.float64)
    p = np.empty(raw.shape[1], np.float64)
    for i in range(raw.shape[0]):
        for k in range(raw.shape[1]):
            s[k] = raw[i, k] / n_avg if n_avg > 0 else raw[i, k]
        if kind == _BINARY:
            prob = 1.0 / (1.0 + math.exp(-sigmoid * s[0]))
            out[i] = 1 if prob > 1.0 - prob else 0
            continue
        best = 0
        for k in range(1, s.size):
            if s[k] > s[best]:
                best = k
        tol = 1e-9 * max(1.0, abs(s[best]))
        near = False
        for k in range(s.size):
            near |= k != best and s[best] - s[k] <= tol
        if near and kind != _RAW:  # probabilities may round to a tie: compute them as LightGBM
            wmax = s.max()
            wsum = 0.0
            for k in range(s.size):
                p[k] = (math.exp(s[k] - wmax) if kind == _SOFTMAX
                        else 1.0 / (1.0 + math.exp(-sigmoid * s[k])))
                wsum += p[k]
            if kind == _SOFTMAX:
                p /= wsum
            best = np.argmax(p)
        out[i] = best


# ---- reading a LightGBM model ----------------------------------------------------------------
@dataclass(frozen=True)
class _Forest:
    """A LightGBM model as flat arrays; see :func:`_read_dump`."""

    n_features: int
    n_outputs: int  # raw score columns (num_tree_per_iteration)
    feature_names: tuple[str, ...]
    objective: str
    n_avg: int  # divide by this before probabilities (``boosting="rf"``), 0 = do not
    max_leaves: int
    feature: np.ndarray  # int32 per internal node
    threshold: np.ndarray  # float64 per internal node
    child: np.ndarray  # int32 (node, 2): left, right; an internal node index or ~leaf index
    root: np.ndarray  # int32 per tree
    leaf_value: np.ndarray  # float64, the leaves of each tree left to right
    leaf_ptr: np.ndarray  # int64 per tree: its first leaf
    node_tree: np.ndarray  # int32 per internal node
    span: np.ndarray  # int64 (node, 2): leaves [first, stop) of the node's left subtree

    @property
    def n_trees(self) -> int:
        return int(self.root.size)


def _check_split(node: dict[str, Any], tree: int, names: Sequence[str]) -> None:
    """Raise :class:`ModelError` for splits Earth Engine (and lcgee) cannot reproduce."""
    where = f"LightGBM model, tree {tree}, split {node.get('split_index')}"
    name = names[node["split_feature"]] if node["split_feature"] < len(names) else "?"
    if node.get("decision_type", "<=") != "<=":
        raise ModelError(f"the model has a categorical split ({node.get('decision_type')}) on "
                         f"feature '{name}'; lcgee supports numerical splits only",
                         where=where, fix=_RETRAIN)
    missing = node.get("missing_type", "None")
    if missing == "NaN":
        raise ModelError(f"the model learned a default direction for NaN at feature '{name}' "
                         "(missing_type=NaN: it was trained on data with NaN)",
                         where=where, fix=_RETRAIN)
    if missing == "Zero" and bool(node["default_left"]) != (0.0 <= node["threshold"]):
        raise ModelError(f"the model sends 0 at feature '{name}' to its learned default side "
                         "(missing_type=Zero), not by its threshold", where=where, fix=_RETRAIN)


def _read_tree(structure: dict[str, Any], tree: int, names: Sequence[str],
               acc: dict[str, list]) -> int:
    """Append one tree to the lists in ``acc``; return its number of leaves.

    Leaves are numbered left to right; ``acc["span"]`` gets, per internal node, the numbers
    ``[first, stop)`` of the leaves of its left subtree (relative to the tree).
    """
    first_leaf = len(acc["leaf_value"])
    stack: list[tuple[dict[str, Any], int, str]] = [(structure, -1, "root")]
    while stack:
        node, parent, side = stack.pop()
        if side == "right":  # the leaves numbered so far are exactly those left of this child
            acc["span"][parent][1] = len(acc["leaf_value"]) - first_leaf
        if "leaf_value" in node:
            if node.get("leaf_coeff") or "leaf_const" in node:
                raise ModelError("the model has linear trees", where=f"LightGBM model, tree {tree}",
                                 fix=_RETRAIN)
            code = ~len(acc["leaf_value"])
            acc["leaf_value"].append(float(node["leaf_value"]))
        else:
            _check_split(node, tree, names)
            code = len(acc["feature"])
            acc["feature"].append(int(node["split_feature"]))
            acc["threshold"].append(float(node["threshold"]))
            acc["child"].append([0, 0])
            acc["node_tree"].append(tree)
            acc["span"].append([len(acc["leaf_value"]) - first_leaf, 0])
            stack.append((node["right_child"], code, "right"))
            stack.append((node["left_child"], code, "left"))
        if side == "root":
            acc["root"].append(code)
        else:
            acc["child"][parent][side == "right"] = code
    return len(acc["leaf_value"]) - first_leaf


def _read_dump(dump: dict[str, Any]) -> _Forest:
    """Check a ``Booster.dump_model()`` dict and flatten it into a :class:`_Forest`."""
    n_out = int(dump["num_tree_per_iteration"])
    trees = dump["tree_info"]
    names = tuple(dump.get("feature_names") or ())
    if len(trees) % n_out:
        raise ModelError(f"{len(trees)} trees are not a whole number of iterations of {n_out}",
                         where="LightGBM model", fix="dump the model with whole iterations")
    acc: dict[str, list] = {k: [] for k in ("feature", "threshold", "child", "root",
                                            "leaf_value", "node_tree", "span")}
    leaf_ptr, max_leaves = [], 1
    for t, info in enumerate(trees):
        leaf_ptr.append(len(acc["leaf_value"]))
        max_leaves = max(max_leaves, _read_tree(info["tree_structure"], t, names, acc))
    i32 = np.int32
    return _Forest(
        n_features=int(dump["max_feature_idx"]) + 1, n_outputs=n_out, feature_names=names,
        objective=str(dump.get("objective", "")),
        n_avg=len(trees) // n_out if dump.get("average_output") else 0, max_leaves=max_leaves,
        feature=np.array(acc["feature"], i32), threshold=np.array(acc["threshold"], np.float64),
        child=np.array(acc["child"], i32).reshape(-1, 2),
        root=np.array(acc["root"], i32), leaf_value=np.array(acc["leaf_value"], np.float64),
        leaf_ptr=np.array(leaf_ptr, np.int64), node_tree=np.array(acc["node_tree"], i32),
        span=np.array(acc["span"], np.int64).reshape(-1, 2))


# ---- kernel inputs ---------------------------------------------------------------------------
def _thresholds(t64: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Thresholds to compare inputs of ``dtype`` with.

    For float32 input each threshold is rounded *down* to float32: for every float32 ``x``,
    ``x > t`` holds exactly when ``x > round_down(t)``, so the float32 kernel stays exact.
    """
    if dtype == np.float64:
        return t64
    with np.errstate(over="ignore"):
        t32 = t64.astype(np.float32)
    down = t32.astype(np.float64) > t64
    t32[down] = np.nextafter(t32[down], np.float32(-np.inf))
    return t32


def _bitvector_model(forest: _Forest, dtype: np.dtype) -> tuple:
    """Inputs of :func:`_bitvector_rows`: nodes sorted by (tree block, feature, threshold)."""
    nf, n_trees = forest.n_features, forest.n_trees
    block = forest.node_tree.astype(np.int64) // _TREE_BLOCK
    n_blocks = -(-n_trees // _TREE_BLOCK)
    order = np.lexsort((forest.threshold, forest.feature, block))
    key = block[order] * nf + forest.feature[order]
    fptr = np.searchsorted(key, np.arange(n_blocks * nf + 1)).astype(np.int64)
    first, stop = forest.span[order].T.astype(np.uint64)
    left_bits = ((np.uint64(1) << (stop - first)) - np.uint64(1)) << first
    mask_dtype = np.uint32 if forest.max_leaves <= 32 else np.uint64
    tree_ptr = np.minimum(np.arange(n_blocks + 1) * _TREE_BLOCK, n_trees).astype(np.int64)
    return (fptr, _thresholds(forest.threshold[order], dtype),
            (forest.node_tree[order] - block[order] * _TREE_BLOCK).astype(np.int32),
            (~left_bits).astype(mask_dtype), mask_dtype(np.iinfo(mask_dtype).max), tree_ptr,
            forest.leaf_ptr, forest.leaf_value, _tree_class(forest))


def _walk_model(forest: _Forest, dtype: np.dtype) -> tuple:
    """Inputs of :func:`_walk_rows`."""
    return (forest.feature, _thresholds(forest.threshold, dtype), forest.child.ravel(), forest.root,
            forest.leaf_value, _tree_class(forest))


def _tree_class(forest: _Forest) -> np.ndarray:
    """Raw-score column of each tree: tree ``t`` belongs to class ``t % num_tree_per_iteration``."""
    return (np.arange(forest.n_trees) % forest.n_outputs).astype(np.int32)


def _index_rule(forest: _Forest) -> tuple[int, float]:
    """How class indices follow from raw scores: (kind, sigmoid) from the objective string."""
    name, *options = forest.objective.split() or [""]
    sigmoid = 1.0
    for option in options:
        key, _, value = option.partition(":")
        sigmoid = float(value) if key == "sigmoid" else sigmoid
    if forest.n_outputs == 1:
        return (_BINARY, sigmoid) if name == "binary" else (-1, sigmoid)
    return {"multiclass": _SOFTMAX, "softmax": _SOFTMAX, "multiclassova": _SIGMOID,
            "ova": _SIGMOID}.get(name, _RAW), sigmoid


_KERNELS = {("bitvector", False): _bitvector_serial, ("bitvector", True): _bitvector_parallel,
            ("walk", False): _walk_serial, ("walk", True): _walk_parallel}
_GENERIC_NAME = re.compile(r"Column_\d+")


# ---- public API ------------------------------------------------------------------------------
class FastPredictor:
    """Exact, fast scoring of a LightGBM model (see the module docstring for the semantics).

    Build it with :meth:`from_booster` or :meth:`from_model_file`. ``method`` picks the kernel:
    ``"auto"`` uses ``"bitvector"`` when every tree has at most 64 leaves, else ``"walk"``.
    The first call for an input dtype compiles (or loads from numba's cache) its kernel; call
    :meth:`warm_up` to do that up front. ``n_classes`` is the number of class indices
    (2 for a binary model); ``n_outputs`` the number of raw score columns.
    """

    def __init__(self, forest: _Forest, *, method: Method = "auto") -> None:
        small = forest.max_leaves <= _MAX_BITVECTOR_LEAVES
        if method not in METHODS or (method == "bitvector" and not small):
            raise ModelError(f"method '{method}' cannot score this model (bitvector: trees of up "
                             f"to {_MAX_BITVECTOR_LEAVES} leaves; it has {forest.max_leaves})",
                             where="FastPredictor", fix="use method 'auto' or 'walk'")
        if method == "auto":
            method = "bitvector" if small else "walk"
        self._forest = forest
        self._rule = _index_rule(forest)
        self._models: dict[tuple[str, str], tuple] = {}
        self.method: str = method
        self.n_features: int = forest.n_features  # columns of X
        self.n_outputs: int = forest.n_outputs  # raw score columns (num_tree_per_iteration)
        self.n_classes: int = 2 if self._rule[0] == _BINARY else forest.n_outputs
        self.n_trees: int = forest.n_trees
        self.feature_names: tuple[str, ...] = forest.feature_names  # "Column_i" if unnamed

    # -- construction
    @classmethod
    def from_booster(cls, booster: lgb.Booster | lgb.LGBMModel, *, method: Method = "auto") -> FastPredictor:
        """From a ``lightgbm.Booster`` (or an ``LGBMModel``, through its ``booster_``).

        Uses the same iterations as ``booster.predict``: the best iteration if there is one.
        """
        return cls(_read_dump(getattr(booster, "booster_", booster).dump_model()), method=method)

    @classmethod
    def from_model_file(cls, path: str | Path, *, method: Method = "auto") -> FastPredictor:
        """From a LightGBM text model file (``Booster.save_model``)."""
        import lightgbm

        if not Path(path).is_file():
            raise ModelError("the model file does not exist", where=str(path),
                             fix="check the path, or save the model with Booster.save_model")
        return cls.from_booster(lightgbm.Booster(model_file=str(path)), method=method)

    # -- prediction
    def warm_up(self, dtypes: Sequence[Any] = (np.float32,), *, parallel: bool = True) -> None:
        """Compile (or load from numba's cache) the kernels for these input dtypes."""
        for dtype in dtypes:
            self.predict_index(np.zeros((3, self.n_features), dtype), parallel=parallel)

    def raw_scores(self, X: np.ndarray, *, check_finite: bool = True,
                   parallel: bool = True) -> np.ndarray:
        """Raw scores ``(n, n_outputs)`` float64, equal to ``booster.predict(X, raw_score=True)``.

        ``X`` is ``(n, n_features)`` in model feature order. ``check_finite`` raises
        :class:`ModelError` on NaN; with ``False`` NaN is scored as 0, like LightGBM.
        ``parallel=False`` runs single-threaded without the GIL (for use inside Dask tasks).
        """
        X = self._matrix(X, check_finite)
        out = np.empty((X.shape[0], self.n_outputs), np.float64)
        if X.shape[0]:
            key = (self.method, X.dtype.name)
            if key not in self._models:
                build = _bitvector_model if self.method == "bitvector" else _walk_model
                self._models[key] = build(self._forest, X.dtype)
            _KERNELS[self.method, parallel](X, self._models[key], _GROUP, out)
        return out

    def predict_index(self, X: np.ndarray, *, check_finite: bool = True,
                      parallel: bool = True) -> np.ndarray:
        """Class index per row (int64), equal to ``argmax(booster.predict(X), axis=1)``.

        Binary models give 1 where the probability ``p > 1 - p``, as ``LGBMClassifier``.
        """
        kind, sigmoid = self._rule
        if kind < 0:
            raise ModelError(f"a '{self._forest.objective}' model has no classes",
                             where="FastPredictor.predict_index",
                             fix="use raw_scores for regression models")
        raw = self.raw_scores(X, check_finite=check_finite, parallel=parallel)
        out = np.empty(raw.shape[0], np.int64)
        _class_index(raw, kind, sigmoid, self._forest.n_avg, out)
        return out

    def predict_labels(self, X: np.ndarray, class_values: Sequence[Any], *,
                       check_finite: bool = True, parallel: bool = True) -> np.ndarray:
        """Class codes per row: ``class_values[predict_index(X)]``.

        ``class_values[k]`` is the code of score column ``k`` (``LGBMClassifier.classes_``).
        """
        values = self._class_values(class_values)
        return values[self.predict_index(X, check_finite=check_finite, parallel=parallel)]

    def predict_map(self, features: xr.DataArray, feature_names: Sequence[str] | None,
                    class_values: Sequence[int], *, nodata: int = 0) -> xr.DataArray:
        """Classify a feature image ``(band, y, x)`` into a uint8 ``(y, x)`` label map.

        Bands are selected by ``feature_names`` in model order (``None``: the model's own
        names). Dask input stays lazy and is scored chunk by chunk (all bands in one chunk,
        single-threaded kernels, Dask supplies the parallelism). Pixels where any feature is NaN
        (no valid composite) get ``nodata``.
        """
        names = list(self.feature_names if feature_names is None else feature_names)
        cube = self._select_bands(features, names)
        lut = self._uint8_codes(self._class_values(class_values), nodata)
        data = cube.data
        if isinstance(data, da.Array):
            data = data.rechunk({0: -1})
            out = data.map_blocks(self._label_block, lut, nodata, False, drop_axis=0,
                                  dtype=np.uint8, meta=np.empty((0, 0), np.uint8))
        else:
            out = self._label_block(np.asarray(data), lut, nodata, True)
        coords = {k: c for k, c in cube.coords.items() if "band" not in c.dims}
        return xr.DataArray(out, dims=("y", "x"), coords=coords, name="label",
                            attrs={"nodata": nodata})

    # -- helpers
    def _matrix(self, X: Any, check_finite: bool) -> np.ndarray:
        """``X`` as a C-contiguous float32/float64 matrix (other dtypes -> float32, as LightGBM)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(f"the feature matrix has shape {X.shape}, the model expects "
                             f"(n, {self.n_features})", where="FastPredictor input",
                             fix="pass one column per model feature, in model order")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float32)
        X = np.ascontiguousarray(X)
        if check_finite:
            bad = np.isnan(X)
            if bad.any():
                row, col = np.argwhere(bad)[0]
                name = self.feature_names[col] if col < len(self.feature_names) else col
                raise ModelError(
                    f"the feature matrix has {int(bad.sum())} NaN values (first at row {row}, "
                    f"feature '{name}')", where="FastPredictor input",
                    fix="leave out or mask pixels without a valid composite (predict_map writes "
                        "nodata there); check_finite=False scores NaN as 0 like LightGBM, but "
                        "lcgee trains without NaN so that Earth Engine can reproduce the model")
        return X

    def _class_values(self, class_values: Sequence[Any]) -> np.ndarray:
        values = np.asarray(class_values)
        if values.ndim != 1 or values.size != self.n_classes:
            raise ModelError(f"{values.size} class values for a model with {self.n_classes} "
                             "classes", where="class_values",
                             fix="pass one code per score column (LGBMClassifier.classes_)")
        return values

    @staticmethod
    def _uint8_codes(values: np.ndarray, nodata: int) -> np.ndarray:
        codes = np.append(values, nodata)
        if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() > 255:
            raise ModelError(f"class values {values.tolist()} and nodata {nodata} must be "
                             "integers 0-255 for a uint8 map", where="predict_map",
                             fix="map classes to codes 0-255 (WorldCover style)")
        if nodata in values:
            raise ModelError(f"nodata {nodata} is also a class value", where="predict_map",
                             fix="choose a nodata code that is not a class (lcgee uses 0)")
        return values.astype(np.uint8)

    def _select_bands(self, features: xr.DataArray, names: list[str]) -> xr.DataArray:
        """The feature bands in model order, dims ``(band, y, x)``."""
        if set(features.dims) != {"band", "y", "x"}:
            raise ModelError(f"the feature image has dims {features.dims}",
                             where="predict_map", fix="pass a DataArray with dims (band, y, x)")
        bands = [str(b) for b in features["band"].values]
        missing = [n for n in names if n not in bands]
        if missing:
            raise ModelError(f"the feature image lacks the model features {missing}",
                             where=f"predict_map, band coordinate {bands}",
                             fix="compute these features (same names as in training) first")
        model_names = list(self.feature_names)
        named = model_names and not all(_GENERIC_NAME.fullmatch(n) for n in model_names)
        if len(names) != self.n_features or (named and names != model_names):
            raise ModelError(f"feature names {names} do not match the model's {model_names}",
                             where="predict_map",
                             fix="pass the model's features in training order")
        return features.sel(band=names).transpose("band", "y", "x")

    def _label_block(self, block: np.ndarray, lut: np.ndarray, nodata: int,
                     parallel: bool) -> np.ndarray:
        """One chunk ``(band, y, x)`` -> labels ``(y, x)``; NaN pixels get ``nodata``."""
        n_band, ny, nx = block.shape
        dtype = block.dtype if block.dtype in (np.float32, np.float64) else np.float32
        X = np.empty((ny * nx, n_band), dtype)
        X[:] = block.reshape(n_band, ny * nx).T
        invalid = np.isnan(X).any(axis=1)
        X[invalid] = 0
        labels = lut[self.predict_index(X, check_finite=False, parallel=parallel)]
        labels[invalid] = nodata
        return labels.reshape(ny, nx)
