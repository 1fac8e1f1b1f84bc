"""Live Earth Engine: classify server-side, fetch and map the result, start export tasks.

Everything here talks to the service except the pure helpers (:func:`check_interactive`,
:func:`export_path_for`, :func:`tree_chunks`, :func:`landcover_vis`), which
also work in the offline session of :func:`lcgee.gee.session.init_offline`. Every call to the
service goes through :func:`lcgee.gee.retry.call_with_backoff`: HTTP 429 (quota), 5xx and
timeouts are retried with backoff, then reported as one :class:`~lcgee.errors.EarthEngineError`.

* :func:`classify_live` classifies a server-side composite with the exported trees, sent inline
  or read from a table asset (:func:`ensure_trees_table` uploads them once, in chunks that fit
  the 10 MB request limit, under a content-hashed id so a retrained model never reads stale
  trees).
* :func:`check_interactive` tells, before any request, whether a grid fits one interactive
  request, counted with the tiled downloader's rule (:func:`lcgee.gee.download.request_bytes`:
  pixels x bands x (bytes per value + 1 mask byte), at most 48,000,000 bytes and 32,768 px a
  side); :func:`fetch_pixels` fetches a grid's labels as a numpy array, through the tiled
  downloader when one request is not enough, and refuses (pointing to the export task) only
  grids above ``max_pixels``.
* :func:`start_tasks`, :func:`task_table` and :func:`wait_tasks` start export tasks built by
  :func:`lcgee.gee.classify.export_task` and report their ids and states.
* :func:`ee_map` shows the classification with the WorldCover colours in geemap (optional
  extra ``lcgee[maps]``). Map tiles are computed per 256 px tile and zoom level, so the map has
  no size limit; only pixel fetches are checked.

``ee`` and ``geemap`` are imported lazily.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcgee.errors import EarthEngineError, ModelError, ParamsError, require
from lcgee.gee import classify
from lcgee.gee.api import ee as _ee
from lcgee.gee.connection import EarthEngineConnection, live_or
from lcgee.gee.download import MAX_REQUEST_BYTES, MAX_SIDE, download_image
from lcgee.gee.retry import RetryPolicy, call_with_backoff
from lcgee.gee.trees import EEClassifierSpec
from lcgee.gee.worldcover import WORLDCOVER
from lcgee.grid import Grid

__all__ = [
    "INTERACTIVE_MAX_BYTES",
    "INTERACTIVE_MAX_SIDE",
    "FETCH_MAX_PIXELS",
    "DOWNLOAD_MAX_BYTES",
    "DOWNLOAD_MAX_SIDE",
    "TREES_CHUNK_BYTES",
    "WORLDCOVER_COLLECTION",
    "EXPORT_FIX",
    "policy_for",
    "check_interactive",
    "grid_geometry",
    "fetch_pixels",
    "compare_maps",
    "composite_bands",
    "classify_live",
    "tree_chunks",
    "trees_asset_for",
    "ensure_trees_table",
    "export_path_for",
    "start_tasks",
    "task_table",
    "wait_tasks",
    "landcover_vis",
    "ee_map",
]

log = logging.getLogger(__name__)

#: ``computePixels`` / ``getPixels``: uncompressed bytes per request, the tiled downloader's
#: bound (:data:`lcgee.gee.download.MAX_REQUEST_BYTES`; thumbnails are assumed to share it:
#: UNCONFIRMED).
INTERACTIVE_MAX_BYTES = MAX_REQUEST_BYTES
#: :func:`fetch_pixels` refuses grids above this many pixels (export them instead).
FETCH_MAX_PIXELS = 100_000_000
#: ... and pixels per side.
INTERACTIVE_MAX_SIDE = MAX_SIDE
#: ``getDownloadURL``: bytes per request (pass as ``max_bytes`` to :func:`check_interactive`).
DOWNLOAD_MAX_BYTES = 32 * 2**20
#: ... and pixels per side.
DOWNLOAD_MAX_SIDE = 10_000
#: Tree-string bytes per uploaded table chunk (well under the 10 MB request limit).
TREES_CHUNK_BYTES = 4_000_000
#: The reference map shown beside the classification.
WORLDCOVER_COLLECTION = "ESA/WorldCover/v200"

#: How to get pixels of an area too large for an interactive request.
EXPORT_FIX = ("export it instead: set ee.start_export: true (with ee.export_path, and "
              "ee.export_split for very large areas) in the params, or call "
              "lcgee.gee.classify.export_task(...) then lcgee.gee.live.start_tasks(...); for a "
              "quick look fetch a smaller region (Grid.crop_lonlat) or a coarser grid "
              "(Grid.coarsen)")

_SUMMARY_COLUMNS = ("crs", "dimensions", "scale", "maxPixels")
_ACTIVE_STATES = frozenset({"UNSUBMITTED", "READY", "PENDING", "RUNNING", "CANCEL_REQUESTED"})



def policy_for(ee_params: Any) -> RetryPolicy:
    """The retry policy of the params' ``ee`` section (``ee.retries`` attempts per request)."""
    return RetryPolicy(attempts=int(ee_params.retries))


