"""LightGBM model -> Earth Engine decision-tree strings that reproduce LightGBM's labels exactly.

Earth Engine's ``ee.Classifier.decisionTree`` / ``decisionTreeEnsemble`` read trees in the
rpart-like text format. This module writes that format from ``Booster.dump_model()``:

* one node per line, pre-order, no indentation, lines joined with ``"\\n"`` (no trailing
  newline)::

      1) root 1 0 0
      2) B04 <= 0.0123 1 0 0
      4) NDVI <= 0.31 1 0 -0.0420147 *
      5) NDVI > 0.31 1 0 0.1083 *
      3) B04 > 0.0123 1 0 0.2711 *

* line ``k`` is ``id) split n loss yval`` with a trailing `` *`` on leaves. Line 1 is
  ``1) root 1 0 0``; the children of node ``k`` are ``2k`` (condition
  ``feature <= threshold``, one space each side of the operator, as the known-working
  exporter geemap writes it) and ``2k+1`` (``feature > threshold``), which matches LightGBM
  (left when ``x <= threshold``) and Earth Engine's tree engine (first child when ``x <= t``).
* ``n`` and ``loss`` are the placeholders ``1 0``; internal nodes carry the placeholder yval
  ``0`` (only leaf values are used for prediction). Thresholds and leaf values are written at
  full double precision (:func:`format_number`: Python ``repr``, fixed notation when ``repr``
  would use an exponent; ``float()`` of the text always gives the double back).
* a single-leaf tree (stump) becomes one dummy split on the first feature at ``0.0`` whose two
  leaves both hold the stump value.
* LightGBM reads every ``|x| <= 1e-35`` (its ``kZeroThreshold``, a float32) as exactly 0 when
  predicting, while Earth Engine compares the raw value. Thresholds in ``[-1e-35, 1e-35)`` (LightGBM
  writes ``-1e-35`` to split negatives from zero) are moved by :func:`ee_threshold` so that the
  raw comparison sends every finite ``x`` where LightGBM does.

Trees are grouped per class (tree ``t`` belongs to class ``t % num_tree_per_iteration``). In
``RAW_REGRESSION`` mode, the Earth Engine side sums each class's trees, stacks the class scores,
takes the argmax and maps it to :attr:`EEClassifierSpec.class_values`. A binary model becomes
two classes: class 0 is one constant-zero tree, class 1 the model's trees (argmax of
``[0, score]`` is LightGBM's ``score > 0`` rule).

Models Earth Engine cannot reproduce are refused with :class:`~lcgee.errors.ModelError`:
categorical splits, nodes with a ``NaN`` or ``Zero`` missing type, trees deeper than 30 levels
(node ids past ``2**31 - 1``), linear trees, random-forest averaging and non-classification
objectives. No Earth Engine import happens here: this module is pure Python.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lcgee.errors import ModelError

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = [
    "EEClassifierSpec",
    "booster_to_ee_trees",
    "dump_to_ee_trees",
    "tree_to_string",
    "format_number",
    "ee_threshold",
    "validate_feature_names",
    "OUTPUT_MODES",
    "MAX_NODE_ID",
    "PLACEHOLDER_N_LOSS",
    "LGBM_ZERO",
]

#: Output modes the spec may ask Earth Engine for (RAW_REGRESSION sums, as documented;
#: REGRESSION is a fallback assuming the ensemble averages its trees, which is UNDOCUMENTED).
OUTPUT_MODES = ("RAW_REGRESSION", "REGRESSION")
#: Largest node id written (node ids double per level: depth 30 is the deepest that fits).
MAX_NODE_ID = 2**31 - 1
#: The ``n loss`` columns of every line (unused by prediction).
PLACEHOLDER_N_LOSS = "1 0"
#: LightGBM's ``kZeroThreshold`` (``1e-35f``): at prediction ``|x| <= LGBM_ZERO`` is read as 0.
LGBM_ZERO = 1.0000000180025095e-35

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_NAMES = frozenset({"root"})
_CLASSIFICATION_OBJECTIVES = ("multiclass", "multiclassova", "binary")
_RETRAIN_MISSING = ("retrain with use_missing=False (or keep the default use_missing=True but "
                    "make sure the training data has no NaN) and zero_as_missing=False")


# ----------------------------------------------------------------------------- the spec


@dataclass
class EEClassifierSpec:
    """Everything Earth Engine needs to rebuild the classifier, as plain JSON-able data."""

    feature_names: list[str]  #: band names, in LightGBM feature order
    class_values: list[int]  #: class code of LightGBM class index k
    output_mode: str = "RAW_REGRESSION"  #: one of :data:`OUTPUT_MODES`
    trees: list[list[str]] = field(default_factory=list)  #: per class, its tree strings

    def __post_init__(self) -> None:
        self.feature_names = [str(n) for n in self.feature_names]
        self.class_values = [_as_int(v, "class_values") for v in self.class_values]
        if not all(isinstance(c, list | tuple) and all(isinstance(t, str) for t in c)
                   for c in self.trees):
            raise ModelError("trees must be one list of tree strings per class",
                             where="EEClassifierSpec", fix="pass trees=[[str, ...], ...]")
        self.trees = [list(per_class) for per_class in self.trees]
        if self.output_mode not in OUTPUT_MODES:
            raise ModelError(f"unknown output_mode {self.output_mode!r}", where="EEClassifierSpec",
                             fix=f"use one of {list(OUTPUT_MODES)}")
        if len(self.trees) != len(self.class_values):
            raise ModelError(f"{len(self.trees)} tree lists for {len(self.class_values)} classes",
                             where="EEClassifierSpec", fix="give one list of trees per class")
        if len(set(self.class_values)) != len(self.class_values):
            raise ModelError(f"class_values {self.class_values} repeat a value",
                             where="EEClassifierSpec", fix="give each class its own code")
        empty = [k for k, per_class in enumerate(self.trees) if not per_class]
        if empty:
            raise ModelError(f"classes {empty} have no trees", where="EEClassifierSpec",
                             fix="export a model trained for at least one iteration")
        validate_feature_names(self.feature_names)

    @property
    def n_trees(self) -> int:
        """Total number of tree strings over all classes."""
        return sum(len(per_class) for per_class in self.trees)

    def to_dict(self) -> dict[str, Any]:
        """The spec as ``{"feature_names", "class_values", "output_mode", "trees"}``."""
        return {"feature_names": list(self.feature_names), "class_values": list(self.class_values),
                "output_mode": self.output_mode, "trees": [list(t) for t in self.trees]}

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict` (what travels to Earth Engine or to disk)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> EEClassifierSpec:
        """Read a spec written by :meth:`to_json`; refuses missing or unknown keys."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"not valid JSON ({exc})", where="EEClassifierSpec.from_json",
                             fix="pass the text written by EEClassifierSpec.to_json") from exc
        keys = {"feature_names", "class_values", "output_mode", "trees"}
        if not isinstance(data, dict) or set(data) != keys:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ModelError(f"expected exactly the keys {sorted(keys)}, got {got}",
                             where="EEClassifierSpec.from_json",
                             fix="pass the text written by EEClassifierSpec.to_json")
        return cls(**data)

    def payload_bytes(self) -> int:
        """Size in bytes of :meth:`to_json` (Earth Engine refuses requests over 10 MB)."""
        return len(self.to_json().encode("utf-8"))


