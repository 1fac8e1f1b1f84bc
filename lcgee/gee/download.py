"""Tiled, resumable download of an Earth Engine image onto lcgee's grid (``computePixels``).

The image is requested tile by tile with ``ee.data.computePixels`` on pixel windows of the run
:class:`~lcgee.grid.Grid` (same CRS, same affine transform, so every pixel lands where the
local stages expect it; Earth Engine resamples to a requested grid by nearest neighbour unless
the expression itself calls ``resample()``). Each request stays within the service limits:

* at most :data:`MAX_REQUEST_BYTES` of uncompressed data, counted as Earth Engine counts it:
  pixels x bands x (bytes of the data type + 1 byte of mask). The service's own bound is
  50,331,648 bytes (48 MiB: "Total request size (...) must be less than or equal to 50331648
  bytes", google/Xee#50); lcgee reads "48 MB" the stricter way, 48,000,000 bytes;
* at most :data:`MAX_SIDE` pixels a side and :data:`MAX_BANDS` bands.

:func:`plan_tiles` sizes the tiles to fit and :func:`pixel_request` refuses a request over the
limits, so an oversized request is never sent. :func:`download_image` runs the requests on at
most ``workers`` threads (Earth Engine allows about 40 concurrent requests per project, shared
with every other job), each through :func:`~lcgee.gee.retry.call_with_backoff` (429, 5xx and
timeouts retried with jittered exponential waits), and writes every finished tile atomically
to ``cache_dir/<key>/`` as ``.npy``; a rerun after an interruption loads those tiles and asks
only for the missing ones. ``<key>`` hashes the serialised expression, the grid, the data type
and the bands, so a changed request never reuses stale tiles.

Requests go through an :class:`~lcgee.gee.connection.EarthEngineConnection` (the live service by
default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from lcgee.errors import DataError, EarthEngineError, ParamsError
from lcgee.files import atomic_path, write_json
from lcgee.gee.connection import EarthEngineConnection, live_or
from lcgee.gee.retry import RetryPolicy, call_with_backoff
from lcgee.grid import Grid

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_SIDE",
    "MAX_BANDS",
    "DEFAULT_TILE",
    "request_bytes",
    "plan_tiles",
    "pixel_request",
    "pixel_grid",
    "AFFINE_FIELDS",
    "cache_key",
    "download_image",
]

log = logging.getLogger(__name__)

#: Bytes one computePixels request may carry (the service allows 50,331,648; see the module doc).
MAX_REQUEST_BYTES = 48_000_000
#: Pixels a side of one request.
MAX_SIDE = 32_768
#: Bands of one request.
MAX_BANDS = 1024
#: Default tile side of :func:`download_image` in pixels: small enough that a costly expression
#: finishes within Earth Engine's interactive deadline and a retry refetches little, large
#: enough that per-request latency does not dominate.
DEFAULT_TILE = 1024

Window = tuple[int, int, int, int]  # row, col, height, width
Compute = Callable[[dict[str, Any]], Any]

_CRS_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:\d+$")
#: Field names of a PixelGrid ``affineTransform``, in Grid.transform order.
AFFINE_FIELDS = ("scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY")


def request_bytes(height: int, width: int, n_bands: int, dtype: DTypeLike) -> int:
    """Size of a request as Earth Engine counts it: pixels x bands x (item size + 1 mask byte)."""
    return height * width * n_bands * (np.dtype(dtype).itemsize + 1)


def _check_limits(max_bytes: int, max_side: int) -> None:
    if not 0 < max_bytes <= MAX_REQUEST_BYTES or not 0 < max_side <= MAX_SIDE:
        raise ParamsError(f"max_bytes={max_bytes} / max_side={max_side} exceed Earth Engine's limits",
                          where="Earth Engine download",
                          fix=f"use at most {MAX_REQUEST_BYTES} bytes and {MAX_SIDE} px a side")


def _check_bands(n_bands: int) -> None:
    if not 1 <= n_bands <= MAX_BANDS:
        raise ParamsError(f"{n_bands} bands cannot be requested at once", where="Earth Engine download",
                          fix=f"download at most {MAX_BANDS} bands per call (select band groups)")


def _windows(grid: Grid, n_bands: int, dtype: DTypeLike, tile: int | None, max_bytes: int,
             max_side: int) -> list[Window]:
    """Row-major windows covering ``grid`` once, each within the limits, split evenly per axis."""
    _check_limits(max_bytes, max_side)
    _check_bands(n_bands)
    if tile is not None and tile < 1:
        raise ParamsError(f"tile={tile} is not a positive number of pixels", where="Earth Engine download")
    max_px = max_bytes // request_bytes(1, 1, n_bands, dtype)
    cap = min(max_side, tile or max_side)
    rows = math.ceil(grid.height / min(cap, math.isqrt(max_px)))
    tile_h = math.ceil(grid.height / rows)
    cols = math.ceil(grid.width / min(cap, max_px // tile_h))
    tile_w = math.ceil(grid.width / cols)
    return [(r, c, min(tile_h, grid.height - r), min(tile_w, grid.width - c))
            for r in range(0, grid.height, tile_h) for c in range(0, grid.width, tile_w)]


def plan_tiles(grid: Grid, *, n_bands: int, dtype: DTypeLike, tile: int | None = None,
               max_bytes: int = MAX_REQUEST_BYTES, max_side: int = MAX_SIDE) -> list[Grid]:
    """Tiles (pixel windows of ``grid``, row-major) that cover it exactly once within the limits.

    Tiles are as square as the byte limit allows, at most ``tile`` pixels a side when given, and
    split each axis evenly (no sliver at the edge).

    Args:
        grid: the grid to download onto.
        n_bands: bands per request (1 .. :data:`MAX_BANDS`).
        dtype: data type of the bands as delivered (e.g. ``"uint8"``).
        tile: largest tile side in pixels, or None for as large as the limits allow.
        max_bytes: request size limit (at most :data:`MAX_REQUEST_BYTES`).
        max_side: pixels a side limit (at most :data:`MAX_SIDE`).

    Returns:
        The tile grids (same CRS and resolution, pixel-aligned with ``grid``).
    """
    return [grid.window(*w) for w in _windows(grid, n_bands, dtype, tile, max_bytes, max_side)]


def pixel_request(expression: Any, tile: Grid, *, n_bands: int, dtype: DTypeLike,
                  band_ids: Sequence[str] | None = None, max_bytes: int = MAX_REQUEST_BYTES,
                  max_side: int = MAX_SIDE) -> dict[str, Any]:
    """The ``ee.data.computePixels`` parameters of one tile (NUMPY_NDARRAY on the tile's grid).

    Raises:
        ParamsError: the tile is over the request limits (such a request is never built).
    """
    _check_limits(max_bytes, max_side)
    if band_ids is not None and len(band_ids) != n_bands:
        raise ParamsError(f"{len(band_ids)} band ids given for n_bands={n_bands}",
                          where="Earth Engine download", fix="give one id per band")
    _check_bands(n_bands)
    size = request_bytes(tile.height, tile.width, n_bands, dtype)
    if max(tile.shape) > max_side or size > max_bytes:
        raise ParamsError(f"a {tile.height} x {tile.width} px tile of {n_bands} {np.dtype(dtype)} "
                          f"band(s) is {size} bytes, over the limit of {max_bytes} bytes / "
                          f"{max_side} px a side", where="Earth Engine request",
                          fix="split the grid with plan_tiles() or pass a smaller tile")
    params: dict[str, Any] = {"expression": expression, "fileFormat": "NUMPY_NDARRAY",
                              "grid": pixel_grid(tile)}
    if band_ids is not None:
        params["bandIds"] = list(band_ids)
    return params


def pixel_grid(grid: Grid) -> dict[str, Any]:
    """``grid`` as the Cloud API ``PixelGrid`` (``dimensions``, ``affineTransform``, CRS)."""
    crs_field = "crsCode" if _CRS_CODE.match(grid.crs) else "crsWkt"
    return {"dimensions": {"width": grid.width, "height": grid.height},
            "affineTransform": dict(zip(AFFINE_FIELDS, (float(v) for v in grid.transform),
                                        strict=True)),
            crs_field: grid.crs}


def _serialize(expression: Any) -> str:
    if hasattr(expression, "serialize"):
        return str(expression.serialize())
    try:
        return json.dumps(expression, sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise ParamsError(f"cannot key the download cache on a {type(expression).__name__} ({exc})",
                          where="Earth Engine download",
                          fix="pass an ee object (with .serialize()) or JSON-serialisable data") from exc


def cache_key(expression: Any, grid: Grid, *, dtype: DTypeLike, n_bands: int,
              band_ids: Sequence[str] | None = None) -> str:
    """16 hex digits naming the tile folder of one download (expression, grid, dtype, bands)."""
    data = {"expression": _serialize(expression), "grid": grid.to_dict(),
            "dtype": np.dtype(dtype).str, "n_bands": n_bands,
            "band_ids": list(band_ids) if band_ids is not None else None, "version": 1}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _to_bands(response: Any, n_bands: int, dtype: np.dtype, shape: tuple[int, int],
              where: str) -> np.ndarray:
    """A computePixels answer as a ``(bands, height, width)`` array of ``dtype``.

    Accepts what ``NUMPY_NDARRAY`` gives (a structured ``(height, width)`` array, one field per
    band) and plain ``(height, width)`` (one band) or ``(height, width, bands)`` arrays.
    """
    problem = None
    layers: list[np.ndarray] = []
    if not isinstance(response, np.ndarray):
        problem = f"a {type(response).__name__}, not a numpy array"
    elif response.dtype.names:
        layers = [response[name] for name in response.dtype.names]
    elif response.ndim in (2, 3):
        layers = [response] if response.ndim == 2 else list(np.moveaxis(response, -1, 0))
    else:
        problem = f"an array of shape {response.shape}"
    if problem is None and (len(layers) != n_bands or any(a.shape != shape for a in layers)):
        got = layers[0].shape if layers else ()
        problem = f"{len(layers)} band(s) of shape {got}, expected {n_bands} of {shape}"
    if problem is None:
        unsafe = [str(a.dtype) for a in layers if not np.can_cast(a.dtype, dtype, casting="safe")]
        problem = f"{unsafe[0]} pixels, which do not fit {dtype}" if unsafe else None
    if problem is not None:
        raise DataError(f"Earth Engine answered {problem}", where=where,
                        fix="request fileFormat NUMPY_NDARRAY and give n_bands and a dtype the "
                            "expression's bands cast to safely (e.g. call .toUint8() on it)")
    return np.stack(layers).astype(dtype, copy=False)


def _tile_path(folder: Path, window: Window) -> Path:
    r, c, h, w = window
    return folder / f"r{r:06d}_c{c:06d}_{h}x{w}.npy"


def _load_tile(path: Path, shape: tuple[int, int, int], dtype: np.dtype) -> np.ndarray | None:
    """A cached tile, or None when it is missing or unusable (then it is fetched again)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable cached tile %s (%s)", path, exc)
        return None
    if arr.shape != shape or arr.dtype != dtype:
        log.warning("ignoring cached tile %s: %s %s, expected %s %s", path, arr.shape, arr.dtype,
                    shape, dtype)
        return None
    return arr


def _save_tile(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def download_image(expression: Any, grid: Grid, *, cache_dir: str | Path, n_bands: int, dtype: DTypeLike,
                   band_ids: Sequence[str] | None = None,
                   connection: EarthEngineConnection | None = None,
                   workers: int = 8, tile: int | None = DEFAULT_TILE, policy: RetryPolicy | None = None,
                   progress: bool = True, description: str = "Earth Engine download") -> np.ndarray:
    """Download ``expression`` onto ``grid`` in tiles, resuming from tiles cached on disk.

    Args:
        expression: the image to compute (an ``ee.Image``; anything ``connection`` accepts). A
            NUMPY_NDARRAY answer carries no mask: unmask the image with a nodata value (e.g.
            ``.unmask(255)``) to keep masked pixels apart, as Xee does before it requests.
        grid: the grid to download onto (CRS, transform and shape are requested exactly).
        cache_dir: parent folder of the tile cache; tiles go to ``cache_dir/<cache_key>/``
            and stay there (delete the folder when the result is saved elsewhere).
        n_bands: bands of the image (or of ``band_ids``).
        dtype: data type of the result; every band Earth Engine returns must cast to it safely.
        band_ids: bands to request (``bandIds``), or None for all bands of the expression.
        connection: answers ``compute_pixels`` with one :func:`pixel_request` dict per tile;
            None: the live service (:class:`~lcgee.gee.connection.LiveEarthEngine`). The demo
            and tests pass a stand-in.
        workers: requests in flight at most (Earth Engine allows ~40 per project in all).
        tile: largest tile side in pixels (None: as large as the request limits allow).
        policy: retry policy of each request (default :class:`RetryPolicy`).
        progress: show a tqdm progress bar (tiles).
        description: names the download in the progress bar, logs and errors.

    Returns:
        A ``(bands, height, width)`` array of ``dtype`` on ``grid``.

    Raises:
        EarthEngineError: a request was refused or kept failing; the message says how many tiles
            are cached (a rerun with the same arguments resumes from them).
        DataError: an answer had the wrong shape, band count or data type.
        ParamsError: invalid arguments (nothing is requested).
    """
    dtype = np.dtype(dtype)
    if workers < 1:
        raise ParamsError(f"workers={workers} must be at least 1", where="Earth Engine download")
    windows = _windows(grid, n_bands, dtype, tile, MAX_REQUEST_BYTES, MAX_SIDE)
    requests = {w: pixel_request(expression, grid.window(*w), n_bands=n_bands, dtype=dtype,
                                 band_ids=band_ids) for w in windows}
    folder = Path(cache_dir) / cache_key(expression, grid, dtype=dtype, n_bands=n_bands,
                                         band_ids=band_ids)
    write_json(folder / "request.json", {"description": description, "grid": grid.to_dict(),
                                         "dtype": dtype.str, "n_bands": n_bands,
                                         "band_ids": None if band_ids is None else list(band_ids)})
    out = np.empty((n_bands, *grid.shape), dtype)
    todo = []
    for r, c, h, w in windows:
        cached = _load_tile(_tile_path(folder, (r, c, h, w)), (n_bands, h, w), dtype)
        if cached is None:
            todo.append((r, c, h, w))
        else:
            out[:, r:r + h, c:c + w] = cached
    log.info("%s: %d tiles, %d cached in %s", description, len(windows), len(windows) - len(todo), folder)
    if todo:
        _fetch_all(todo, requests, out, folder, live_or(connection).compute_pixels,
                   workers=workers, policy=policy, progress=progress, description=description,
                   n_total=len(windows))
    return out


def _fetch_all(todo: list[Window], requests: dict[Window, dict[str, Any]], out: np.ndarray,
               folder: Path, compute: Compute, *, workers: int, policy: RetryPolicy | None,
               progress: bool, description: str, n_total: int) -> None:
    """Fetch the missing tiles on ``workers`` threads into ``out`` and the cache."""
    policy = policy or RetryPolicy()
    retries = [0]
    lock = threading.Lock()

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        with lock:
            retries[0] += 1

    stop = threading.Event()  # set by the first failure: no new request starts after it

    def fetch(window: Window) -> Window | None:
        if stop.is_set():
            return None
        r, c, h, w = window
        where = f"{description}, tile rows {r}-{r + h} cols {c}-{c + w}"
        try:
            response = call_with_backoff(compute, requests[window], what=where, policy=policy,
                                         on_retry=on_retry)
            arr = _to_bands(response, out.shape[0], out.dtype, (h, w), where)
        except BaseException:
            stop.set()
            raise
        _save_tile(_tile_path(folder, window), arr)
        out[:, r:r + h, c:c + w] = arr  # windows are disjoint: no lock needed
        return window

    bar: Any = None
    if progress:
        from tqdm.std import tqdm

        bar = tqdm(total=n_total, initial=n_total - len(todo), desc=description, unit="tile")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lcgee-download")
    pending: set[Future[Window | None]] = {pool.submit(fetch, w) for w in todo}
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # raises the first failure
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(retries=retries[0], refresh=False)
    except EarthEngineError as exc:
        pool.shutdown(wait=True, cancel_futures=True)  # running tiles finish and are cached
        n_cached = sum(_tile_path(folder, w).is_file() for w in requests)
        raise EarthEngineError(
            f"{exc.what}; {n_cached} of {n_total} tiles are cached in {folder}",
            where=exc.where,
            fix=(exc.fix.rstrip(".") + "; " if exc.fix else "")
            + "rerunning with the same arguments resumes from the cached tiles") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