# ----------------------------------------------------------------------------- pixels


_DTYPES = {1: "uint8", 2: "uint16", 4: "float32", 8: "float64"}


def check_interactive(grid: Grid, *, n_bands: int = 1, bytes_per_pixel: int = 1,
                      max_bytes: int = INTERACTIVE_MAX_BYTES,
                      max_side: int = INTERACTIVE_MAX_SIDE) -> int:
    """Raise when one interactive request for ``grid`` would exceed Earth Engine's limits.

    The size is counted as the tiled downloader counts it
    (:func:`lcgee.gee.download.request_bytes`): pixels x bands x (``bytes_per_pixel`` + one
    byte of mask), the rule the service applies (google/Xee pull request 210).

    Args:
        grid: the pixel grid to fetch.
        n_bands: bands fetched.
        bytes_per_pixel: bytes per band value (1 for the uint8 ``landcover`` band).
        max_bytes: request size limit (default ``computePixels``; :data:`DOWNLOAD_MAX_BYTES`
            for ``getDownloadURL``).
        max_side: pixels per side limit (default ``computePixels``; :data:`DOWNLOAD_MAX_SIDE`).

    Returns:
        The size of the request in bytes, mask bytes included.

    Raises:
        EarthEngineError: naming the pixel count and size, and pointing to the tiled download
            (:func:`fetch_pixels`) and the export task.
    """
    pixels = grid.width * grid.height
    size = pixels * int(n_bands) * (int(bytes_per_pixel) + 1)
    if size <= max_bytes and max(grid.shape) <= max_side:
        return size
    raise EarthEngineError(
        f"{grid.width} x {grid.height} px ({pixels:,} pixels, {size / 2**20:,.1f} MB for "
        f"{n_bands} band(s) of {bytes_per_pixel} byte(s) plus 1 mask byte) is too large for one "
        f"interactive request (Earth Engine allows {max_bytes / 2**20:.3g} MB and "
        f"{max_side:,} px a side)",
        where="interactive Earth Engine request",
        fix="fetch it in tiles with lcgee.gee.live.fetch_pixels (tiled downloader), or "
            + EXPORT_FIX)


def grid_geometry(grid: Grid) -> Any:
    """The grid's bounds as a planar ``ee.Geometry.Rectangle`` in the grid's CRS."""
    return _ee().Geometry.Rectangle(list(grid.bounds), grid.crs, False)


