"""Image and collection operations of the offline evaluator (:mod:`lcgee.gee.offline`).

Each function models one Earth Engine operation as quoted in docs/earth-engine-semantics.md;
:mod:`lcgee.gee.offline` dispatches serialized graphs to them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lcgee.errors import DataError, EarthEngineError
from lcgee.gee import reader
from lcgee.grid import Grid

__all__ = ["UnsupportedOperationError", "OfflineImage", "resample"]


class UnsupportedOperationError(EarthEngineError):
    """The graph uses Earth Engine functions the offline evaluator does not implement."""


@dataclass
class OfflineImage:
    """A multi-band image: names, data (``(H, W)`` or ``(H, W, L)``) and masks (``(H, W)``)."""

    names: list[str]
    data: list[np.ndarray]
    masks: list[np.ndarray]
    properties: dict[str, Any] = field(default_factory=dict)
    #: Pixels inside the image's footprint (None: everywhere, e.g. constants). ``mask()`` and
    #: ``unmask(sameFootprint=True)`` give valid pixels only there.
    footprint: np.ndarray | None = None

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
    pyramids: frozenset[str] = frozenset()  # bands read from mean pyramid levels when coarser


@dataclass
class _Collection:
    images: list[OfflineImage]


# ----------------------------------------------------------------------------- helpers


def _both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Footprint of a binary operation: the intersection (None = everywhere)."""
    return b if a is None else a if b is None else a & b