# ----------------------------------------------------------------------------- formatting


def format_number(x: float) -> str:
    """Shortest text that ``float()`` reads back as exactly ``x``, without an exponent.

    Python's ``repr`` gives the shortest round-tripping digits; when it uses scientific notation
    (``1e-35``) the same digits are written in fixed notation instead (``0.000...01``), which is
    still exact. Zero is written ``0.0``. Non-finite values raise ``ValueError``.
    """
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{x!r} cannot be written in a tree string")
    if x == 0.0:
        return "0.0"
    text = repr(x)
    if "e" in text or "E" in text:
        fixed = format(Decimal(text), "f")
        if "." not in fixed:
            fixed += ".0"
        if float(fixed) == x:
            text = fixed
    return text


def ee_threshold(threshold: float) -> float:
    """Threshold for a raw ``x <= t`` test that agrees with LightGBM's prediction for every x.

    LightGBM goes left when ``x' <= t`` with ``x' = 0`` if ``|x| <= LGBM_ZERO`` else ``x``. For
    ``t`` in ``[-LGBM_ZERO, 0)`` the left set is ``x < -LGBM_ZERO`` (threshold: the double just
    below ``-LGBM_ZERO``); for ``t`` in ``[0, LGBM_ZERO)`` it is ``x <= LGBM_ZERO``. Any other
    threshold is returned unchanged.
    """
    threshold = float(threshold)
    if -LGBM_ZERO <= threshold < 0.0:
        return math.nextafter(-LGBM_ZERO, -math.inf)
    if 0.0 <= threshold < LGBM_ZERO:
        return LGBM_ZERO
    return threshold


