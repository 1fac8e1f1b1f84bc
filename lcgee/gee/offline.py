"""Evaluate serialized Earth Engine graphs on local numpy arrays (dry runs and parity tests).

The input is the cloud API expression JSON that ``ee.Image.serialize()`` writes (what
:func:`lcgee.gee.classify.classification_graph` returns): ``{"values": {...}, "result": id}``
where each value is a ``constantValue``, ``arrayValue``, ``dictionaryValue``,
``valueReference`` or ``functionInvocationValue`` (``functionName`` + ``arguments``).
``Image.load`` leaves are replaced by images the caller supplies as ``{band: 2-D array}``.

Only the operations lcgee's graphs use are implemented, following Earth Engine's documented
semantics: band matching of binary operators (a one-band image applies to every band of the
other; otherwise bands pair by position and take the longer input's names, or image1's),
masks intersect, ``divide`` gives 0 for division by 0, ``remap`` masks values not listed (or
uses ``defaultValue``), ``arrayArgmax`` reports the first maximum. ``Image.classify`` with a
``decisionTreeEnsemble`` is evaluated with :mod:`lcgee.gee.reader` (the independent reader of
the tree-string format), on unmasked pixels only. Every function in the graph is checked
before evaluation; unknown ones raise :class:`UnsupportedOperationError` listing them all.

Images are held as per-band float64 arrays ``(H, W)`` (or ``(H, W, L)`` for array-valued
bands) with a boolean validity mask per band; NaN inputs count as masked.

Projections (the cloud-mask graphs of :mod:`lcgee.gee.cloudmask`): given the sources' ``grid``,
every node is evaluated on the grid its consumer asks for, as Earth Engine does. The result is
computed on the output grid (default: the sources' grid); ``Image.reproject(crs, scale)``
evaluates its input on a grid of ``scale`` metres aligned to the CRS origin (pixel edges at
multiples of ``scale``) covering the sources, and its consumer samples that. Moving between
grids is nearest neighbour at pixel centres (a centre on an edge takes the pixel east / south).
Off the sources' extent pixels are masked. Only one CRS is supported (no warping).
``focalMin`` / ``focalMax`` use circle kernels in pixels (a pixel is in when its centre lies
within the radius), ignore masked neighbours and mask the output where the input is masked
(``reduceNeighborhood``'s ``skipMasked``). ``directionalDistanceTransform(angle, d)`` marks a
pixel when a non-zero pixel lies at ``rint(k * (cos a, sin a))`` pixels (east, north) for some
``k = 0..d``: the angle counts counter-clockwise from east. These discretisations are lcgee's
reading of Earth Engine's documentation (the service does not specify them); they match
:mod:`lcgee.clouds`, which implements them separately on whole arrays.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lcgee.errors import DataError, EarthEngineError
from lcgee.gee import reader
from lcgee.grid import Grid

__all__ = ["UnsupportedOperationError", "OfflineImage", "evaluate_graph", "function_names",
           "invocations", "loaded_ids", "resample", "SUPPORTED_FUNCTIONS"]


class UnsupportedOperationError(EarthEngineError):
    """The graph uses Earth Engine functions the offline evaluator does not implement."""


@dataclass
class OfflineImage:
    """A multi-band image: names, data (``(H, W)`` or ``(H, W, L)``) and masks (``(H, W)``)."""

    names: list[str]
    data: list[np.ndarray]
    masks: list[np.ndarray]
    properties: dict[str, Any] = field(default_factory=dict)

    def band(self, i: int) -> tuple[str, np.ndarray, np.ndarray]:
        return self.names[i], self.data[i], self.masks[i]

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class _Classifier:
    trees: tuple[str, ...]
    mode: str = "CLASSIFICATION"


@dataclass(frozen=True)
class _Reducer:
    name: str


@dataclass(frozen=True)
class _Projection:
    crs: str
    transform: tuple[float, ...] | None = None


@dataclass
class _Context:
    shape: tuple[int, int]
    sources: Mapping[str, OfflineImage]
    cache: dict[Any, Any] = field(default_factory=dict)
    domain: Grid | None = None  # grid of the sources
    grid: Grid | None = None  # grid the node being evaluated is asked for


@dataclass
class _Collection:
    images: list[OfflineImage]


# ----------------------------------------------------------------------------- helpers


def _image(ctx: _Context, value: Any) -> OfflineImage:
    """Promote numbers / lists to constant images, as Earth Engine does."""
    if isinstance(value, OfflineImage):
        return value
    return _constant(ctx, value)


def _constant(ctx: _Context, value: Any) -> OfflineImage:
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool)
                             for v in values):
        raise EarthEngineError(f"Image.constant of {value!r} is not supported",
                               where="offline evaluator", fix="use numbers")
    names = ["constant"] + [f"constant_{i}" for i in range(1, len(values))]
    return OfflineImage(names, [np.full(ctx.shape, float(v)) for v in values],
                        [np.ones(ctx.shape, bool) for _ in values])


def _binary(ctx: _Context, a: Any, b: Any, fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
            where: str) -> OfflineImage:
    a, b = _image(ctx, a), _image(ctx, b)
    if len(a) == 1 and len(b) > 1:
        pairs = [(0, j) for j in range(len(b))]
        names = list(b.names)
    elif len(b) == 1 or len(a) == len(b):
        pairs = [(i, 0 if len(b) == 1 else i) for i in range(len(a))]
        names = list(a.names)
    else:
        raise EarthEngineError(f"{where}: images with {len(a)} and {len(b)} bands do not match",
                               where="offline evaluator", fix="fix the graph")
    data, masks = [], []
    for i, j in pairs:
        with np.errstate(all="ignore"):
            data.append(fn(a.data[i], b.data[j]))
        masks.append(a.masks[i] & b.masks[j])
    return OfflineImage(names, data, masks)


def _divide(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    zero = y == 0
    return np.where(zero, 0.0, x / np.where(zero, 1.0, y))


def _select(image: OfflineImage, selectors: Sequence[Any],
            new_names: Sequence[str] | None = None) -> OfflineImage:
    picked: list[int] = []
    for selector in selectors:
        if isinstance(selector, int) and not isinstance(selector, bool):
            if not 0 <= selector < len(image):
                raise EarthEngineError(f"band index {selector} out of range",
                                       where="Image.select", fix="fix the graph")
            picked.append(selector)
            continue
        hits = [i for i, name in enumerate(image.names) if re.fullmatch(str(selector), name)]
        if not hits:
            raise EarthEngineError(f"pattern {selector!r} matches none of the bands "
                                   f"{image.names}", where="Image.select",
                                   fix="provide that band in the source image")
        picked.extend(hits)
    names = [image.names[i] for i in picked]
    if new_names is not None:
        if len(new_names) != len(picked):
            raise EarthEngineError("newNames does not match the selected bands",
                                   where="Image.select", fix="fix the graph")
        names = [str(n) for n in new_names]
    return OfflineImage(names, [image.data[i] for i in picked], [image.masks[i] for i in picked])


def _rename(image: OfflineImage, names: Sequence[str]) -> OfflineImage:
    if isinstance(names, str):
        names = [names]
    if len(names) != len(image):
        raise EarthEngineError(f"{len(names)} names for {len(image)} bands",
                               where="Image.rename", fix="fix the graph")
    return OfflineImage([str(n) for n in names], list(image.data), list(image.masks))


def _add_bands(dst: OfflineImage, src: OfflineImage, names: Sequence[str] | None = None,
               overwrite: bool = False) -> OfflineImage:
    if names is not None:
        src = _select(src, list(names))
    out = OfflineImage(list(dst.names), list(dst.data), list(dst.masks))
    for name, data, mask in zip(src.names, src.data, src.masks, strict=True):
        if name in out.names:
            if not overwrite:
                raise EarthEngineError(f"band {name!r} is already in the image",
                                       where="Image.addBands", fix="rename it or set overwrite")
            i = out.names.index(name)
            out.data[i], out.masks[i] = data, mask
        else:
            out.names.append(name)
            out.data.append(data)
            out.masks.append(mask)
    return out


def _map_bands(image: OfflineImage, fn: Callable[[np.ndarray], np.ndarray]) -> OfflineImage:
    return OfflineImage(list(image.names), [fn(d) for d in image.data], list(image.masks))


def _classify(image: OfflineImage, classifier: _Classifier,
              output_name: str | None = None) -> OfflineImage:
    name = output_name or "classification"
    if classifier.mode not in ("RAW_REGRESSION", "REGRESSION"):
        raise UnsupportedOperationError(
            f"classifier output mode {classifier.mode!r} is not evaluated offline",
            where="Image.classify", fix="use RAW_REGRESSION or REGRESSION")
    used = sorted(set().union(*(reader.parse_tree(t, where=f"tree {i}").features_used
                                for i, t in enumerate(classifier.trees))))
    missing = [f for f in used if f not in image.names]
    if missing:
        raise EarthEngineError(f"the trees use bands {missing} the image lacks ({image.names})",
                               where="Image.classify", fix="select the model's feature bands")
    cols = [image.names.index(f) for f in used]
    shape = image.masks[0].shape
    valid = np.logical_and.reduce([image.masks[c] for c in cols]) if cols \
        else np.ones(shape, bool)
    X = np.stack([image.data[c][valid] for c in cols], axis=1) if cols \
        else np.zeros((int(valid.sum()), 0))
    out = reader.evaluate_trees(list(classifier.trees), X, used, mode=classifier.mode)
    if classifier.mode == "RAW_REGRESSION":
        data = np.zeros(shape + (len(classifier.trees),))
    else:
        data = np.zeros(shape)
    data[valid] = out
    return OfflineImage([name], [data], [valid])


_REDUCERS: dict[str, Callable[..., np.ndarray]] = {
    "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min,
}


def _array_reduce(image: OfflineImage, reducer: _Reducer, axes: Sequence[int],
                  field_axis: Any = None) -> OfflineImage:
    if list(axes) != [0] or field_axis is not None:
        raise UnsupportedOperationError(f"arrayReduce over axes {axes} (fieldAxis {field_axis})",
                                        where="Image.arrayReduce", fix="reduce 1-D arrays on [0]")
    fn = _REDUCERS[reducer.name]
    return _map_bands(image, lambda d: fn(_as_1d_array(d), axis=-1, keepdims=True))


def _as_1d_array(data: np.ndarray) -> np.ndarray:
    if data.ndim != 3:
        raise EarthEngineError("expected an array-valued band (one 1-D array per pixel)",
                               where="offline evaluator", fix="fix the graph")
    return data


def _array_get(image: OfflineImage, position: OfflineImage) -> OfflineImage:
    if len(position) != 1:
        raise UnsupportedOperationError("arrayGet with a multi-dimensional position",
                                        where="Image.arrayGet", fix="use 1-D arrays")
    pos = position.data[0].astype(np.int64)
    out = []
    masks = []
    for data, mask in zip(image.data, image.masks, strict=True):
        arr = _as_1d_array(data)
        inside = (pos >= 0) & (pos < arr.shape[-1])
        got = np.take_along_axis(arr, np.clip(pos, 0, arr.shape[-1] - 1)[..., None], -1)[..., 0]
        out.append(got)
        masks.append(mask & position.masks[0] & inside)
    return OfflineImage(list(image.names), out, masks)


def _array_flatten(image: OfflineImage, labels: Sequence[Sequence[str]],
                   separator: str = "_") -> OfflineImage:
    if len(image) != 1 or len(labels) != 1:
        raise UnsupportedOperationError("arrayFlatten of anything but one band of 1-D arrays",
                                        where="Image.arrayFlatten", fix="use 1-D arrays")
    arr = _as_1d_array(image.data[0])
    names = [str(n) for n in labels[0]]
    if len(names) != arr.shape[-1]:
        raise EarthEngineError(f"{len(names)} labels for arrays of length {arr.shape[-1]}",
                               where="Image.arrayFlatten", fix="fix the graph")
    return OfflineImage(names, [arr[..., i] for i in range(len(names))],
                        [image.masks[0]] * len(names))


def _to_array(image: OfflineImage, axis: int = 0) -> OfflineImage:
    if axis != 0 or any(d.ndim != 2 for d in image.data):
        raise UnsupportedOperationError("toArray of array bands or on axis != 0",
                                        where="Image.toArray", fix="stack scalar bands")
    return OfflineImage(["array"], [np.stack(image.data, axis=-1)],
                        [np.logical_and.reduce(image.masks)])


def _array_argmax(image: OfflineImage) -> OfflineImage:
    return _map_bands(image, lambda d: np.argmax(_as_1d_array(d), axis=-1)[..., None]
                      .astype(np.float64))


def _remap(image: OfflineImage, from_: Sequence[float], to: Sequence[float],
           default: Any = None, band_name: str | None = None) -> OfflineImage:
    if len(from_) != len(to):
        raise EarthEngineError("from and to differ in length", where="Image.remap",
                               fix="fix the graph")
    if band_name is not None:
        image = _select(image, [band_name])
    elif len(image) != 1:
        raise EarthEngineError(f"remap of a {len(image)}-band image needs bandName",
                               where="Image.remap", fix="fix the graph")
    data, mask = image.data[0], image.masks[0]
    out = np.zeros(data.shape) if default is None else np.full(data.shape, float(default))
    hit = np.zeros(data.shape, bool)
    for f, t in zip(from_, to, strict=True):
        sel = (data == f) & ~hit
        out[sel] = t
        hit |= sel
    return OfflineImage(list(image.names), [out], [mask & (hit | (default is not None))])


def _cast(dtype: type, lo: float, hi: float) -> Callable[[OfflineImage], OfflineImage]:
    def cast(value: OfflineImage) -> OfflineImage:
        return _map_bands(value, lambda d: np.clip(np.trunc(d), lo, hi).astype(dtype))
    return cast


def _update_mask(image: OfflineImage, mask: OfflineImage) -> OfflineImage:
    if len(mask) not in (1, len(image)):
        raise EarthEngineError("mask band count does not match", where="Image.updateMask",
                               fix="use a one-band mask")
    masks = [m & mask.masks[0 if len(mask) == 1 else i] & (mask.data[0 if len(mask) == 1 else i]
                                                             != 0)
             for i, m in enumerate(image.masks)]
    return OfflineImage(list(image.names), list(image.data), masks)


def _mask(image: OfflineImage, mask: OfflineImage | None = None) -> OfflineImage:
    if mask is not None:
        return _update_mask(image, mask)
    return OfflineImage(list(image.names), [m.astype(np.float64) for m in image.masks],
                        [np.ones_like(m) for m in image.masks])


def _normalized_difference(image: OfflineImage,
                           band_names: Sequence[str] | None = None) -> OfflineImage:
    pair = _select(image, list(band_names)) if band_names else _select(image, [0, 1])
    a, b = pair.data[0], pair.data[1]
    with np.errstate(all="ignore"):
        nd = _divide(a - b, a + b)
    return OfflineImage(["nd"], [nd], [pair.masks[0] & pair.masks[1]])


# ----------------------------------------------------------------------------- grids

_GRID_EPS = 1e-6


def _resample(image: OfflineImage, src: Grid, dst: Grid) -> OfflineImage:
    """Nearest neighbour at ``dst``'s pixel centres; masked off ``src``."""
    if src == dst:
        return image
    if src.crs != dst.crs:
        raise UnsupportedOperationError(f"reprojection from {src.crs} to {dst.crs}",
                                        where="offline evaluator", fix="use one CRS")
    a, _, c, _, e, f = src.transform
    A, _, C, _, E, F = dst.transform
    cols = np.floor((C + (np.arange(dst.width) + 0.5) * A - c) / a + _GRID_EPS).astype(np.int64)
    rows = np.floor((F + (np.arange(dst.height) + 0.5) * E - f) / e + _GRID_EPS).astype(np.int64)
    col_ok = (cols >= 0) & (cols < src.width)
    row_ok = (rows >= 0) & (rows < src.height)
    ix = np.ix_(np.clip(rows, 0, src.height - 1), np.clip(cols, 0, src.width - 1))
    inside = row_ok[:, None] & col_ok[None, :]
    return OfflineImage(list(image.names), [d[ix] for d in image.data],
                        [m[ix] & inside for m in image.masks], dict(image.properties))


