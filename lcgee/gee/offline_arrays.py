"""Offline evaluation of Earth Engine's neighbourhood-array and matrix operations (water CNN).

Registered into :mod:`lcgee.gee.offline`'s function table by :func:`array_functions`. Array
pixels are held as ``(H, W, *shape)`` float64; array constants (``ee.Image(ee.Array(...))``)
as read-only broadcast views. Semantics, from the API reference shipped with earthengine-api:

* ``Kernel.square(radius, units='pixels')``: a (2r+1) x (2r+1) square; other units or
  fractional radii are refused.
* ``Image.neighborhoodToArray(image, kernel, defaultValue=0)``: per scalar band, a 2-D array
  whose axis 0 is the image's Y axis (rows, top first) and axis 1 its X axis; masked pixels
  and pixels outside the image take ``defaultValue``; each band keeps its mask.
* ``Image.arrayReshape(image, lengths, dimensions)``: row-major reshape (lcgee's reading; the
  reference does not state the order); one length may be -1.
* ``Image.toArray(image, axis)``: scalar bands -> 1-D array (as before); array bands are
  concatenated along ``axis``, or stacked on a new last axis when ``axis`` equals their
  dimension; masked where any band is masked.
* ``Image.matrixMultiply(image1, image2)``: per pixel ``A @ B``, bands paired like the other
  binary operators.
* ``Image.arrayProject(input, axes)``: keeps ``axes``; every dropped axis must have length 1.
* ``Image.exp``: element-wise exponential.
Anything else (other kernels, ragged arrays) raises
:class:`~lcgee.gee.offline.UnsupportedOperationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lcgee.errors import EarthEngineError
from lcgee.gee.offline_ops import (
    OfflineImage,
    UnsupportedOperationError,
    _binary,
    _image,
    _map_bands,
)

__all__ = ["array_functions"]


@dataclass(frozen=True)
class _Array:
    values: np.ndarray


@dataclass(frozen=True)
class _Kernel:
    radius: int


def _unsupported(message: str, where: str, fix: str) -> Exception:
    return UnsupportedOperationError(message, where=where, fix=fix)


def _square(radius: Any, units: Any) -> _Kernel:
    if (units or "pixels") != "pixels" or float(radius) != int(radius) or int(radius) < 0:
        raise _unsupported(f"Kernel.square(radius={radius}, units={units})", "Kernel.square",
                           "use an integer radius in pixels")
    return _Kernel(int(radius))


def _neighborhood(image: Any, kernel: Any, default: Any) -> Any:
    if not isinstance(kernel, _Kernel):
        raise _unsupported("neighborhoodToArray with a kernel other than Kernel.square",
                           "Image.neighborhoodToArray", "use Kernel.square(r, 'pixels')")
    if any(d.ndim != 2 for d in image.data):
        raise EarthEngineError("neighborhoodToArray needs scalar bands", where="Image.neighborhoodToArray",
                               fix="flatten array bands first")
    r, fill = kernel.radius, float(default if default is not None else 0.0)
    data = []
    for values, mask in zip(image.data, image.masks, strict=True):
        h, w = values.shape
        padded = np.pad(np.where(mask, values, fill), r, constant_values=fill)
        size = 2 * r + 1
        out = np.empty((h, w, size, size))
        for dy in range(size):
            for dx in range(size):
                out[:, :, dy, dx] = padded[dy:dy + h, dx:dx + w]
        data.append(out)
    return OfflineImage(list(image.names), data, list(image.masks))


def _reshape(image: Any, lengths: Any, dimensions: Any) -> Any:
    if len(lengths) != 1 or lengths.data[0].ndim != 3:
        raise EarthEngineError("lengths must be one band of 1-D arrays", where="Image.arrayReshape",
                               fix="pass ee.Image(ee.Array([...]))")
    shape = tuple(int(v) for v in np.asarray(lengths.data[0][0, 0]))
    if len(shape) != int(dimensions):
        raise EarthEngineError(f"{len(shape)} lengths for {dimensions} dimensions",
                               where="Image.arrayReshape", fix="fix the graph")
    data = [d.reshape(d.shape[:2] + shape) for d in image.data]
    return OfflineImage(list(image.names), data, list(image.masks))


def _to_array(original: Callable[[dict[str, Any]], Any], args: dict[str, Any], image: Any) -> Any:
    axis = int(args.get("axis", 0))
    if all(d.ndim == 2 for d in image.data):
        if axis == 0:
            return original(args)
        raise _unsupported(f"toArray of scalar bands on axis {axis}", "Image.toArray", "use axis 0")
    dims = {d.ndim - 2 for d in image.data}
    if len(dims) != 1:
        raise EarthEngineError("toArray of bands with different array dimensions",
                               where="Image.toArray", fix="reshape them alike")
    dim = dims.pop()
    if axis == dim:
        stacked = np.stack(image.data, axis=-1)
    elif 0 <= axis < dim:
        stacked = np.concatenate(image.data, axis=2 + axis)
    else:
        raise EarthEngineError(f"axis {axis} for {dim}-D arrays", where="Image.toArray",
                               fix=f"use 0..{dim}")
    return OfflineImage(["array"], [stacked], [np.logical_and.reduce(image.masks)])


def _project(original: Callable[[dict[str, Any]], Any], args: dict[str, Any], image: Any) -> Any:
    axes = [int(a) for a in args["axes"]]
    data = []
    for d in image.data:
        dim = d.ndim - 2
        drop = [a for a in range(dim) if a not in axes]
        if dim < 1 or any(a >= dim for a in axes) or any(d.shape[2 + a] > 1 for a in drop):
            raise EarthEngineError(f"arrayProject on axes {axes} of {dim}-D arrays with shape "
                                   f"{d.shape[2:]}", where="Image.arrayProject",
                                   fix="dropped axes must have length 1")
        data.append(d.reshape(d.shape[:2] + tuple(d.shape[2 + a] for a in sorted(axes))))
    return OfflineImage(list(image.names), data, list(image.masks))


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel ``a @ b``; a constant left matrix becomes one large product (fast path)."""
    if a.ndim == 4 and b.ndim == 4 and a.strides[:2] == (0, 0):
        h, w, k, n = b.shape
        flat = np.swapaxes(b, -1, -2).reshape(h * w * n, k) @ a[0, 0].T
        return np.swapaxes(flat.reshape(h, w, n, -1), -1, -2)
    return np.matmul(a, b)


