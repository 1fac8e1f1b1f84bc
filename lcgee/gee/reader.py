"""An independent reader of Earth Engine decision-tree strings, to verify exported models.

Written from the text format alone (not from LightGBM's dump), it parses each line
``id) feature<=threshold n loss yval [(yprob)] [*]`` (``1) root n loss yval`` on the root) and
evaluates a feature matrix the way Earth Engine's SMILE-based tree engine does: start at node 1;
at an internal node ``k`` go to ``2k`` when the condition written on the ``2k`` line holds, else
to ``2k+1``; at a leaf (``*``) output its ``yval``.

Parsing is strict and names the offending line, like Earth Engine's "Error parsing line N":
malformed lines, non-numeric fields, repeated ids, a child before (or without) its parent,
children of a leaf, an internal node without both children, and sibling lines whose feature,
threshold or operators do not complement each other (``<=``/``>`` or ``<``/``>=``) are refused.
Only ``x <= t`` on the first child is what the note on Earth Engine documents; a first child
written with ``<`` is evaluated as written (lcgee's exporter only ever writes ``<=``/``>``).

Output modes: ``RAW_REGRESSION`` gives one value per tree (Earth Engine sums them with
``arrayReduce``); ``REGRESSION`` gives the mean over trees (the fallback, where the class score
is that mean times the number of trees).

Evaluation is vectorised per node: the rows reaching a node are split by one numpy comparison,
so the work is (rows x average leaf depth) per tree. NaN inputs are refused: LightGBM reads NaN
as 0 while Earth Engine masks the pixel, so no answer would be the right one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lcgee.errors import DataError, ModelError

if TYPE_CHECKING:
    from lcgee.gee.trees import EEClassifierSpec

__all__ = [
    "ParsedTree",
    "parse_tree",
    "evaluate_trees",
    "sum_trees",
    "class_scores",
    "classify",
]

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_LINE_RE = re.compile(
    rf"""^\s*(?P<id>\d+)\)\s+
    (?:(?P<root>root)|(?P<feat>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=|<|>)\s*(?P<thr>{_NUM}))
    \s+(?P<n>{_NUM})\s+(?P<loss>{_NUM})\s+(?P<yval>{_NUM})
    (?:\s+\((?P<yprob>[^()]*)\))?
    (?P<leaf>\s+\*)?\s*$""",
    re.VERBOSE,
)
_COMPLEMENT = {"<=": ">", ">": "<=", "<": ">=", ">=": "<"}
_COMPARE = {"<=": np.less_equal, "<": np.less, ">": np.greater, ">=": np.greater_equal}
_MODES = ("RAW_REGRESSION", "REGRESSION")


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based line number in the tree string
    node_id: int
    feature: str | None  # None on the root line
    op: str | None
    threshold: float
    yval: float
    leaf: bool


@dataclass(frozen=True)
class ParsedTree:
    """A parsed tree as flat per-node arrays; index 0 is the root, order is the file's."""

    node_ids: tuple[int, ...]
    leaf: np.ndarray  #: bool, node is a leaf
    value: np.ndarray  #: float64 leaf yval (0 on internal nodes)
    feature: tuple[str | None, ...]  #: internal node: feature tested to choose its child
    op: tuple[str | None, ...]  #: internal node: operator written on its first child's line
    threshold: np.ndarray  #: internal node: threshold written on its first child's line
    left: np.ndarray  #: internal node: index of child 2k
    right: np.ndarray  #: internal node: index of child 2k+1
    lines: tuple[int, ...]  #: line number of each node

    @property
    def features_used(self) -> set[str]:
        """Names of the features the tree tests."""
        return {f for f in self.feature if f is not None}


def _error(number: int, reason: str, where: str, text: str | None = None) -> ModelError:
    shown = f": {text.strip()!r}" if text is not None else ""
    return ModelError(f"Error parsing line {number}: {reason}{shown}", where=where,
                      fix="write one node per line as 'id) feature<=threshold n loss yval [*]', "
                          "root as '1) root n loss yval', children of k numbered 2k and 2k+1")


def _parse_line(number: int, text: str, where: str) -> _Line:
    match = _LINE_RE.match(text)
    if match is None:
        raise _error(number, "not a node line", where, text)
    root = match["root"] is not None
    return _Line(number=number, node_id=int(match["id"]), feature=None if root else match["feat"],
                 op=None if root else match["op"],
                 threshold=0.0 if root else float(match["thr"]),
                 yval=float(match["yval"]), leaf=match["leaf"] is not None)