#: Nearest-neighbour move of an :class:`OfflineImage` between two grids of one CRS.
resample = _resample


def _reproject_grid(ctx: _Context, crs: Any, transform: Any, scale: Any) -> Grid:
    """The grid ``reproject`` evaluates its input on: CRS-origin aligned, covering the sources."""
    if ctx.domain is None:
        raise DataError("the graph reprojects, but the sources' grid is unknown",
                        where="evaluate_graph", fix="pass grid= (the grid of the source arrays)")
    code = crs.crs if isinstance(crs, _Projection) else str(crs)
    if transform is not None:
        raise UnsupportedOperationError("reproject with a crsTransform",
                                        where="Image.reproject", fix="reproject with crs + scale")
    if scale is None:
        raise UnsupportedOperationError("reproject without a scale", where="Image.reproject",
                                        fix="give scale=")
    scale = float(scale)
    left, bottom, right, top = ctx.domain.bounds
    x0 = np.floor(left / scale + _GRID_EPS) * scale
    y0 = np.ceil(top / scale - _GRID_EPS) * scale
    width = int(np.ceil((right - x0) / scale - _GRID_EPS))
    height = int(np.ceil((y0 - bottom) / scale - _GRID_EPS))
    return Grid(code, (scale, 0.0, float(x0), 0.0, -scale, float(y0)), (height, width))