def fetch_pixels(image: Any, grid: Grid, *, band: str = classify.OUTPUT_BAND,
                 bytes_per_pixel: int = 1, fill: float = 0,
                 policy: RetryPolicy | None = None, cache_dir: str | Path | None = None,
                 connection: EarthEngineConnection | None = None, workers: int = 8,
                 max_pixels: int = FETCH_MAX_PIXELS, progress: bool = False) -> np.ndarray:
    """One band of ``image`` on exactly ``grid`` (``computePixels``), masked pixels = ``fill``.

    One request when it fits (:func:`check_interactive`'s rule), else tiles through
    :func:`lcgee.gee.download.download_image` (same size rule, at most ``workers`` requests in
    flight, tiles cached under ``cache_dir``; a temporary folder when None). Grids above
    ``max_pixels`` are refused before any request. 429/5xx are retried.
    """
    pixels = grid.width * grid.height
    if pixels > max_pixels:
        raise EarthEngineError(
            f"{grid.width} x {grid.height} px ({pixels:,} pixels) is more than fetch_pixels "
            f"fetches interactively ({max_pixels:,} pixels)",
            where="interactive Earth Engine request", fix=EXPORT_FIX)
    dtype = _DTYPES.get(int(bytes_per_pixel))
    if dtype is None:
        raise ParamsError(f"bytes_per_pixel={bytes_per_pixel} is not 1, 2, 4 or 8",
                          where="fetch_pixels", fix="give the band's value size in bytes")
    expression = image.select([band]).unmask(fill)
    try:
        if cache_dir is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="lcgee-fetch-") as tmp:
                out = download_image(expression, grid, cache_dir=tmp, n_bands=1, dtype=dtype,
                                     band_ids=[band], connection=connection, workers=workers,
                                     tile=None, policy=policy, progress=progress,
                                     description=f"fetching {band!r}")
        else:
            out = download_image(expression, grid, cache_dir=cache_dir, n_bands=1, dtype=dtype,
                                 band_ids=[band], connection=connection, workers=workers, tile=None,
                                 policy=policy, progress=progress,
                                 description=f"fetching {band!r}")
    except EarthEngineError as exc:
        raise EarthEngineError(exc.what, where=exc.where,
                               fix=f"{exc.fix}; if the computation is too large, {EXPORT_FIX}"
                               ) from exc
    return out[0]


def compare_maps(ee_map: np.ndarray, local_map: np.ndarray) -> dict[str, Any]:
    """Agreement of two class maps over the pixels the local map classified (0 = nodata)."""
    valid = np.asarray(local_map) > 0
    ee_map = np.asarray(ee_map)
    n = int(valid.sum())
    same = int((ee_map[valid] == np.asarray(local_map)[valid]).sum())
    return {"pixels": n, "agree": same, "agreement": same / n if n else float("nan"),
            "ee_nodata": int((ee_map[valid] == 0).sum())}


# ----------------------------------------------------------------------------- classify


def composite_bands(params: Any, spec: EEClassifierSpec) -> list[str]:
    """The bands :func:`lcgee.ee_stage.composite_for_params` gives for this run.

    ``features.bands`` (the indices are added by :func:`classify.feature_image`), or, for the
    ``monthly`` method, the whole feature stack (``<period label>_<band or index>``, e.g.
    ``m202104_NDVI`` or ``s2022JJA_B04``) as the model uses it.
    """
    if params.composite.method == "monthly":
        return list(spec.feature_names)
    return list(params.features.bands)


def classify_live(spec: EEClassifierSpec, composite_image: Any, grid: Grid | None = None, *,
                  mode: str | None = None, trees_table: Any = None,
                  available_bands: Sequence[str] | None = None) -> Any:
    """The composite classified server-side: band ``landcover`` (uint8), clipped to ``grid``.

    Args:
        spec: the exported trees.
        composite_image: ``ee.Image`` of reflectance 0-1 with lcgee band names (``B02`` ...).
        grid: the area to clip to (None: unclipped).
        mode: ``RAW_REGRESSION`` or ``REGRESSION`` (default ``spec.output_mode``).
        trees_table: an ``ee.FeatureCollection`` (or table asset id) of the trees, from
            :func:`ensure_trees_table`; required when :func:`classify.payload_route` says
            ``"table-asset"``.
        available_bands: the composite's bands (default: the Sentinel-2 bands).

    Raises:
        ModelError: the trees are too large to travel inline and no ``trees_table`` is given,
            or a feature cannot be computed from the composite.
    """
    mode = mode or spec.output_mode
    features = classify.feature_image(composite_image, spec.feature_names,
                                      available_bands=available_bands)
    if trees_table is None:
        if classify.payload_route(spec) != "inline":
            raise ModelError(
                f"the trees ({spec.payload_bytes() / 1e6:.1f} MB) are too large to send inline "
                "to Earth Engine", where="classify_live",
                fix="upload them with lcgee.gee.live.ensure_trees_table(spec, asset_id) and pass "
                    "trees_table=")
        image = classify.classify_image(features, spec, mode=mode)
    else:
        scores = [classify.class_score(features, classify.classifier_from_table(trees_table, k, mode),
                                       len(trees), mode, f"score_{k}")
                  for k, trees in enumerate(spec.trees)]
        image = classify.scores_to_labels(scores, spec.class_values)
    return image.clip(grid_geometry(grid)) if grid is not None else image