def _read_lines(text: str, where: str) -> list[_Line]:
    """Parse every non-blank line and check ids, root placement and parent order."""
    nodes: list[_Line] = []
    seen: dict[int, _Line] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        line = _parse_line(number, raw, where)
        if not nodes and (line.node_id != 1 or line.feature is not None):
            raise _error(number, "the first node must be '1) root ...'", where, raw)
        if nodes and (line.node_id == 1 or line.feature is None):
            raise _error(number, "only the first line may be node 1 / root", where, raw)
        if line.node_id in seen:
            raise _error(number, f"node {line.node_id} repeated (first on line "
                                 f"{seen[line.node_id].number})", where, raw)
        parent = seen.get(line.node_id // 2)
        if nodes and parent is None:
            raise _error(number, f"node {line.node_id} comes before (or without) its parent "
                                 f"{line.node_id // 2}", where, raw)
        if parent is not None and parent.leaf:
            raise _error(number, f"node {line.node_id} is a child of leaf {parent.node_id} "
                                 f"(line {parent.number})", where, raw)
        seen[line.node_id] = line
        nodes.append(line)
    if not nodes:
        raise _error(1, "the tree string is empty", where)
    return nodes


def _check_pair(parent: _Line, first: _Line | None, second: _Line | None, where: str) -> None:
    if first is None or second is None:
        raise _error(parent.number, f"internal node {parent.node_id} (no '*') needs children "
                                    f"{2 * parent.node_id} and {2 * parent.node_id + 1}", where)
    if second.feature != first.feature or second.threshold != first.threshold:
        raise _error(second.number, f"node {second.node_id} tests {second.feature} at "
                                    f"{second.threshold!r} but its sibling (line {first.number}) "
                                    f"tests {first.feature} at {first.threshold!r}", where)
    if second.op != _COMPLEMENT[first.op or ""]:
        raise _error(second.number, f"operator {second.op} does not complement its sibling's "
                                    f"{first.op} (line {first.number})", where)


def parse_tree(text: str, *, where: str = "tree string") -> ParsedTree:
    """Parse one tree string; raises :class:`ModelError` naming the first bad line."""
    lines = _read_lines(text, where)
    by_id = {line.node_id: i for i, line in enumerate(lines)}
    n = len(lines)
    left = np.full(n, -1, dtype=np.int64)
    right = np.full(n, -1, dtype=np.int64)
    threshold = np.zeros(n, dtype=np.float64)
    feature: list[str | None] = [None] * n
    op: list[str | None] = [None] * n
    for i, line in enumerate(lines):
        if line.leaf:
            continue
        a, b = by_id.get(2 * line.node_id), by_id.get(2 * line.node_id + 1)
        _check_pair(line, None if a is None else lines[a], None if b is None else lines[b], where)
        left[i], right[i] = a, b
        feature[i], op[i], threshold[i] = lines[a].feature, lines[a].op, lines[a].threshold
    leaf = np.array([line.leaf for line in lines], dtype=bool)
    value = np.where(leaf, [line.yval for line in lines], 0.0)
    return ParsedTree(node_ids=tuple(line.node_id for line in lines), leaf=leaf, value=value,
                      feature=tuple(feature), op=tuple(op), threshold=threshold, left=left,
                      right=right, lines=tuple(line.number for line in lines))


# ----------------------------------------------------------------------------- evaluation


def _columns(X: np.ndarray, feature_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Validate ``X`` and return one contiguous float64 column per feature name."""
    X = np.asarray(X, dtype=np.float64)
    names = [str(n) for n in feature_names]
    if X.ndim != 2 or X.shape[1] != len(names):
        raise DataError(f"X has shape {X.shape}, expected (rows, {len(names)})", where="X",
                        fix="pass one column per feature name, in the same order")
    if np.isnan(X).any():
        raise DataError("X contains NaN: LightGBM reads NaN as 0 but Earth Engine masks the "
                        "pixel, so no tree output would be right", where="X",
                        fix="drop or fill rows with NaN before comparing")
    columns = np.ascontiguousarray(X.T)
    return {name: columns[j] for j, name in enumerate(names)}


def _as_parsed(tree: str | ParsedTree, index: int) -> ParsedTree:
    return tree if isinstance(tree, ParsedTree) else parse_tree(tree, where=f"tree {index}")


def _bind(tree: ParsedTree, columns: dict[str, np.ndarray], index: int) -> list[np.ndarray | None]:
    """Column of each internal node's feature; refuses features X does not have."""
    bound: list[np.ndarray | None] = []
    for i, name in enumerate(tree.feature):
        if name is not None and name not in columns:
            line = tree.lines[int(tree.left[i])]
            raise ModelError(f"line {line} tests feature {name!r}, which is not among the "
                             f"feature names {sorted(columns)}", where=f"tree {index}",
                             fix="pass the feature names the trees were written with")
        bound.append(None if name is None else columns[name])
    return bound


def _route(tree: ParsedTree, bound: list[np.ndarray | None], out: np.ndarray, add: bool) -> None:
    """Write (``add=False``) or add (``add=True``) each row's leaf value into ``out``."""
    stack: list[tuple[int, np.ndarray | None]] = [(0, None)]  # None: every row
    while stack:
        i, rows = stack.pop()
        if tree.leaf[i]:
            target = slice(None) if rows is None else rows
            if add:
                out[target] += tree.value[i]
            else:
                out[target] = tree.value[i]
            continue
        column = bound[i]
        values = column if rows is None else column.take(rows)
        goes_first = _COMPARE[tree.op[i]](values, tree.threshold[i])
        if rows is None:
            first, second = np.flatnonzero(goes_first), np.flatnonzero(~goes_first)
        else:  # np.compress is several times faster than boolean indexing here
            first, second = np.compress(goes_first, rows), np.compress(~goes_first, rows)
        if second.size:
            stack.append((int(tree.right[i]), second))
        if first.size:
            stack.append((int(tree.left[i]), first))


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ModelError(f"unknown mode {mode!r}", where="reader", fix=f"use one of {list(_MODES)}")
    return mode


def evaluate_trees(trees: Sequence[str | ParsedTree], X: np.ndarray, feature_names: Sequence[str],
                   *, mode: str = "RAW_REGRESSION") -> np.ndarray:
    """Evaluate trees on the rows of ``X`` (columns named by ``feature_names``).

    ``RAW_REGRESSION``: array (rows, trees), one column per tree. ``REGRESSION``: array (rows,)
    holding the mean over trees.
    """
    _check_mode(mode)
    if mode == "REGRESSION":
        return sum_trees(trees, X, feature_names) / len(trees)
    columns = _columns(X, feature_names)
    n_rows = np.asarray(X).shape[0]
    out = np.empty((len(trees), n_rows), dtype=np.float64)
    for t, tree in enumerate(trees):
        parsed = _as_parsed(tree, t)
        _route(parsed, _bind(parsed, columns, t), out[t], add=False)
    return out.T


def sum_trees(trees: Sequence[str | ParsedTree], X: np.ndarray,
              feature_names: Sequence[str]) -> np.ndarray:
    """Sum of the trees' outputs per row, in tree order (memory: one float per row)."""
    if not trees:
        raise ModelError("no trees to evaluate", where="reader", fix="pass at least one tree")
    columns = _columns(X, feature_names)
    n_rows = np.asarray(X).shape[0]
    total = np.zeros(n_rows, dtype=np.float64)
    for t, tree in enumerate(trees):
        parsed = _as_parsed(tree, t)
        _route(parsed, _bind(parsed, columns, t), total, add=True)
    return total


def class_scores(spec: EEClassifierSpec, X: np.ndarray, *, mode: str | None = None) -> np.ndarray:
    """Score of each class per row, array (rows, classes), as Earth Engine would rebuild it.

    ``RAW_REGRESSION``: the sum of the class's tree outputs (LightGBM's raw score).
    ``REGRESSION``: the mean over the class's trees times their number (the fallback).
    ``mode`` defaults to ``spec.output_mode``.
    """
    mode = _check_mode(mode or spec.output_mode)
    scores = []
    for per_class in spec.trees:
        if mode == "REGRESSION":
            mean = evaluate_trees(per_class, X, spec.feature_names, mode="REGRESSION")
            scores.append(mean * len(per_class))
        else:
            scores.append(sum_trees(per_class, X, spec.feature_names))
    return np.stack(scores, axis=1)


def classify(spec: EEClassifierSpec, X: np.ndarray, *, mode: str | None = None) -> np.ndarray:
    """Class code per row: argmax of :func:`class_scores` mapped to ``spec.class_values``."""
    scores = class_scores(spec, X, mode=mode)
    return np.asarray(spec.class_values, dtype=np.int64)[np.argmax(scores, axis=1)]