def _footprint(ctx: _Context) -> np.ndarray:
    """Pixels of the current grid whose centre lies within the sources' extent."""
    if ctx.domain is None or ctx.grid is None or ctx.grid == ctx.domain:
        return np.ones(ctx.shape, bool)
    ones = OfflineImage(["f"], [np.ones(ctx.domain.shape)], [np.ones(ctx.domain.shape, bool)])
    return _resample(ones, ctx.domain, ctx.grid).masks[0]


# ----------------------------------------------------------------------------- masks, logic


def _compare(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
             ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda x, y: fn(x, y).astype(np.float64)


def _where(image: OfflineImage, test: OfflineImage, value: OfflineImage) -> OfflineImage:
    if len(test) != 1 or len(value) not in (1, len(image)):
        raise UnsupportedOperationError("Image.where with multi-band test or value",
                                        where="Image.where", fix="use one-band test and value")
    data, masks = [], []
    for i, (d, m) in enumerate(zip(image.data, image.masks, strict=True)):
        j = 0 if len(value) == 1 else i
        take = (test.data[0] != 0) & test.masks[0] & value.masks[j] & m
        data.append(np.where(take, value.data[j], d))
        masks.append(m)
    return OfflineImage(list(image.names), data, masks)


def _unmask(ctx: _Context, image: OfflineImage, value: Any, same_footprint: bool) -> OfflineImage:
    if value is None:
        raise UnsupportedOperationError("unmask without a value", where="Image.unmask",
                                        fix="give the fill value")
    fill = _image(ctx, value)
    if len(fill) not in (1, len(image)):
        raise EarthEngineError("unmask value band count does not match", where="Image.unmask",
                               fix="use a one-band value")
    keep = _footprint(ctx) if same_footprint else np.ones(ctx.shape, bool)
    data, masks = [], []
    for i, (d, m) in enumerate(zip(image.data, image.masks, strict=True)):
        j = 0 if len(fill) == 1 else i
        data.append(np.where(m, d, fill.data[j]))
        masks.append((m | fill.masks[j]) & (keep | m))
    return OfflineImage(list(image.names), data, masks)


def _focal(image: OfflineImage, radius: Any, kernel_type: Any, units: Any, iterations: Any,
           kernel: Any, reduce_max: bool) -> OfflineImage:
    from scipy import ndimage

    if kernel is not None or (kernel_type or "circle") != "circle" or (units or "pixels") != \
            "pixels" or int(iterations or 1) != 1:
        raise UnsupportedOperationError("focal filters other than one circle in pixels",
                                        where="Image.focalMin/focalMax",
                                        fix="use radius only (circle, pixels, 1 iteration)")
    r = float(1.5 if radius is None else radius)
    n = int(np.floor(r + _GRID_EPS))
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1]
    footprint = yy ** 2 + xx ** 2 <= r * r + _GRID_EPS
    fill = -np.inf if reduce_max else np.inf
    filt = ndimage.maximum_filter if reduce_max else ndimage.minimum_filter
    data, masks = [], []
    for d, m in zip(image.data, image.masks, strict=True):
        out = filt(np.where(m, d, fill), footprint=footprint, mode="constant", cval=fill)
        ok = m & np.isfinite(out)
        data.append(np.where(ok, out, 0.0))
        masks.append(ok)
    return OfflineImage(list(image.names), data, masks)


