"""Evaluate serialized Earth Engine graphs on local numpy arrays (dry runs and parity tests).

The input is the cloud API expression JSON that ``ee.Image.serialize()`` writes (what
:func:`lcgee.gee.classify.classification_graph` returns): ``{"values": {...}, "result": id}``
where each value is a ``constantValue``, ``arrayValue``, ``dictionaryValue``,
``valueReference`` or ``functionInvocationValue`` (``functionName`` + ``arguments``).
``Image.load`` leaves are replaced by images the caller supplies as ``{band: 2-D array}``.

Only the operations lcgee's graphs use are implemented, following Earth Engine's documented
semantics (docs/earth-engine-semantics.md quotes the reference for each and lists what stays
UNCONFIRMED): band matching of binary operators (a one-band image applies to every band of the
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

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from lcgee.errors import DataError, EarthEngineError
from lcgee.gee.classify import PLACEHOLDER_ID
from lcgee.gee.offline_arrays import array_functions
from lcgee.gee.offline_ops import (
    _REDUCERS,
    OfflineImage,
    UnsupportedOperationError,
    _add_bands,
    _array_argmax,
    _array_flatten,
    _array_get,
    _array_reduce,
    _as_1d_array,
    _binary,
    _cast,
    _Classifier,
    _classify,
    _Collection,
    _collection_median,
    _compare,
    _constant,
    _Context,
    _date_filter,
    _date_range,
    _directional_distance,
    _divide,
    _filter,
    _focal,
    _get_property,
    _image,
    _map_bands,
    _mask,
    _number,
    _Projection,
    _quality_mosaic,
    _Reducer,
    _remap,
    _rename,
    _reproject_grid,
    _resample,
    _select,
    _to_array,
    _unmask,
    _update_mask,
    _where,
    pyramid_level,
    resample,
)
from lcgee.grid import Grid

__all__ = ["UnsupportedOperationError", "OfflineImage", "evaluate_graph", "function_names",
           "invocations", "loaded_ids", "resample", "SUPPORTED_FUNCTIONS"]


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
        "ImageCollection.qualityMosaic": lambda a: _quality_mosaic(a["collection"],
                                                                   str(a["qualityBand"])),
        "DateRange": _date_range,
        "Filter.dateRangeContains": _date_filter,
        "Collection.filter": lambda a: _filter(a["collection"], a["filter"]),
    })
    for reducer in _REDUCERS:
        table[f"Reducer.{reducer}"] = lambda a, r=reducer: _Reducer(r)
    # Neighbourhood arrays and matrix products (the water CNN): a separate module.
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
        if ctx.pyramids and ctx.grid.resolution > ctx.domain.resolution:
            level, level_grid = pyramid_level(source, ctx.domain, ctx.grid, ctx.pyramids)
            return _resample(level, level_grid, ctx.grid)
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
    # the footprint: where the asset has data in any band (outside it nothing is valid, not
    # even mask() or unmask())
    return OfflineImage(names, data, masks,
                        footprint=np.logical_or.reduce(masks) if masks else None)


def evaluate_graph(graph: Mapping[str, Any], composite: Mapping[str, Any] | None = None, *,
                   images: Mapping[str, Mapping[str, Any]] | None = None,
                   composite_id: str | None = None,
                   masked: bool = False, grid: Grid | None = None,
                   properties: Mapping[str, Mapping[str, Any]] | None = None,
                   output_grid: Grid | None = None,
                   pyramid_bands: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Evaluate a serialized graph; return ``{band: array}`` of its result image.

    ``composite`` (``{band: 2-D array}``, reflectance, NaN or numpy masks = masked pixels) is
    what ``Image.load(composite_id)`` yields (default id:
    :data:`lcgee.gee.classify.PLACEHOLDER_ID`); ``images`` maps further asset ids to band dicts.
    With ``masked=True`` the bands are ``numpy.ma`` arrays; otherwise masked pixels are NaN in
    float bands and 0 in integer bands.

    ``grid`` is the grid of the source arrays (needed by graphs that reproject or ask for a
    projection); ``properties`` gives image properties by asset id (``Element.get``);
    ``output_grid`` (same CRS) is where the result is computed, default ``grid``.
    ``pyramid_bands`` (an experiment, off by default): source bands read at a coarser scale
    come from mean pyramid levels (:func:`lcgee.gee.offline_ops.pyramid_level`, the guide
    "Scale"), the other bands from sampled levels, instead of nearest neighbour at 10 m.
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
                   pyramids=frozenset(pyramid_bands),
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