# ----------------------------------------------------------------------------- trees as a table


def tree_chunks(spec: EEClassifierSpec, *, chunk_bytes: int = TREES_CHUNK_BYTES
                ) -> list[list[tuple[int, int, str]]]:
    """The trees as ``(class, index, tree)`` rows, packed into chunks of about ``chunk_bytes``."""
    chunks: list[list[tuple[int, int, str]]] = [[]]
    size = 0
    for k, trees in enumerate(spec.trees):
        for i, tree in enumerate(trees):
            n = len(tree.encode()) + 64
            if chunks[-1] and size + n > chunk_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append((k, i, tree))
            size += n
    return chunks


def trees_asset_for(ee_params: Any, run_name: str) -> str:
    """Default table asset id for the trees: ``<export_path>_trees`` or a project root asset."""
    if ee_params.export_to == "asset" and ee_params.export_path:
        return f"{ee_params.export_path}_trees"
    if not ee_params.project:
        raise ParamsError("no Cloud project to store the trees in", where="ee.project",
                          fix="set ee.project (or ee.export_path to an asset id)")
    return f"projects/{ee_params.project}/assets/lcgee_{run_name}_trees"


def _chunk_ids(spec: EEClassifierSpec, asset_id: str, n: int) -> list[str]:
    digest = hashlib.sha256(spec.to_json().encode()).hexdigest()[:10]
    return [f"{asset_id}_{digest}_{i}" for i in range(n)]


def _existing_assets(asset_ids: Iterable[str], policy: RetryPolicy | None) -> set[str]:
    ee = _ee()
    found: set[str] = set()
    for parent in sorted({a.rsplit("/", 1)[0] for a in asset_ids}):
        listing = call_with_backoff(ee.data.listAssets, {"parent": parent}, policy=policy,
                                    what=f"listing assets in {parent}")
        for asset in listing.get("assets", []):
            name = asset.get("id") or asset.get("name") or ""
            found.add(f"{parent}/{name.rsplit('/', 1)[-1]}")
    return found


def ensure_trees_table(spec: EEClassifierSpec, asset_id: str, *,
                       policy: RetryPolicy | None = None, chunk_bytes: int = TREES_CHUNK_BYTES,
                       timeout: float = 3600.0, poll: float = 20.0) -> Any:
    """The trees as one ``ee.FeatureCollection``, uploaded first if needed.

    The trees go to table assets ``<asset_id>_<hash>_<i>`` (``Export.table.toAsset``, one per
    chunk so that no request exceeds Earth Engine's 10 MB limit; ``hash`` identifies the model).
    Chunks already present are reused; missing ones are uploaded and waited for (``timeout``
    seconds). Each feature is a :func:`lcgee.gee.classify.tree_feature` (dummy point geometry,
    ``tree`` with encoded line breaks, ``class``, ``index``), as
    :func:`lcgee.gee.classify.classifier_from_table` reads them.
    """
    ee = _ee()
    chunks = tree_chunks(spec, chunk_bytes=chunk_bytes)
    ids = _chunk_ids(spec, asset_id, len(chunks))
    have = _existing_assets(ids, policy)
    todo = []
    for i, (rows, target) in enumerate(zip(chunks, ids)):
        if target in have:
            continue
        fc = ee.FeatureCollection([classify.tree_feature(t, k, j) for k, j, t in rows])
        task = ee.batch.Export.table.toAsset(collection=fc, assetId=target,
                                             description=f"lcgee_trees_{i}")
        todo.append((task, {"type": "EXPORT_TABLE", "destination": "asset",
                            "description": f"lcgee_trees_{i}", "path": target}))
    if todo:
        start_tasks(todo, policy=policy)
        table = wait_tasks(todo, timeout=timeout, poll=poll, policy=policy)
        failed = [f"{r.description}: {r.state} {r.error or ''}".strip()
                  for r in table.itertuples() if r.state != "COMPLETED"]
        if failed:
            raise EarthEngineError(f"uploading the trees failed ({'; '.join(failed)})",
                                   where=asset_id,
                                   fix="check that the asset folder exists and the project may "
                                       "write to it, then rerun (uploaded chunks are reused)")
    return ee.FeatureCollection([ee.FeatureCollection(a) for a in ids]).flatten()