def _directional_distance(image: OfflineImage, angle: Any, max_distance: Any,
                          label_band: Any = None) -> OfflineImage:
    if label_band is not None:
        raise UnsupportedOperationError("directionalDistanceTransform with a labelBand",
                                        where="Image.directionalDistanceTransform",
                                        fix="leave labelBand out")
    source = (image.data[0] != 0) & image.masks[0]
    h, w = source.shape
    theta = np.deg2rad(float(angle))
    found = np.zeros((h, w), bool)
    distance = np.zeros((h, w))
    for k in range(int(max_distance) + 1):
        drow = -int(np.rint(k * np.sin(theta)))
        dcol = int(np.rint(k * np.cos(theta)))
        hit = np.zeros((h, w), bool)
        rows = np.arange(h) + drow
        cols = np.arange(w) + dcol
        r_ok, c_ok = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
        if r_ok.any() and c_ok.any():
            hit[np.ix_(r_ok, c_ok)] = source[np.ix_(rows[r_ok], cols[c_ok])]
        new = hit & ~found
        distance[new] = k
        found |= new
    return OfflineImage(["distance"], [distance], [found])


def _get_property(element: Any, name: str) -> Any:
    props = getattr(element, "properties", None)
    if props is None or name not in props:
        raise DataError(f"property {name!r} is not set on the image",
                        where="offline evaluator",
                        fix=f"pass properties={{image id: {{{name!r}: value}}}}")
    return props[name]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EarthEngineError(f"{value!r} is not a number", where="offline evaluator",
                               fix="fix the graph")
    return float(value)