def _constant(ctx: Any, original: Callable[[dict[str, Any]], Any], args: dict[str, Any]) -> Any:
    value = args["value"]
    if not isinstance(value, _Array):
        return original(args)
    arr = value.values
    data = np.broadcast_to(arr, tuple(ctx.shape) + arr.shape)
    return OfflineImage(["constant"], [data], [np.ones(ctx.shape, bool)])


def array_functions(ctx: Any, table: Mapping[str, Callable[[dict[str, Any]], Any]]
                    ) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """Functions to add to (or wrap in) the offline evaluator's table."""
    img = lambda v: _image(ctx, v)  # noqa: E731
    to_array, project, constant = table["Image.toArray"], table["Image.arrayProject"], table[
        "Image.constant"]

    def array(values: Sequence[Any]) -> _Array:
        arr = np.asarray(values, dtype=np.float64)
        if arr.dtype == object or arr.ndim == 0:
            raise EarthEngineError("ragged or scalar ee.Array", where="Array", fix="use a 1-D or 2-D list")
        return _Array(arr)

    return {
        "Array": lambda a: array(a["values"]),
        "Image.constant": lambda a: _constant(ctx, constant, a),
        "Kernel.square": lambda a: _square(a["radius"], a.get("units")),
        "Image.neighborhoodToArray": lambda a: _neighborhood(img(a["image"]), a["kernel"],
                                                             a.get("defaultValue")),
        "Image.arrayReshape": lambda a: _reshape(img(a["image"]), img(a["lengths"]), a["dimensions"]),
        "Image.toArray": lambda a: _to_array(to_array, a, img(a["image"])),
        "Image.arrayProject": lambda a: _project(project, a, img(a["input"])),
        "Image.matrixMultiply": lambda a: _binary(ctx, a["image1"], a["image2"], _matmul,
                                                  "Image.matrixMultiply"),
        "Image.exp": lambda a: _map_bands(img(a["value"]), np.exp),
    }