def _either(prints: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Footprint of a reduced collection: the union (None = everywhere)."""
    if not prints or any(p is None for p in prints):
        return None
    return np.logical_or.reduce(list(prints))


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
    return OfflineImage(names, data, masks, footprint=_both(a.footprint, b.footprint))


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
        if not len(image):  # what the service says (swisstopo/topo-satromo#101, rgee#167)
            raise EarthEngineError(f"Band pattern '{selector}' was applied to an Image with no "
                                   "bands", where="Image.select",
                                   fix="give every period its bands (an empty collection "
                                       "reduces to an image without bands)")
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
    return OfflineImage(names, [image.data[i] for i in picked], [image.masks[i] for i in picked],
                        dict(image.properties), image.footprint)


def _rename(image: OfflineImage, names: Sequence[str]) -> OfflineImage:
    if isinstance(names, str):
        names = [names]
    if len(names) != len(image):
        raise EarthEngineError(f"{len(names)} names for {len(image)} bands",
                               where="Image.rename", fix="fix the graph")
    return OfflineImage([str(n) for n in names], list(image.data), list(image.masks),
                        dict(image.properties), image.footprint)


def _add_bands(dst: OfflineImage, src: OfflineImage, names: Sequence[str] | None = None,
               overwrite: bool = False) -> OfflineImage:
    if names is not None:
        src = _select(src, list(names))
    out = OfflineImage(list(dst.names), list(dst.data), list(dst.masks), dict(dst.properties),
                       dst.footprint)  # "the metadata and footprint from the first input"
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
    return OfflineImage(list(image.names), [fn(d) for d in image.data], list(image.masks),
                        dict(image.properties), image.footprint)


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
    return OfflineImage(list(image.names), list(image.data), masks, dict(image.properties),
                        image.footprint)


def _mask(image: OfflineImage, mask: OfflineImage | None = None) -> OfflineImage:
    """``mask()``: the mask as 0/1 values, valid inside the input's footprint only ("The
    output image retains the metadata and footprint of the input image")."""
    if mask is not None:
        return _update_mask(image, mask)
    inside = [np.ones_like(m) if image.footprint is None else image.footprint.copy()
              for m in image.masks]
    return OfflineImage(list(image.names), [m.astype(np.float64) for m in image.masks],
                        inside, dict(image.properties), image.footprint)


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
    footprint = None if image.footprint is None else image.footprint[ix] & inside
    return OfflineImage(list(image.names), [d[ix] for d in image.data],
                        [m[ix] & inside for m in image.masks], dict(image.properties), footprint)


#: Nearest-neighbour move of an :class:`OfflineImage` between two grids of one CRS.
resample = _resample


def _reproject_grid(ctx: _Context, crs: Any, transform: Any, scale: Any) -> Grid:
    """The grid ``reproject`` evaluates its input on, covering the sources.

    ``crs`` a code or ``Projection`` without a transform: "the identity transform is assumed"
    (algorithm catalog, ``Projection``), so ``scale`` gives cells with edges at multiples of
    ``scale`` from the CRS origin. A projection with a transform (``Image.projection()``, the
    tutorial's) keeps its translation: the cells start at its origin. ``crsTransform``
    (``[xScale, 0, x0, 0, yScale, y0]``, no shear) anchors the cells at ``(x0, y0)``.
    """
    if ctx.domain is None:
        raise DataError("the graph reprojects, but the sources' grid is unknown",
                        where="evaluate_graph", fix="pass grid= (the grid of the source arrays)")
    code = crs.crs if isinstance(crs, _Projection) else str(crs)
    anchor = (0.0, 0.0)
    if transform is not None:
        if scale is not None:
            raise UnsupportedOperationError("reproject with both crsTransform and scale",
                                            where="Image.reproject", fix="give one of them")
        t = [float(v) for v in transform]
        if len(t) != 6 or t[1] != 0 or t[3] != 0 or t[0] <= 0 or t[4] != -t[0]:
            raise UnsupportedOperationError(f"crsTransform {transform}", where="Image.reproject",
                                            fix="use square north-up pixels")
        scale, anchor = t[0], (t[2], t[5])
    elif isinstance(crs, _Projection) and crs.transform is not None:
        anchor = (float(crs.transform[2]), float(crs.transform[5]))
    if scale is None:
        raise UnsupportedOperationError("reproject without a scale", where="Image.reproject",
                                        fix="give scale= or crsTransform=")
    scale = float(scale)
    left, bottom, right, top = ctx.domain.bounds
    x0 = anchor[0] + np.floor((left - anchor[0]) / scale + _GRID_EPS) * scale
    y0 = anchor[1] + np.ceil((top - anchor[1]) / scale - _GRID_EPS) * scale
    width = int(np.ceil((right - x0) / scale - _GRID_EPS))
    height = int(np.ceil((y0 - bottom) / scale - _GRID_EPS))
    return Grid(code, (scale, 0.0, float(x0), 0.0, -scale, float(y0)), (height, width))


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
    return OfflineImage(list(image.names), data, masks, dict(image.properties), image.footprint)


def _unmask(ctx: _Context, image: OfflineImage, value: Any, same_footprint: bool) -> OfflineImage:
    if value is None:
        raise UnsupportedOperationError("unmask without a value", where="Image.unmask",
                                        fix="give the fill value")
    fill = _image(ctx, value)
    if len(fill) not in (1, len(image)):
        raise EarthEngineError("unmask value band count does not match", where="Image.unmask",
                               fix="use a one-band value")
    # sameFootprint (default): only inside the input's footprint; else the union with the
    # value's footprint (a constant: everywhere).
    if same_footprint:
        footprint = image.footprint
    else:
        footprint = None if fill.footprint is None else _either([image.footprint,
                                                                 fill.footprint])
    keep = np.ones(ctx.shape, bool) if footprint is None else footprint
    data, masks = [], []
    for i, (d, m) in enumerate(zip(image.data, image.masks, strict=True)):
        j = 0 if len(fill) == 1 else i
        data.append(np.where(m, d, fill.data[j]))
        masks.append((m | fill.masks[j]) & (keep | m))
    return OfflineImage(list(image.names), data, masks, dict(image.properties), footprint)


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
    return OfflineImage(list(image.names), data, masks, dict(image.properties), image.footprint)


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
    return OfflineImage(["distance"], [distance], [found], footprint=image.footprint)


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
    if not images:  # Earth Engine: an image without bands (a later select fails)
        return OfflineImage([], [], [])
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
    return OfflineImage(list(names), data, masks,
                        footprint=_either([img.footprint for img in images]))


def _quality_mosaic(collection: _Collection, quality_band: str) -> OfflineImage:
    """Per pixel, every band of the image whose ``quality_band`` is highest among the images
    where that band is unmasked (ties: the first such image, UNCONFIRMED); pixels without
    any unmasked quality value are masked. Empty collection: an image without bands."""
    images = collection.images
    if not images:
        return OfflineImage([], [], [])
    names = images[0].names
    if any(img.names != names for img in images) or quality_band not in names:
        raise UnsupportedOperationError("qualityMosaic of images with different bands (or "
                                        f"without {quality_band!r})",
                                        where="ImageCollection.qualityMosaic",
                                        fix="give every image the same bands")
    q = names.index(quality_band)
    stack = np.stack([np.where(img.masks[q], img.data[q], -np.inf) for img in images])
    any_valid = np.logical_or.reduce([img.masks[q] for img in images])
    pick = np.argmax(stack, axis=0)  # the first maximum
    data, masks = [], []
    for i in range(len(names)):
        d = np.stack([img.data[i] for img in images])
        m = np.stack([img.masks[i] for img in images])
        data.append(np.take_along_axis(d, pick[None], 0)[0])
        masks.append(np.take_along_axis(m, pick[None], 0)[0] & any_valid)
    return OfflineImage(list(names), data, masks,
                        footprint=_either([img.footprint for img in images]))


@dataclass(frozen=True)
class _DateRange:
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class _DateFilter:
    """``Filter.dateRangeContains(leftValue=DateRange, rightField=...)`` (``filterDate``)."""

    dates: _DateRange
    field: str


def _millis(value: Any) -> float:
    """A ``DateRange`` bound: milliseconds since 1970, or an ISO date string in UTC."""
    import datetime as dt

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise UnsupportedOperationError(f"date {value!r} ({exc})", where="DateRange",
                                            fix="use ISO dates") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp() * 1000.0
    raise UnsupportedOperationError(f"date {value!r}", where="DateRange",
                                    fix="use ISO date strings or milliseconds")


def _date_range(args: Mapping[str, Any]) -> _DateRange:
    if args.get("timeZone") is not None or args.get("end") is None:
        raise UnsupportedOperationError("DateRange with a time zone or without an end",
                                        where="DateRange", fix="give start and end in UTC")
    return _DateRange(_millis(args["start"]), _millis(args["end"]))


def _date_filter(args: Mapping[str, Any]) -> _DateFilter:
    left, field_name = args.get("leftValue"), args.get("rightField")
    if not isinstance(left, _DateRange) or not isinstance(field_name, str) or \
            args.get("leftField") is not None or args.get("rightValue") is not None:
        raise UnsupportedOperationError("Filter.dateRangeContains other than filterDate's form",
                                        where="Filter.dateRangeContains",
                                        fix="use ImageCollection.filterDate(start, end)")
    return _DateFilter(left, field_name)


def _filter(collection: _Collection, flt: Any) -> _Collection:
    """``Collection.filter`` with a date filter: start inclusive, end exclusive (``DateRange``)."""
    if not isinstance(flt, _DateFilter):
        raise UnsupportedOperationError(f"filters other than filterDate ({flt!r})",
                                        where="Collection.filter", fix="filter by date only")
    kept = []
    for img in collection.images:
        when = img.properties.get(flt.field)
        if when is None:
            raise DataError(f"an image has no {flt.field!r} property to filter on",
                            where="Collection.filter",
                            fix=f"pass properties={{image id: {{{flt.field!r}: millis}}}}")
        if flt.dates.start_ms <= float(when) < flt.dates.end_ms:
            kept.append(img)
    return _Collection(kept)


def pyramid_level(image: OfflineImage, src: Grid, dst: Grid, bands: frozenset[str]
                  ) -> tuple[OfflineImage, Grid]:
    """The pyramid level Earth Engine's guide "Scale" says a coarser read uses: the level "with
    the closest scale less than or equal to the scale specified" (levels: 2x2 block means of the
    level below, mask-weighted, aligned to ``src``'s corner). ``bands`` are averaged; the
    others take the top-left pixel of each block ("sample"). Returns the level and its grid
    (``src`` itself when ``dst`` is not coarser)."""
    factor = 1
    while 2 * factor * src.resolution <= dst.resolution + _GRID_EPS:
        factor *= 2
    if factor == 1:
        return image, src
    a, _, c, _, e, f = src.transform
    h, w = -(-src.height // factor), -(-src.width // factor)
    level = Grid(src.crs, (a * factor, 0.0, c, 0.0, e * factor, f), (h, w))
    data, masks = [], []
    for name, d, m in zip(image.names, image.data, image.masks, strict=True):
        pad = ((0, h * factor - d.shape[0]), (0, w * factor - d.shape[1]))
        dd = np.pad(np.where(m, d, 0.0), pad).reshape(h, factor, w, factor)
        mm = np.pad(m, pad).reshape(h, factor, w, factor)
        if name in bands:
            n = mm.sum(axis=(1, 3))
            with np.errstate(all="ignore"):
                data.append(np.where(n > 0, dd.sum(axis=(1, 3)) / np.maximum(n, 1), 0.0))
            masks.append(n > 0)
        else:
            data.append(dd[:, 0, :, 0])
            masks.append(mm[:, 0, :, 0])
    footprint = None if image.footprint is None else np.pad(
        image.footprint, ((0, h * factor - src.height), (0, w * factor - src.width))
    ).reshape(h, factor, w, factor).any(axis=(1, 3))
    return OfflineImage(list(image.names), data, masks, dict(image.properties), footprint), level