# ----------------------------------------------------------------------------- collections


def _collection_median(collection: _Collection) -> OfflineImage:
    """Per band, the median of the unmasked values (mean of the middle two for even counts)."""
    images = collection.images
    if not images:
        raise EarthEngineError("median of an empty collection", where="reduce.median",
                               fix="check the scene list")
    names = images[0].names
    data, masks = [], []
    for i in range(len(names)):
        stack = np.stack([np.where(img.masks[i], img.data[i], np.nan) for img in images])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            med = np.nanmedian(stack, axis=0)
        ok = np.isfinite(med)
        data.append(np.where(ok, med, 0.0))
        masks.append(ok)
    return OfflineImage(list(names), data, masks)


# ----------------------------------------------------------------------------- dispatch


def _functions(ctx: _Context) -> dict[str, Callable[[dict[str, Any]], Any]]:
    img = lambda v: _image(ctx, v)  # noqa: E731
    arith = {
        "Image.add": np.add, "Image.subtract": np.subtract, "Image.multiply": np.multiply,
        "Image.divide": _divide, "Image.max": np.maximum, "Image.min": np.minimum,
    }
    table: dict[str, Callable[[dict[str, Any]], Any]] = {
        name: (lambda a, fn=fn, name=name: _binary(ctx, a["image1"], a["image2"], fn, name))
        for name, fn in arith.items()
    }
    table.update({
        "Image.load": lambda a: _load(ctx, a["id"]),
        "Image.constant": lambda a: _constant(ctx, a["value"]),
        "Image.select": lambda a: _select(img(a["input"]), a["bandSelectors"], a.get("newNames")),
        "Image.rename": lambda a: _rename(img(a["input"]), a["names"]),
        "Image.addBands": lambda a: _add_bands(img(a["dstImg"]), img(a["srcImg"]),
                                               a.get("names"), bool(a.get("overwrite", False))),
        "Image.classify": lambda a: _classify(img(a["image"]), a["classifier"],
                                              a.get("outputName")),
        "Image.arrayReduce": lambda a: _array_reduce(img(a["input"]), a["reducer"], a["axes"],
                                                     a.get("fieldAxis")),
        "Image.arrayGet": lambda a: _array_get(img(a["image"]), img(a["position"])),
        "Image.arrayProject": lambda a: _array_project(img(a["input"]), a["axes"]),
        "Image.arrayFlatten": lambda a: _array_flatten(img(a["image"]), a["coordinateLabels"],
                                                       a.get("separator", "_")),
        "Image.toArray": lambda a: _to_array(img(a["image"]), a.get("axis", 0)),
        "Image.arrayArgmax": lambda a: _array_argmax(img(a["image"])),
        "Image.remap": lambda a: _remap(img(a["image"]), a["from"], a["to"],
                                        a.get("defaultValue"), a.get("bandName")),
        "Image.toUint8": lambda a: _cast(np.uint8, 0, 255)(img(a["value"])),
        "Image.toInt8": lambda a: _cast(np.int8, -128, 127)(img(a["value"])),
        "Image.toUint16": lambda a: _cast(np.uint16, 0, 65535)(img(a["value"])),
        "Image.toInt16": lambda a: _cast(np.int16, -32768, 32767)(img(a["value"])),
        "Image.toFloat": lambda a: _map_bands(img(a["value"]), lambda d: d.astype(np.float32)),
        "Image.toDouble": lambda a: _map_bands(img(a["value"]), lambda d: d.astype(np.float64)),
        "Image.updateMask": lambda a: _update_mask(img(a["image"]), img(a["mask"])),
        "Image.mask": lambda a: _mask(img(a["image"]),
                                      img(a["mask"]) if a.get("mask") is not None else None),
        "Image.normalizedDifference": lambda a: _normalized_difference(img(a["input"]),
                                                                       a.get("bandNames")),
        "Classifier.decisionTreeEnsemble": lambda a: _Classifier(tuple(a["treeStrings"])),
        "Classifier.decisionTree": lambda a: _Classifier((a["treeString"],)),
        "Classifier.setOutputMode": lambda a: _Classifier(a["classifier"].trees, a["mode"]),
    })
    compare = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal,
               "eq": np.equal, "neq": np.not_equal}
    for name, fn in compare.items():
        table[f"Image.{name}"] = (lambda a, fn=fn, name=name:
                                  _binary(ctx, a["image1"], a["image2"], _compare(fn), name))
    table.update({
        "Image.and": lambda a: _binary(ctx, a["image1"], a["image2"], _compare(
            lambda x, y: (x != 0) & (y != 0)), "Image.and"),
        "Image.or": lambda a: _binary(ctx, a["image1"], a["image2"], _compare(
            lambda x, y: (x != 0) | (y != 0)), "Image.or"),
        "Image.not": lambda a: _map_bands(img(a["value"]), lambda d: (d == 0).astype(np.float64)),
        "Image.where": lambda a: _where(img(a["input"]), img(a["test"]), img(a["value"])),
        "Image.unmask": lambda a: _unmask(ctx, img(a["input"]), a.get("value"),
                                          bool(a.get("sameFootprint", True))),
        "Image.focalMin": lambda a: _focal(img(a["image"]), a.get("radius"), a.get("kernelType"),
                                           a.get("units"), a.get("iterations"), a.get("kernel"),
                                           reduce_max=False),
        "Image.focalMax": lambda a: _focal(img(a["image"]), a.get("radius"), a.get("kernelType"),
                                           a.get("units"), a.get("iterations"), a.get("kernel"),
                                           reduce_max=True),
        "Image.directionalDistanceTransform": lambda a: _directional_distance(
            img(a["source"]), a["angle"], a["maxDistance"], a.get("labelBand")),
        "Image.reproject": lambda a: _never(),  # evaluated lazily in _evaluate
        "Image.projection": lambda a: _Projection(*_domain_projection(ctx)),
        "Projection": lambda a: _Projection(str(a["crs"]), a.get("transform")),
        "Element.get": lambda a: _get_property(a["object"], str(a["property"])),
        "Number.add": lambda a: _number(a["left"]) + _number(a["right"]),
        "Number.subtract": lambda a: _number(a["left"]) - _number(a["right"]),
        "Number.multiply": lambda a: _number(a["left"]) * _number(a["right"]),
        "ImageCollection.fromImages": lambda a: _Collection([img(i) for i in a["images"]]),
        "reduce.median": lambda a: _collection_median(a["collection"]),
    })
    for reducer in _REDUCERS:
        table[f"Reducer.{reducer}"] = lambda a, r=reducer: _Reducer(r)
    # Neighbourhood arrays and matrix products (the water CNN): a separate module.
    from lcgee.gee.offline_arrays import array_functions

    table.update(array_functions(ctx, dict(table)))
    return table


