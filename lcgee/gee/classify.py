"""Build the Earth Engine graph that classifies a composite with an exported LightGBM model.

The pieces, each a plain function over ``ee`` objects (they work in the offline session of
:func:`lcgee.gee.session.init_offline`, where graphs are built and serialised but not run):

* :class:`EEOps` implements :class:`lcgee.indices.ExprOps` over ``ee.Image``, so
  :func:`feature_image` computes every index from the same single definition as the local
  pipeline (:func:`lcgee.indices.evaluate`).
* :func:`feature_image` appends the index bands to a reflectance composite and selects exactly
  the model's features, in order.
* :func:`classify_image` runs one ``decisionTreeEnsemble`` per class (``RAW_REGRESSION``: an
  array of per-tree outputs summed with ``arrayReduce``; ``REGRESSION``: the mean times the
  number of trees), stacks the class scores, takes ``arrayArgmax`` and remaps the index to the
  class codes: band ``landcover``, uint8.
* :func:`classification_graph` serialises that image (the JSON written as ``ee_graph.json``,
  evaluated locally by :mod:`lcgee.gee.offline`).
* :func:`payload_route` chooses between sending the trees inline and uploading them as a table
  asset (:func:`trees_feature_collection`, :func:`classifier_from_table`).
* :func:`export_task` builds (never starts) ``Export.image.toAsset/toDrive/toCloudStorage``.

Parity with the local pipeline by design (:class:`EEOps`): every index operation is cast to
float32 as the local numpy float32 arithmetic rounds it, constants are float32, and division by
0 (Earth Engine: 0, locally NaN) is masked on the server, so both leave the pixel unclassified.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lcgee import indices as _indices
from lcgee.errors import DataWarning, ModelError, ParamsError
from lcgee.gee.api import ee as _ee
from lcgee.gee.trees import OUTPUT_MODES, EEClassifierSpec

__all__ = [
    "PC_TO_EE_BANDS",
    "EE_TO_PC_BANDS",
    "S2_BANDS",
    "REQUEST_LIMIT_BYTES",
    "INLINE_FRACTION",
    "OUTPUT_BAND",
    "EEOps",
    "harmonized_to_reflectance",
    "feature_image",
    "classifier_for_class",
    "class_score",
    "classify_image",
    "scores_to_labels",
    "classification_graph",
    "placeholder_composite",
    "PLACEHOLDER_ID",
    "payload_route",
    "TREE_NEWLINE",
    "REGRESSION_WARNING",
    "tree_feature",
    "trees_feature_collection",
    "classifier_from_table",
    "export_task",
    "CLASS_PYRAMIDING",
    "PYRAMIDING_POLICIES",
]

#: Planetary Computer (lcgee) Sentinel-2 band name -> Earth Engine ``S2_SR_HARMONIZED`` name.
PC_TO_EE_BANDS: dict[str, str] = {
    "B01": "B1", "B02": "B2", "B03": "B3", "B04": "B4", "B05": "B5", "B06": "B6", "B07": "B7",
    "B08": "B8", "B8A": "B8A", "B09": "B9", "B11": "B11", "B12": "B12",
}
#: Earth Engine ``S2_SR_HARMONIZED`` band name -> lcgee name.
EE_TO_PC_BANDS: dict[str, str] = {v: k for k, v in PC_TO_EE_BANDS.items()}
#: lcgee's Sentinel-2 reflectance band names.
S2_BANDS: tuple[str, ...] = tuple(PC_TO_EE_BANDS)
#: One Earth Engine request may carry at most this many bytes.
REQUEST_LIMIT_BYTES = 10_000_000
#: Share of the request limit the trees may use when sent inline.
INLINE_FRACTION = 0.8
#: Why the REGRESSION output mode is only a fallback.
REGRESSION_WARNING = (
    "ee.output_mode REGRESSION assumes Earth Engine averages the trees of an ensemble, which "
    "its reference does not document (UNCONFIRMED); RAW_REGRESSION (per-tree outputs, summed "
    "by lcgee) is the documented route")
#: Stands for a line break inside tree strings stored in a table asset (as geemap encodes them).
TREE_NEWLINE = "#"
#: Name of the classified band.
OUTPUT_BAND = "landcover"
#: ``Export.image.toAsset`` pyramiding policy of class maps (``ee/batch.py``: the default,
#: "mean", would average class codes in the overviews).
CLASS_PYRAMIDING: dict[str, str] = {".default": "mode"}
#: Values ``ee/batch.py`` documents for ``pyramidingPolicy``.
PYRAMIDING_POLICIES = ("mean", "sample", "min", "max", "mode")
#: Asset id of the placeholder composite used for dry runs and offline evaluation.
PLACEHOLDER_ID = "lcgee/placeholder/composite"



# ----------------------------------------------------------------------------- features


class EEOps:
    """:class:`lcgee.indices.ExprOps` over ``ee.Image`` computing what the local float32
    pipeline computes, bit for bit by design.

    Every result is cast with ``toFloat`` ("Casts the input value to a 32-bit float"): the
    local indices are numpy float32 operations, each rounded to float32, and a correctly
    rounded double result of one ``+ - * /`` rounded again to float32 is the float32 result.
    Constants are the float32 values numpy uses (``float(np.float32(v))``). ``divide`` returns
    0 for division by 0 on the server (API reference) where the local pipeline gives NaN,
    so :meth:`div` masks those pixels: both sides then leave the pixel unclassified.
    """

    def _img(self, value: Any) -> Any:
        ee = _ee()
        if isinstance(value, ee.Image):
            return value
        return ee.Image.constant(float(np.float32(value)))

    def add(self, a: Any, b: Any) -> Any:
        return self._img(a).add(self._img(b)).toFloat()

    def sub(self, a: Any, b: Any) -> Any:
        return self._img(a).subtract(self._img(b)).toFloat()

    def mul(self, a: Any, b: Any) -> Any:
        return self._img(a).multiply(self._img(b)).toFloat()

    def div(self, a: Any, b: Any) -> Any:
        """``a / b``, masked where ``b == 0`` (Earth Engine's 0 there; locally NaN)."""
        den = self._img(b)
        return self._img(a).divide(den).updateMask(den.neq(0)).toFloat()

    def neg(self, a: Any) -> Any:
        return self._img(a).multiply(-1).toFloat()

    def const(self, value: float) -> Any:
        return _ee().Image.constant(float(np.float32(value)))


def harmonized_to_reflectance(image: Any, bands: Sequence[str] | None = None) -> Any:
    """An ``S2_SR_HARMONIZED`` image (DN, ``B2``...) -> reflectance 0-1 with lcgee names (``B02``...).

    ``bands`` are lcgee names (default: all of :data:`S2_BANDS`).
    """
    names = list(bands or S2_BANDS)
    unknown = [b for b in names if b not in PC_TO_EE_BANDS]
    if unknown:
        raise ParamsError(f"bands {unknown} are not Sentinel-2 bands", where="bands",
                          fix=f"choose from {', '.join(S2_BANDS)}")
    return image.select([PC_TO_EE_BANDS[b] for b in names], names).toFloat().divide(10000) \
        .toFloat()


def feature_image(composite_image: Any, feature_names: Sequence[str], *,
                  available_bands: Sequence[str] | None = None) -> Any:
    """``composite_image`` plus the index bands, with exactly ``feature_names`` in order.

    The composite holds reflectance (0-1) with lcgee band names. A feature is either one of
    ``available_bands`` (default: the Sentinel-2 bands :data:`S2_BANDS`) or an index of
    :data:`lcgee.indices.INDICES` whose bands are all available; anything else raises
    :class:`ModelError` naming it.
    """
    names = [str(n) for n in feature_names]
    available = list(available_bands) if available_bands is not None else list(S2_BANDS)
    bad: list[str] = []
    needed: list[str] = []
    wanted_indices: list[_indices.Index] = []
    for name in names:
        if name in available:
            needed.append(name)
        elif name in _indices.INDICES:
            index = _indices.INDICES[name]
            missing = [b for b in index.bands if b not in available]
            if missing:
                bad.append(f"{name} (needs {missing})")
            else:
                wanted_indices.append(index)
                needed.extend(index.bands)
        else:
            bad.append(name)
    if bad:
        raise ModelError(
            f"features {bad} cannot be computed in Earth Engine (not a band of the composite "
            f"{available} nor a registered index)", where="feature_image",
            fix=f"retrain on bands and the indices {', '.join(_indices.INDICES)}, or pass "
                "available_bands= listing the composite's extra bands")
    ee = _ee()
    source = list(dict.fromkeys(needed))
    bands = {b: composite_image.select([b]) for b in source}
    ops = EEOps()
    layers = [composite_image.select(source).toFloat()] if source else []
    for index in wanted_indices:
        layers.append(ops._img(_indices.evaluate(index, bands, ops=ops)).rename([index.name]))
    return ee.Image.cat(layers).select(names)


# ----------------------------------------------------------------------------- classifier


def _check_mode(mode: str) -> str:
    if mode not in OUTPUT_MODES:
        raise ModelError(f"unknown output mode {mode!r}", where="classify_image",
                         fix=f"use one of {list(OUTPUT_MODES)}")
    return mode


def classifier_for_class(trees_of_one_class: Sequence[str] | Any, output_mode: str) -> Any:
    """``ee.Classifier.decisionTreeEnsemble(trees).setOutputMode(output_mode)``.

    ``trees_of_one_class`` is a list of tree strings or an ``ee.List`` of them.
    """
    ee = _ee()
    trees = trees_of_one_class if isinstance(trees_of_one_class, ee.List) \
        else list(trees_of_one_class)
    return ee.Classifier.decisionTreeEnsemble(trees).setOutputMode(_check_mode(output_mode))


def class_score(features_image: Any, classifier: Any, n_trees: int, mode: str, name: str) -> Any:
    """One class's raw score as a scalar band ``name``.

    ``RAW_REGRESSION``: the per-tree array summed over axis 0, then element 0 (the reference
    for ``Classifier.setOutputMode``: "an array of the internal representation of the
    regression process. For example, the raw predictions of multiple regression trees").
    ``REGRESSION``: the mean over trees times ``n_trees`` -- a fallback whose premise is NOT
    documented (the reference only says "the result of standard regression"); it warns
    (:data:`REGRESSION_WARNING`).
    """
    ee = _ee()
    out = features_image.classify(classifier, name)
    if _check_mode(mode) == "RAW_REGRESSION":
        out = out.arrayReduce(ee.Reducer.sum(), [0]).arrayGet([0])
    else:
        import warnings

        warnings.warn(REGRESSION_WARNING, DataWarning, stacklevel=2)
        out = out.multiply(float(n_trees))
    return out.rename([name])


def scores_to_labels(scores: Sequence[Any], class_values: Sequence[int]) -> Any:
    ee = _ee()
    bad = [v for v in class_values if not 0 <= int(v) <= 255]
    if bad:
        raise ModelError(f"class values {bad} do not fit the uint8 landcover band",
                         where="classify_image", fix="use class codes 0-255")
    index = ee.Image.cat(list(scores)).toArray().arrayArgmax().arrayGet([0])
    return (index.remap(list(range(len(class_values))), [int(v) for v in class_values])
            .rename([OUTPUT_BAND]).toUint8())


def classify_image(features_image: Any, spec: EEClassifierSpec, *,
                   mode: str = "RAW_REGRESSION") -> Any:
    """Classify ``features_image`` (bands exactly ``spec.feature_names``) into band ``landcover``.

    One ensemble per class, scores stacked, ``arrayArgmax`` (first maximum on ties, like
    ``numpy.argmax``), remapped to ``spec.class_values``, cast to uint8.
    """
    _check_mode(mode)
    scores = [class_score(features_image, classifier_for_class(trees, mode), len(trees), mode,
                          f"score_{k}")
              for k, trees in enumerate(spec.trees)]
    return scores_to_labels(scores, spec.class_values)


def placeholder_composite() -> Any:
    """``ee.Image(PLACEHOLDER_ID)``: a stand-in composite for dry runs and offline evaluation."""
    return _ee().Image(PLACEHOLDER_ID)


def classification_graph(spec: EEClassifierSpec, composite_image: Any | None = None, *,
                         mode: str | None = None,
                         available_bands: Sequence[str] | None = None) -> dict[str, Any]:
    """The serialized request (cloud API expression: ``values`` + ``result``) of the classified image.

    ``composite_image`` defaults to :func:`placeholder_composite`; ``mode`` to
    ``spec.output_mode``. The result is what ``ee_graph.json`` holds.
    """
    composite = composite_image if composite_image is not None else placeholder_composite()
    image = classify_image(feature_image(composite, spec.feature_names,
                                         available_bands=available_bands),
                           spec, mode=mode or spec.output_mode)
    return json.loads(image.serialize())


# ----------------------------------------------------------------------------- payload


def payload_route(spec: EEClassifierSpec, *, limit_bytes: int = REQUEST_LIMIT_BYTES,
                  fraction: float = INLINE_FRACTION) -> str:
    """``"inline"`` when the trees' JSON fits in ``fraction`` of the request limit, else
    ``"table-asset"`` (upload :func:`trees_feature_collection` and use
    :func:`classifier_from_table`)."""
    return "inline" if spec.payload_bytes() < fraction * limit_bytes else "table-asset"


def tree_feature(tree: str, k: int, index: int) -> Any:
    """One tree as a table feature, the way the known-working exporter (geemap's
    ``export_trees_to_fc``) builds them: a dummy point geometry at (0, 0) ("needed to properly
    export the feature collection") and the line breaks encoded as :data:`TREE_NEWLINE`
    (decoded by :func:`classifier_from_table`). Whether geometry-less features with raw
    newlines survive table ingestion is UNCONFIRMED, so lcgee does not rely on it."""
    ee = _ee()
    if TREE_NEWLINE in tree:
        raise ModelError(f"a tree string contains {TREE_NEWLINE!r}", where="tree_feature",
                         fix="use feature names of letters, digits and underscores")
    return ee.Feature(ee.Geometry.Point([0, 0]),
                      {"tree": tree.replace("\n", TREE_NEWLINE), "class": k, "index": index})


def trees_feature_collection(spec: EEClassifierSpec) -> Any:
    """The trees as an ``ee.FeatureCollection``, one :func:`tree_feature` (``tree``, ``class``,
    ``index``) per tree, for ``Export.table.toAsset`` when they are too big to travel inline.

    Note: building it client-side still sends the trees in the export request; for models
    near the limit use :func:`lcgee.gee.live.ensure_trees_table` (chunked uploads).
    """
    ee = _ee()
    return ee.FeatureCollection([tree_feature(tree, k, i)
                                 for k, trees in enumerate(spec.trees)
                                 for i, tree in enumerate(trees)])


def classifier_from_table(table: Any, k: int, output_mode: str) -> Any:
    """The class-``k`` ensemble from a table asset made of :func:`tree_feature` features
    (line breaks decoded back from :data:`TREE_NEWLINE`, as geemap's ``fc_to_classifier``)."""
    ee = _ee()
    if isinstance(table, str):
        table = ee.FeatureCollection(table)
    trees = (table.filter(ee.Filter.eq("class", k)).sort("index").aggregate_array("tree")
             .map(lambda t: ee.String(t).replace(TREE_NEWLINE, "\n", "g")))
    return classifier_for_class(ee.List(trees), output_mode)


# ----------------------------------------------------------------------------- export


def _layout(parts: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == parts``, as square as possible (primes: strips)."""
    rows = max(d for d in range(1, int(math.isqrt(parts)) + 1) if parts % d == 0)
    return rows, parts // rows


def _split_bbox(bbox: Sequence[float], parts: int) -> list[list[float]]:
    """Split a (west, south, east, north) box into ``parts`` near-square tiles (row-major)."""
    west, south, east, north = (float(v) for v in bbox)
    rows, cols = _layout(parts)
    boxes = []
    for r in range(rows):
        for c in range(cols):
            if len(boxes) == parts:
                break
            boxes.append([west + (east - west) * c / cols, north - (north - south) * (r + 1) / rows,
                          west + (east - west) * (c + 1) / cols, north - (north - south) * r / rows])
    return boxes


def _grid_tiles(grid: Any, parts: int) -> list[Any]:
    rows, cols = _layout(parts)
    if rows > grid.height or cols > grid.width:
        raise ParamsError(f"cannot split a {grid.height}x{grid.width} grid into {parts} tiles",
                          where="export_task", fix="use a smaller split")
    tiles = []
    for r in range(rows):
        for c in range(cols):
            if len(tiles) == parts:
                break
            r0, r1 = grid.height * r // rows, grid.height * (r + 1) // rows
            c0, c1 = grid.width * c // cols, grid.width * (c + 1) // cols
            tiles.append(grid.window(r0, c0, r1 - r0, c1 - c0))
    return tiles


def export_task(image: Any, grid_or_region: Any, *, to: str = "asset", path: str,
                scale: float | None = None, crs: str | None = None,
                max_pixels: int = 10_000_000_000, split: int = 1,
                description: str = "lcgee_landcover",
                pyramiding_policy: dict[str, str] | None = None
                ) -> list[tuple[Any, dict[str, Any]]]:
    """Build (do not start) export tasks of ``image``; one per tile when ``split > 1``.

    ``grid_or_region`` is an :class:`lcgee.grid.Grid` (exported on exactly that grid:
    ``crs`` + ``crsTransform`` + ``dimensions``; tiles are pixel windows of it) or a lon/lat
    box ``(west, south, east, north)`` (exported with ``scale`` and ``crs``; tiles are sub-boxes).
    ``path`` is the asset id (``to="asset"``), the Drive folder (``"drive"``) or
    ``"bucket/prefix"`` (``"cloud-storage"``). With ``split > 1`` tile ``i`` varies only what
    names a file: the asset id (``<path>_{i}``), the Drive file name prefix
    (``<description>_{i}`` in the one folder ``path``) or the Cloud Storage object prefix
    (``<prefix>_{i}`` in the one bucket); ``ee/batch.py`` documents ``bucket`` and ``folder``
    as places ("The name of a Cloud Storage bucket", "The name of a unique folder in your
    Drive account") and ``fileNamePrefix`` as the file name.

    Asset exports get ``pyramidingPolicy`` ``pyramiding_policy`` (default
    :data:`CLASS_PYRAMIDING`: ``mode`` for every band, since the documented default ``mean``
    would average class codes in the overviews; pass ``{".default": "mean"}`` for continuous
    bands such as probabilities).

    Returns ``[(task, config), ...]`` where ``config`` is a plain summary
    (``type``, ``destination``, ``description``, ``path``, ``crs``, ``crsTransform``,
    ``dimensions``, ``scale``, ``region``, ``maxPixels``) and ``task.config`` holds the request.
    """
    ee = _ee()
    if to not in ("asset", "drive", "cloud-storage"):
        raise ParamsError(f"unknown export destination {to!r}", where="export_task",
                          fix="use 'asset', 'drive' or 'cloud-storage'")
    if int(split) < 1:
        raise ParamsError(f"split {split} is below 1", where="export_task", fix="use split >= 1")
    split = int(split)
    if hasattr(grid_or_region, "ee_params"):
        pieces: list[dict[str, Any]] = [dict(tile.ee_params())
                                        for tile in _grid_tiles(grid_or_region, split)]
    else:
        bbox = list(grid_or_region)
        if len(bbox) != 4:
            raise ParamsError("region must be a Grid or (west, south, east, north)",
                              where="export_task", fix="pass a Grid or a lon/lat box")
        if scale is None:
            raise ParamsError("a region export needs a scale", where="export_task",
                              fix="pass scale= (metres per pixel)")
        pieces = [{"region": ee.Geometry.Rectangle(box, "EPSG:4326", False), "bbox": box,
                   "scale": float(scale), "crs": crs} for box in _split_bbox(bbox, split)]
    results = []
    policy = dict(CLASS_PYRAMIDING if pyramiding_policy is None else pyramiding_policy)
    bad = sorted(set(policy.values()) - set(PYRAMIDING_POLICIES))
    if bad:
        raise ParamsError(f"unknown pyramiding policies {bad}", where="export_task",
                          fix=f"use one of {', '.join(PYRAMIDING_POLICIES)}")
    for i, piece in enumerate(pieces):
        suffix = "" if split == 1 else f"_{i}"
        name = description + suffix
        kwargs: dict[str, Any] = {"description": name, "maxPixels": int(max_pixels)}
        for key in ("crs", "crsTransform", "dimensions", "region", "scale"):
            if piece.get(key) is not None:
                kwargs[key] = piece[key]
        if to == "asset":
            target = path + suffix
            task = ee.batch.Export.image.toAsset(image, assetId=target,
                                                 pyramidingPolicy=dict(policy),  # ee pops keys
                                                 **kwargs)
        elif to == "drive":
            task = ee.batch.Export.image.toDrive(image, folder=path, fileNamePrefix=name,
                                                 **kwargs)
            target = f"{path}/{name}"
        else:
            bucket, _, prefix = path.removeprefix("gs://").partition("/")
            prefix = (prefix.rstrip("/") or description) + suffix
            task = ee.batch.Export.image.toCloudStorage(image, bucket=bucket,
                                                        fileNamePrefix=prefix, **kwargs)
            target = f"{bucket}/{prefix}"
        summary = {"type": "EXPORT_IMAGE", "destination": to, "description": name,
                   "path": target, "maxPixels": int(max_pixels),
                   **{k: v for k, v in piece.items() if k not in ("region", "bbox")}}
        if "bbox" in piece:
            summary["region"] = piece["bbox"]
        results.append((task, summary))
    return results