# ----------------------------------------------------------------------------- tasks


def export_path_for(ee_params: Any, run_name: str) -> str:
    """The export destination for ``classify.export_task``: ``ee.export_path`` or a default.

    Defaults: asset ``projects/<ee.project>/assets/lcgee_<run_name>``, Drive folder ``lcgee``.
    Cloud Storage needs ``ee.export_path`` (``gs://bucket/prefix`` or ``bucket/prefix``).
    """
    path, to = ee_params.export_path, ee_params.export_to
    if to == "cloud-storage":
        if not path:
            raise ParamsError("a Cloud Storage export needs a bucket", where="ee.export_path",
                              fix="set ee.export_path: gs://bucket/prefix")
        return path.removeprefix("gs://")
    if path:
        return path
    if to == "drive":
        return "lcgee"
    if not ee_params.project:
        raise ParamsError("no Cloud project to export the asset to", where="ee.project",
                          fix="set ee.project, or ee.export_path to an asset id")
    return f"projects/{ee_params.project}/assets/lcgee_{run_name}"


def _pairs(tasks: Iterable[Any]) -> list[tuple[Any, dict[str, Any]]]:
    return [t if isinstance(t, tuple) else (t, {}) for t in tasks]


def _description(task: Any, summary: dict[str, Any]) -> str:
    return str(summary.get("description") or (getattr(task, "config", None) or {}).get(
        "description") or "task")


def _check_max_pixels(summary: dict[str, Any], name: str) -> None:
    dims, limit = summary.get("dimensions"), summary.get("maxPixels")
    if not dims or not limit:
        return
    w, h = (int(v) for v in str(dims).split("x"))
    if w * h > int(limit):
        raise ParamsError(f"export task {name!r} covers {w * h:,} pixels, more than maxPixels "
                          f"{int(limit):,}", where="ee.max_pixels",
                          fix="raise ee.max_pixels or split the export (ee.export_split)")


def start_tasks(tasks: Iterable[Any], *, policy: RetryPolicy | None = None,
                connection: EarthEngineConnection | None = None) -> pd.DataFrame:
    """Start ``ee.batch.Task`` objects (or ``(task, summary)`` pairs from ``export_task``).

    Tasks that already have an id are not started again. 429/5xx are retried (the task's
    request id is kept, so a retried start cannot create a duplicate task).

    Returns:
        :func:`task_table` of all the tasks.

    Raises:
        ParamsError: a task covers more pixels than its ``maxPixels`` (checked before starting).
        EarthEngineError: a task could not be started; the message lists those already started.
    """
    service = live_or(connection)
    pairs = _pairs(tasks)
    for task, summary in pairs:
        _check_max_pixels(summary, _description(task, summary))
    for n, (task, summary) in enumerate(pairs):
        name = _description(task, summary)
        if getattr(task, "id", None):
            continue
        try:
            call_with_backoff(service.start_task, task, policy=policy,
                              what=f"starting task {name!r}")
        except EarthEngineError as exc:
            done = [f"{_description(t, s)} ({t.id})" for t, s in pairs[:n] if getattr(t, "id", None)]
            raise EarthEngineError(f"{exc.what}; already started: {', '.join(done) or 'none'}",
                                   where=f"task {name!r}", fix=exc.fix) from exc
        log.info("started %s as %s", name, task.id)
    return task_table(pairs, policy=policy, connection=service)


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def task_table(tasks: Iterable[Any], *, policy: RetryPolicy | None = None,
               connection: EarthEngineConnection | None = None) -> pd.DataFrame:
    """Description, task id, state (fresh from the service), path and error of each task.

    For ``(task, summary)`` pairs from :func:`lcgee.gee.classify.export_task` the table also
    shows the export's ``crs``, ``dimensions``, ``scale`` and ``maxPixels``.
    """
    service = live_or(connection)
    pairs = _pairs(tasks)
    extra = [k for k in _SUMMARY_COLUMNS if any(k in s for _, s in pairs)]
    rows = []
    for task, summary in pairs:
        status: dict[str, Any] = {"state": getattr(task, "state", "UNSUBMITTED")}
        if getattr(task, "id", None):
            status = call_with_backoff(service.task_status, task, policy=policy,
                                       what=f"reading the status of task {task.id}")
        rows.append({"description": _description(task, summary),
                     "task_id": getattr(task, "id", None), "state": _state(status.get("state")),
                     "path": summary.get("path"), "error": status.get("error_message"),
                     **{k: summary.get(k) for k in extra}})
    return pd.DataFrame(rows, columns=["description", "task_id", "state", "path", "error", *extra])