def _never() -> Any:
    raise AssertionError("Image.reproject is evaluated by _evaluate")  # pragma: no cover


def _domain_projection(ctx: _Context) -> tuple[str, tuple[float, ...]]:
    if ctx.domain is None:
        raise DataError("the graph asks for an image's projection, but the sources' grid is "
                        "unknown", where="evaluate_graph", fix="pass grid=")
    return ctx.domain.crs, tuple(ctx.domain.transform)


def _array_project(image: OfflineImage, axes: Sequence[int]) -> OfflineImage:
    if list(axes) != [0]:
        raise UnsupportedOperationError(f"arrayProject on axes {axes}",
                                        where="Image.arrayProject", fix="use 1-D arrays")
    return _map_bands(image, _as_1d_array)


def _load(ctx: _Context, asset_id: str) -> OfflineImage:
    source = ctx.sources.get(asset_id)
    if source is None:
        raise DataError(f"the graph loads image {asset_id!r}, which was not supplied",
                        where="offline evaluator",
                        fix=f"pass images={{{asset_id!r}: {{band: array}}}}")
    if ctx.domain is not None and ctx.grid is not None:
        return _resample(source, ctx.domain, ctx.grid)
    return source


#: Function names the evaluator implements.
SUPPORTED_FUNCTIONS: frozenset[str] = frozenset(
    _functions(_Context((1, 1), {})).keys())