def validate_feature_names(names: Sequence[str]) -> list[str]:
    """Check that ``names`` can be Earth Engine band names inside tree strings; return them.

    Allowed: letters, digits and underscores, not starting with a digit, not ``root``, no
    repeats. Raises :class:`ModelError` naming every bad name.
    """
    names = [str(n) for n in names]
    bad = [n for n in names if not _NAME_RE.match(n) or n in _RESERVED_NAMES]
    if bad:
        raise ModelError(
            f"feature names {bad} cannot be used in Earth Engine tree strings (allowed: letters, "
            "digits and underscores, not starting with a digit, not 'root')",
            where="feature_names",
            fix="rename the features (e.g. 'B8.A' -> 'B8A', 'my band' -> 'my_band') and retrain, "
                "or pass feature_names= with valid names in the same order and rename the image "
                "bands to match")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ModelError(f"feature names {repeated} appear more than once", where="feature_names",
                         fix="give every feature its own name")
    return names


# ----------------------------------------------------------------------------- one tree


def _line(node_id: int, split: str, yval: str, leaf: bool) -> str:
    return f"{node_id}) {split} {PLACEHOLDER_N_LOSS} {yval}{' *' if leaf else ''}"


def _leaf_value(node: Mapping[str, Any], where: str) -> str:
    if "leaf_coeff" in node or "leaf_const" in node:
        raise ModelError("linear-tree leaves cannot be written as constant leaves", where=where,
                         fix="retrain with linear_tree=False")
    try:
        return format_number(node["leaf_value"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"leaf has no finite leaf_value ({exc})", where=where,
                         fix="export a model trained by LightGBM without errors") from exc


def _check_split(node: Mapping[str, Any], n_features: int, where: str) -> tuple[int, str]:
    """Validate one internal node; return its feature index and threshold text."""
    decision = node.get("decision_type")
    if decision == "==":
        raise ModelError("the model has a categorical split, which Earth Engine's tree strings "
                         "cannot express", where=where,
                         fix="retrain without categorical features (categorical_feature=[] and "
                             "no pandas 'category' columns), e.g. one-hot encode them")
    if decision != "<=":
        raise ModelError(f"unknown decision_type {decision!r}", where=where,
                         fix="retrain with numerical features only")
    missing = node.get("missing_type", "None")
    if missing != "None":
        raise ModelError(f"the split treats {missing} as missing (sent to the "
                         f"{'left' if node.get('default_left') else 'right'} child by default); "
                         "Earth Engine has no default direction, so lcgee refuses every NaN/Zero "
                         "missing type", where=where, fix=_RETRAIN_MISSING)
    feature = node.get("split_feature")
    if not isinstance(feature, int) or not 0 <= feature < n_features:
        raise ModelError(f"split_feature {feature!r} is not a feature index below {n_features}",
                         where=where, fix="pass the dump of the same model")
    try:
        return feature, format_number(ee_threshold(node["threshold"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"split has no finite threshold ({exc})", where=where,
                         fix="retrain; LightGBM should never write such a split") from exc


def _stump_lines(structure: Mapping[str, Any], names: Sequence[str], where: str) -> list[str]:
    value = _leaf_value(structure, where)
    return [_line(1, "root", "0", False),
            _line(2, f"{names[0]} <= 0.0", value, True),
            _line(3, f"{names[0]} > 0.0", value, True)]


def _is_split(node: Mapping[str, Any]) -> bool:
    return "left_child" in node or "right_child" in node


def tree_to_string(structure: Mapping[str, Any], feature_names: Sequence[str], *,
                   where: str = "tree", max_node_id: int = MAX_NODE_ID) -> str:
    """One LightGBM ``tree_structure`` dict -> one Earth Engine tree string (see module doc).

    Walks the tree iteratively in pre-order, so deep hand-made trees do not hit Python's
    recursion limit; refuses node ids above ``max_node_id``.
    """
    if not isinstance(structure, Mapping):
        raise ModelError("tree_structure is not a dict", where=where,
                         fix="pass booster.dump_model()")
    if not _is_split(structure):
        return "\n".join(_stump_lines(structure, feature_names, where))
    lines = [_line(1, "root", "0", False)]
    stack: list[tuple[Mapping[str, Any], int, str]] = []
    _push_children(stack, structure, 1, feature_names, where)
    while stack:
        node, node_id, split = stack.pop()
        if node_id > max_node_id:
            raise ModelError(
                f"the tree is deeper than {max_node_id.bit_length() - 1} levels (node id "
                f"{node_id} > {max_node_id}), past what Earth Engine's node numbering holds",
                where=where, fix=f"retrain with max_depth <= {max_node_id.bit_length() - 1} "
                                 "(num_leaves <= 31 also guarantees it)")
        if not isinstance(node, Mapping):
            raise ModelError("a child is not a dict", where=where, fix="pass booster.dump_model()")
        if _is_split(node):
            lines.append(_line(node_id, split, "0", False))
            _push_children(stack, node, node_id, feature_names, where)
        else:
            lines.append(_line(node_id, split, _leaf_value(node, f"{where}, node {node_id}"), True))
    return "\n".join(lines)


def _push_children(stack: list[tuple[Mapping[str, Any], int, str]], node: Mapping[str, Any],
                   node_id: int, names: Sequence[str], where: str) -> None:
    """Push the right child then the left one, so the left subtree is written first."""
    node_where = f"{where}, node {node_id} (split_index {node.get('split_index')})"
    feature, threshold = _check_split(node, len(names), node_where)
    if "left_child" not in node or "right_child" not in node:
        raise ModelError("split without two children", where=node_where,
                         fix="pass booster.dump_model()")
    name = names[feature]
    stack.append((node["right_child"], 2 * node_id + 1, f"{name} > {threshold}"))
    stack.append((node["left_child"], 2 * node_id, f"{name} <= {threshold}"))


# ----------------------------------------------------------------------------- whole model


def _objective_kind(dump: Mapping[str, Any]) -> str:
    objective = str(dump.get("objective", "")).split(" ")[0]
    if objective not in _CLASSIFICATION_OBJECTIVES:
        raise ModelError(f"objective {objective or '(none)'!r} is not a classification objective",
                         where="LightGBM model",
                         fix="train with objective='multiclass' (or 'multiclassova' / 'binary')")
    if dump.get("average_output"):
        raise ModelError("the model averages its trees (boosting='rf'); Earth Engine's summed "
                         "scores would not match", where="LightGBM model",
                         fix="retrain with boosting='gbdt'")
    return objective


def _default_classes(n_classes: int, class_values: Iterable[Any] | None) -> list[int]:
    if class_values is None:
        return list(range(n_classes))
    values = [_as_int(v, "class_values") for v in class_values]
    if len(values) != n_classes:
        raise ModelError(f"{len(values)} class_values for a model with {n_classes} classes",
                         where="class_values",
                         fix="give one class code per LightGBM class index, in index order")
    return values


def _as_int(value: Any, where: str) -> int:
    try:
        as_int = int(value)
        ok = as_int == value and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelError(f"class value {value!r} is not an integer", where=where,
                         fix="use integer class codes (e.g. WorldCover 10, 20, ...) or pass "
                             "class_values=[...] in LightGBM class-index order")
    return as_int


def _zero_tree(names: Sequence[str]) -> str:
    return "\n".join(_stump_lines({"leaf_value": 0.0}, names, "binary class 0"))


def dump_to_ee_trees(dump: Mapping[str, Any], *, feature_names: Sequence[str] | None = None,
                     class_values: Iterable[Any] | None = None,
                     output_mode: str = "RAW_REGRESSION",
                     max_node_id: int = MAX_NODE_ID) -> EEClassifierSpec:
    """Convert a ``Booster.dump_model()`` dict into an :class:`EEClassifierSpec`.

    ``feature_names`` overrides the dump's names (same count, same order); ``class_values``
    maps LightGBM class index k to a class code (default ``0..K-1``).
    """
    kind = _objective_kind(dump)
    names = list(dump.get("feature_names") or []) if feature_names is None else list(feature_names)
    n_model = int(dump.get("max_feature_idx", len(names) - 1)) + 1
    if len(names) != n_model:
        raise ModelError(f"{len(names)} feature names for a model with {n_model} features",
                         where="feature_names", fix="pass one name per training feature, in order")
    validate_feature_names(names)
    per_iter = int(dump.get("num_tree_per_iteration", 1))
    tree_info = list(dump.get("tree_info") or [])
    if not tree_info:
        raise ModelError("the model has no trees", where="LightGBM model",
                         fix="train for at least one iteration")
    if per_iter < 1 or len(tree_info) % per_iter:
        raise ModelError(f"{len(tree_info)} trees do not divide into {per_iter} per iteration",
                         where="LightGBM model", fix="pass the dump of a complete model")
    trees: list[list[str]] = [[] for _ in range(per_iter)]
    for t, info in enumerate(tree_info):
        where = f"LightGBM tree {t} (class {t % per_iter})"
        if info.get("num_cat", 0):
            raise ModelError("the tree has categorical splits, which Earth Engine's tree strings "
                             "cannot express", where=where,
                             fix="retrain without categorical features (categorical_feature=[])")
        trees[t % per_iter].append(tree_to_string(info.get("tree_structure"), names, where=where,
                                                  max_node_id=max_node_id))
    if kind == "binary" and per_iter == 1:
        trees.insert(0, [_zero_tree(names)])
    return EEClassifierSpec(feature_names=names,
                            class_values=_default_classes(len(trees), class_values),
                            output_mode=output_mode, trees=trees)


def booster_to_ee_trees(booster: lgb.Booster | lgb.LGBMModel, *, feature_names: Sequence[str] | None = None,
                        class_values: Iterable[Any] | None = None,
                        output_mode: str = "RAW_REGRESSION",
                        num_iteration: int | None = None) -> EEClassifierSpec:
    """Convert a trained ``lightgbm.Booster`` (or fitted ``LGBMClassifier``) into tree strings.

    ``num_iteration`` is passed to ``dump_model`` (default: the best iteration if early
    stopping recorded one, else all — the same trees ``booster.predict`` uses). For an
    ``LGBMClassifier`` the default ``class_values`` are its ``classes_``. A user-supplied
    ``init_score`` is not part of the model and is not exported.
    """
    classes = None
    if hasattr(booster, "booster_") and not hasattr(booster, "dump_model"):
        classes = getattr(booster, "classes_", None)
        booster = booster.booster_
    if not hasattr(booster, "dump_model"):
        raise ModelError(f"{type(booster).__name__} is not a LightGBM Booster",
                         where="booster_to_ee_trees", fix="pass lightgbm.Booster or LGBMClassifier")
    if class_values is None and classes is not None:
        class_values = list(classes)
    dump = booster.dump_model(num_iteration=num_iteration)
    return dump_to_ee_trees(dump, feature_names=feature_names, class_values=class_values,
                            output_mode=output_mode)
