"""Spectral indices, each defined once as a small arithmetic expression over band names.

An index is a string such as ``"(B08 - B04) / (B08 + B04)"`` in a tiny language: numbers,
band names, ``+ - * /``, unary minus and parentheses, nothing else. It is parsed once with
Python's :mod:`ast` into an immutable tree (:class:`Const`, :class:`Band`, :class:`BinOp`,
:class:`Neg`) and evaluated through an :class:`ExprOps` object: the default one works on
numpy, xarray and Dask arrays; :mod:`lcgee.gee` supplies one that builds ``ee.Image``
operations, so local features and Earth Engine features come from the same definition.

Band names follow Planetary Computer's Sentinel-2 naming (``B02``, ``B08``, ``B11`` ...);
bands are surface reflectance on a 0-1 scale (DN / 10000, harmonized). Indices with additive
constants (SAVI's L = 0.5, EVI's 1, 6, 7.5) are only correct on that scale.

Division by zero gives NaN with the default operations (never inf, never an exception).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import xarray as xr

from lcgee.errors import DataError, ParamsError

__all__ = [
    "INDICES",
    "ArrayOps",
    "Band",
    "BinOp",
    "Const",
    "ExprOps",
    "Index",
    "Neg",
    "Node",
    "compute_indices",
    "evaluate",
    "feature_names",
    "get_index",
    "parse",
    "walk",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# ---- the expression tree -------------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    """A number."""

    value: float


@dataclass(frozen=True)
class Band:
    """A band, by name."""

    name: str


@dataclass(frozen=True)
class BinOp:
    """``left op right`` with ``op`` one of ``+ - * /``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    operand: Node


Node = Const | Band | BinOp | Neg

_BINOPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def parse(expression: str, *, name: str = "<expression>") -> Node:
    """Parse an index expression; anything outside the language raises ParamsError.

    A minus sign in front of a number is folded into the number (``-0.5`` is ``Const(-0.5)``).
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        token = (exc.text or expression).strip()
        raise _bad(name, expression, f"it is not valid syntax near {token!r} ({exc.msg})") from exc
    return _convert(tree.body, expression, name)


def _convert(node: ast.AST, source: str, name: str) -> Node:
    if (isinstance(node, ast.Constant) and type(node.value) in (int, float)
            and math.isfinite(node.value)):
        return Const(float(node.value))
    if isinstance(node, ast.Name) and _NAME.match(node.id):
        return Band(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return BinOp(_BINOPS[type(node.op)], _convert(node.left, source, name),
                     _convert(node.right, source, name))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _convert(node.operand, source, name)
        return Const(-operand.value) if isinstance(operand, Const) else Neg(operand)
    raise _bad(name, source, f"{_token(node, source.strip())!r} is not allowed")


_OP_TOKENS: dict[type, str] = {
    ast.Pow: "**", ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<",
    ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.UAdd: "+",
    ast.Not: "not", ast.Invert: "~", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Eq: "==", ast.NotEq: "!=", ast.And: "and", ast.Or: "or",
}


def _token(node: ast.AST, source: str) -> str:
    """The offending token: an operator's symbol, else the node's source text."""
    op = getattr(node, "op", None) or (getattr(node, "ops", None) or [None])[0]
    if type(op) in _OP_TOKENS:
        return _OP_TOKENS[type(op)]
    return ast.get_source_segment(source, node) or type(node).__name__


def _bad(name: str, expression: str, why: str) -> ParamsError:
    return ParamsError(
        f"index expression {expression!r}: {why}", where=f"index {name}",
        fix="use only numbers, band names, + - * /, unary minus and parentheses",
    )


def _bands_of(node: Node) -> tuple[str, ...]:
    """Band names in order of first appearance."""
    if isinstance(node, Band):
        return (node.name,)
    if isinstance(node, BinOp):
        return tuple(dict.fromkeys(_bands_of(node.left) + _bands_of(node.right)))
    if isinstance(node, Neg):
        return _bands_of(node.operand)
    return ()


# ---- indices -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Index:
    """A spectral index.

    Attributes:
        name: identifier, also the output band name (letters, digits, underscore).
        expression: the formula in the expression language (see :func:`parse`).
        description: what it measures, in one line.
        bands: band names the expression uses (derived from ``expression``).
        reference: where the formula comes from.
    """

    name: str
    expression: str
    description: str = ""
    bands: tuple[str, ...] = field(init=False)
    reference: str = ""
    tree: Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ParamsError(f"index name {self.name!r} is not a valid band name",
                              where="indices", fix="use letters, digits and underscores")
        tree = parse(self.expression, name=self.name)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "bands", _bands_of(tree))


def _registry(*indices: Index) -> dict[str, Index]:
    return {index.name: index for index in indices}


INDICES: dict[str, Index] = _registry(
    Index("NDVI", "(B08 - B04) / (B08 + B04)",
          "Normalized difference vegetation index (NIR, red).",
          reference="Rouse et al. 1974; Tucker 1979"),
    Index("NDWI", "(B08 - B11) / (B08 + B11)",
          "Normalized difference water index, Gao's NIR/SWIR form: vegetation water content "
          "(Gao used 0.86 and 1.24 um; Sentinel-2 has no 1.24 um band, B11 at 1.61 um is used). "
          "For open water use NDWI_MCF or MNDWI.",
          reference="Gao 1996, Remote Sens. Environ. 58:257-266"),
    Index("NDWI_MCF", "(B03 - B08) / (B03 + B08)",
          "McFeeters' green/NIR normalized difference water index: open water.",
          reference="McFeeters 1996, Int. J. Remote Sens. 17:1425-1432"),
    Index("MNDWI", "(B03 - B11) / (B03 + B11)",
          "Modified NDWI (green, SWIR1): open water, less confused with built-up land.",
          reference="Xu 2006, Int. J. Remote Sens. 27:3025-3033"),
    Index("NDBI", "(B11 - B08) / (B11 + B08)",
          "Normalized difference built-up index (SWIR1, NIR).",
          reference="Zha et al. 2003, Int. J. Remote Sens. 24:583-594"),
    Index("SAVI", "1.5 * (B08 - B04) / (B08 + B04 + 0.5)",
          "Soil-adjusted vegetation index with L = 0.5 (reflectance scale 0-1).",
          reference="Huete 1988, Remote Sens. Environ. 25:295-309"),
    Index("EVI", "2.5 * (B08 - B04) / (B08 + 6 * B04 - 7.5 * B02 + 1)",
          "Enhanced vegetation index (MODIS coefficients; reflectance scale 0-1).",
          reference="Huete et al. 2002, Remote Sens. Environ. 83:195-213"),
    Index("NBR", "(B08 - B12) / (B08 + B12)",
          "Normalized burn ratio (NIR, SWIR2).",
          reference="Key & Benson 2006, FIREMON LA"),
)


def get_index(index_or_name: Index | str) -> Index:
    """An :class:`Index` itself, or the registered one of that name."""
    if isinstance(index_or_name, Index):
        return index_or_name
    try:
        return INDICES[index_or_name]
    except KeyError:
        raise ParamsError(f"unknown index {index_or_name!r}", where="indices",
                          fix=f"choose from {', '.join(INDICES)}") from None


def walk(index_or_name: Index | str) -> Node:
    """The parsed tree of an index (for serializers such as Earth Engine's)."""
    return get_index(index_or_name).tree


# ---- evaluation ----------------------------------------------------------------------------
class ExprOps(Protocol):
    """How to combine operands; :func:`evaluate` calls only these.

    Operands are the band values passed to :func:`evaluate` and the results of these methods.
    An Earth Engine implementation maps them to ``ee.Image.add/subtract/multiply/divide``,
    ``multiply(-1)`` and ``ee.Image.constant``.
    """

    def add(self, a: Any, b: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def div(self, a: Any, b: Any) -> Any: ...
    def neg(self, a: Any) -> Any: ...
    def const(self, value: float) -> Any: ...


class ArrayOps:
    """Python operators on numpy / xarray / Dask objects; ``x / 0`` gives NaN."""

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def sub(self, a: Any, b: Any) -> Any:
        return a - b

    def mul(self, a: Any, b: Any) -> Any:
        return a * b

    def neg(self, a: Any) -> Any:
        return -a

    def const(self, value: float) -> Any:
        return value

    def div(self, a: Any, b: Any) -> Any:
        """``a / b``, NaN where ``b == 0``; zeros are replaced before dividing, so lazy
        (Dask) computations raise no warnings either."""
        if np.ndim(a) == 0 and np.ndim(b) == 0 and not _is_lazy(a) and not _is_lazy(b):
            return math.nan if b == 0 else a / b
        where = xr.where if _is_xarray(a) or _is_xarray(b) else np.where
        zero = b == 0
        return where(zero, np.nan, a / where(zero, 1, b))


def _is_xarray(value: Any) -> bool:
    return isinstance(value, xr.DataArray | xr.Dataset | xr.Variable)


def _is_lazy(value: Any) -> bool:
    return hasattr(value, "dask") or (hasattr(value, "chunks") and value.chunks is not None)


_DEFAULT_OPS = ArrayOps()


def evaluate(index_or_name: Index | str, bands: Mapping[str, Any], *,
             ops: ExprOps | None = None) -> Any:
    """Evaluate an index on ``bands`` (name -> value) with ``ops`` (default: :class:`ArrayOps`)."""
    index = get_index(index_or_name)
    missing = [b for b in index.bands if b not in bands]
    if missing:
        raise DataError(f"index {index.name} needs bands {missing}, which are missing",
                        where="indices", fix=f"provide {', '.join(index.bands)}")
    return _eval(index.tree, bands, ops or _DEFAULT_OPS)


def _eval(node: Node, bands: Mapping[str, Any], ops: ExprOps) -> Any:
    if isinstance(node, Const):
        return ops.const(node.value)
    if isinstance(node, Band):
        return bands[node.name]
    if isinstance(node, Neg):
        return ops.neg(_eval(node.operand, bands, ops))
    left, right = _eval(node.left, bands, ops), _eval(node.right, bands, ops)
    method = {"+": ops.add, "-": ops.sub, "*": ops.mul, "/": ops.div}[node.op]
    return method(left, right)


# ---- composites ----------------------------------------------------------------------------
def compute_indices(composite: xr.DataArray, names: Iterable[Index | str]) -> xr.DataArray:
    """``composite`` (``(..., band, y, x)``) as float32 with index bands appended to ``band``.

    Indices are computed in the composite's precision (float32 for integer input) and stored
    as float32. The composite must hold reflectance (0-1), see the module docstring.
    """
    if "band" not in composite.dims:
        raise DataError(f"composite has dims {composite.dims}, no 'band'",
                        where="compute_indices", fix="pass a DataArray with a band dimension")
    indices = [get_index(n) for n in names]
    present = [str(b) for b in composite["band"].values]
    clash = sorted({i.name for i in indices} & set(present))
    if clash:
        raise ParamsError(f"index bands {clash} already exist in the composite",
                          where="compute_indices", fix="drop them from the index list")
    source = composite if composite.dtype.kind == "f" else composite.astype(np.float32)
    layers = {b: source.sel(band=b, drop=True) for b in present}
    new = [evaluate(i, layers).astype(np.float32).expand_dims(band=[i.name]) for i in indices]
    out = xr.concat([composite.astype(np.float32), *new], dim="band", coords="minimal",
                    compat="override", join="override")
    return out.transpose(*composite.dims)


def feature_names(bands: Iterable[str], indices: Iterable[Index | str]) -> list[str]:
    """Feature names in model order: the bands, then the indices."""
    names = [str(b) for b in bands] + [get_index(i).name for i in indices]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ParamsError(f"duplicate feature names {duplicates}", where="features",
                          fix="list each band and index once")
    return names