def invocations(graph: Any) -> Iterator[Mapping[str, Any]]:
    """Every named function call (``functionName`` + ``arguments``) anywhere in ``graph``."""
    if isinstance(graph, Mapping):
        call = graph.get("functionInvocationValue")
        if isinstance(call, Mapping) and "functionName" in call:
            yield call
        for value in graph.values():
            yield from invocations(value)
    elif isinstance(graph, list):
        for value in graph:
            yield from invocations(value)


def function_names(graph: Mapping[str, Any]) -> set[str]:
    """Every ``functionName`` invoked anywhere in ``graph``."""
    return {str(call["functionName"]) for call in invocations(graph)}


def loaded_ids(graph: Mapping[str, Any]) -> set[str]:
    """The asset ids the graph loads with ``Image.load``."""
    return {str(call["arguments"]["id"]["constantValue"]) for call in invocations(graph)
            if call["functionName"] == "Image.load"}


def _evaluate(node: Mapping[str, Any], values: Mapping[str, Any], ctx: _Context,
              table: Mapping[str, Callable[[dict[str, Any]], Any]]) -> Any:
    if "constantValue" in node:
        return node["constantValue"]
    if "valueReference" in node:
        ref = str(node["valueReference"])
        key = (ref, ctx.grid)
        if key not in ctx.cache:
            if ref not in values:
                raise EarthEngineError(f"valueReference {ref!r} is not in values",
                                       where="offline evaluator", fix="pass a complete graph")
            ctx.cache[key] = _evaluate(values[ref], values, ctx, table)
        return ctx.cache[key]
    if "arrayValue" in node:
        return [_evaluate(v, values, ctx, table) for v in node["arrayValue"].get("values", [])]
    if "dictionaryValue" in node:
        return {k: _evaluate(v, values, ctx, table)
                for k, v in node["dictionaryValue"].get("values", {}).items()}
    if "functionInvocationValue" in node:
        call = node["functionInvocationValue"]
        if "functionName" not in call:
            raise UnsupportedOperationError("invocations of function values",
                                            where="offline evaluator",
                                            fix="use named Earth Engine functions")
        arguments = call.get("arguments", {})
        if call["functionName"] == "Image.reproject":
            return _reproject(arguments, values, ctx, table)
        args = {k: _evaluate(v, values, ctx, table) for k, v in arguments.items()}
        return table[call["functionName"]](args)
    kinds = sorted(node)
    raise UnsupportedOperationError(f"value kinds {kinds} (e.g. argumentReference, "
                                    "functionDefinitionValue) are not evaluated",
                                    where="offline evaluator", fix="avoid mapped functions")


def _reproject(arguments: Mapping[str, Any], values: Mapping[str, Any], ctx: _Context,
               table: Mapping[str, Callable[[dict[str, Any]], Any]]) -> OfflineImage:
    """Evaluate ``image`` on the reprojected grid, then sample it on the current grid."""
    get = lambda k: _evaluate(arguments[k], values, ctx, table) if k in arguments else None  # noqa: E731
    target = _reproject_grid(ctx, get("crs"), get("crsTransform"), get("scale"))
    current, shape = ctx.grid, ctx.shape
    ctx.grid, ctx.shape = target, target.shape
    try:
        inner = _image(ctx, _evaluate(arguments["image"], values, ctx, table))
    finally:
        ctx.grid, ctx.shape = current, shape
    return _resample(inner, target, current or ctx.domain)