def wait_tasks(tasks: Iterable[Any], *, timeout: float = 3600.0, poll: float = 20.0,
               policy: RetryPolicy | None = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic,
               connection: EarthEngineConnection | None = None) -> pd.DataFrame:
    """Poll :func:`task_table` until no task is active; raise after ``timeout`` seconds."""
    pairs = _pairs(tasks)
    unstarted = [_description(t, s) for t, s in pairs if not getattr(t, "id", None)]
    if unstarted:
        raise EarthEngineError(f"tasks {unstarted} were never started", where="wait_tasks",
                               fix="start them with start_tasks(...) first")
    end = clock() + timeout
    while True:
        table = task_table(pairs, policy=policy, connection=connection)
        running = table[table["state"].isin(_ACTIVE_STATES)]
        if running.empty:
            return table
        if clock() >= end:
            raise EarthEngineError(
                f"tasks {list(running['description'])} still {sorted(set(running['state']))} "
                f"after {timeout:.0f} s", where="Earth Engine tasks",
                fix="they keep running server-side: follow them in the Code Editor's Tasks tab "
                    "or with task_table(...), and rerun when they are done")
        sleep(poll)


# ----------------------------------------------------------------------------- map


def landcover_vis(image: Any, band: str = classify.OUTPUT_BAND) -> tuple[Any, dict[str, Any]]:
    """``(image, vis_params)`` drawing WorldCover codes in their official colours (0 hidden)."""
    codes = list(WORLDCOVER)
    palette = [WORLDCOVER[c][1].lstrip("#") for c in codes]
    return (image.select([band]).remap(codes, list(range(len(codes)))),
            {"min": 0, "max": len(codes) - 1, "palette": palette})


def _zoom(grid: Grid) -> int:
    west, south, east, north = grid.lonlat_bbox
    span = max(east - west, north - south, 1e-6)
    return int(min(18, max(1, math.floor(math.log2(360.0 / span)))))


def ee_map(classified: Any, grid: Grid, *, reference: bool = True, zoom: int | None = None,
           height: str = "600px") -> Any:
    """A geemap map of the classification over the AOI, optionally with ESA WorldCover.

    Args:
        classified: the ``landcover`` image (e.g. from :func:`classify_live`).
        grid: the AOI (centres the map, outlined on it).
        reference: add ESA WorldCover v200 as a second layer (hidden at first).
        zoom: initial zoom (default: fits the AOI).
        height: map height (CSS).

    Raises:
        MissingDependencyError: geemap is not installed (``pip install 'lcgee[maps]'``).
    """
    geemap = require("geemap", "maps")
    ee = _ee()
    west, south, east, north = grid.lonlat_bbox
    m = geemap.Map(center=[(south + north) / 2, (west + east) / 2], zoom=zoom or _zoom(grid),
                   height=height, ee_initialize=False)
    aoi = grid_geometry(grid)
    if reference:
        worldcover = ee.ImageCollection(WORLDCOVER_COLLECTION).first().select(["Map"], ["landcover"])
        m.add_layer(*landcover_vis(worldcover.clip(aoi)), "ESA WorldCover v200 (reference)", False)
    m.add_layer(*landcover_vis(classified), "lcgee LightGBM, classified in Earth Engine")
    m.add_layer(ee.FeatureCollection([ee.Feature(aoi)]).style(color="000000",
                                                              fillColor="00000000", width=2),
                {}, "AOI")
    m.add_legend(title="ESA WorldCover classes",
                 legend_dict={f"{c} {name}": colour for c, (name, colour) in WORLDCOVER.items()})
    return m