def _source(bands: Mapping[str, Any]) -> OfflineImage:
    names, data, masks = [], [], []
    for name, array in bands.items():
        arr = np.ma.asarray(array)
        values = np.asarray(arr.filled(np.nan) if arr.dtype.kind == "f" else arr.filled(0),
                            dtype=np.float64)
        if values.ndim != 2:
            raise DataError(f"band {name!r} has shape {values.shape}, not 2-D",
                            where="offline evaluator", fix="pass 2-D arrays")
        mask = ~np.ma.getmaskarray(arr) & np.isfinite(values)
        names.append(str(name))
        data.append(np.where(mask, values, 0.0))
        masks.append(mask)
    return OfflineImage(names, data, masks)


def evaluate_graph(graph: Mapping[str, Any], composite: Mapping[str, Any] | None = None, *,
                   images: Mapping[str, Mapping[str, Any]] | None = None,
                   composite_id: str | None = None,
                   masked: bool = False, grid: Grid | None = None,
                   properties: Mapping[str, Mapping[str, Any]] | None = None,
                   output_grid: Grid | None = None) -> dict[str, np.ndarray]:
    """Evaluate a serialized graph; return ``{band: array}`` of its result image.

    ``composite`` (``{band: 2-D array}``, reflectance, NaN or numpy masks = masked pixels) is
    what ``Image.load(composite_id)`` yields (default id:
    :data:`lcgee.gee.classify.PLACEHOLDER_ID`); ``images`` maps further asset ids to band dicts.
    With ``masked=True`` the bands are ``numpy.ma`` arrays; otherwise masked pixels are NaN in
    float bands and 0 in integer bands.

    ``grid`` is the grid of the source arrays (needed by graphs that reproject or ask for a
    projection); ``properties`` gives image properties by asset id (``Element.get``);
    ``output_grid`` (same CRS) is where the result is computed, default ``grid``.
    """
    if not isinstance(graph, Mapping) or "values" not in graph or "result" not in graph:
        raise DataError("not a serialized graph (needs 'values' and 'result')",
                        where="evaluate_graph", fix="pass json.loads(image.serialize())")
    unknown = sorted(function_names(graph) - SUPPORTED_FUNCTIONS)
    if unknown:
        raise UnsupportedOperationError(
            f"the graph uses functions the offline evaluator does not implement: {unknown}",
            where="evaluate_graph",
            fix=f"use only {sorted(SUPPORTED_FUNCTIONS)}")
    from lcgee.gee.classify import PLACEHOLDER_ID

    sources = {k: _source(v) for k, v in (images or {}).items()}
    if composite is not None:
        sources[composite_id or PLACEHOLDER_ID] = _source(composite)
    if not sources:
        raise DataError("no source image given", where="evaluate_graph",
                        fix="pass composite={band: array}")
    shapes = {img.data[0].shape for img in sources.values() if len(img)}
    if len(shapes) != 1:
        raise DataError(f"source bands have different shapes {sorted(shapes)}",
                        where="evaluate_graph", fix="pass arrays on one grid")
    shape = shapes.pop()
    if grid is not None and tuple(grid.shape) != tuple(shape):
        raise DataError(f"the source arrays are {shape}, the grid {grid.shape}",
                        where="evaluate_graph", fix="pass the grid the arrays are on")
    for asset_id, props in (properties or {}).items():
        if asset_id not in sources:
            raise DataError(f"properties given for {asset_id!r}, which has no arrays",
                            where="evaluate_graph", fix="pass its bands in images=")
        sources[asset_id].properties.update(props)
    target = output_grid or grid
    if output_grid is not None and grid is None:
        raise DataError("output_grid needs grid (the sources' grid)", where="evaluate_graph",
                        fix="pass grid=")
    ctx = _Context(shape=target.shape if target is not None else shape, sources=sources,
                   domain=grid, grid=target)
    result = _evaluate({"valueReference": graph["result"]}, graph["values"], ctx, _functions(ctx))
    if not isinstance(result, OfflineImage):
        raise DataError(f"the graph's result is a {type(result).__name__}, not an image",
                        where="evaluate_graph", fix="serialize an ee.Image")
    out: dict[str, np.ndarray] = {}
    for name, data, mask in zip(result.names, result.data, result.masks, strict=True):
        full_mask = np.broadcast_to(mask.reshape(mask.shape + (1,) * (data.ndim - 2)), data.shape)
        if masked:
            out[name] = np.ma.MaskedArray(data, mask=~full_mask)
        elif data.dtype.kind == "f":
            out[name] = np.where(full_mask, data, np.nan)
        else:
            out[name] = np.where(full_mask, data, 0).astype(data.dtype)
    return out
