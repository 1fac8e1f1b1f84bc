"""Cloud-free composites of a Sentinel-2 time stack: median, best pixel and monthly median.

Input convention: an ``xarray.DataArray`` with dims ``("time", "band", "y", "x")`` (any order
of exactly these dims is accepted and transposed), float32 surface reflectance, NaN where an
observation is invalid (nodata, or masked as cloud/shadow beforehand). It is usually
Dask-backed with spatial tiles of 512-1024 px. Every function here is lazy on Dask input and
works tile by tile (one task per chunk, running a single-threaded GIL-free numba kernel, so Dask
supplies the parallelism), so memory stays bounded by a few tiles. On NumPy input the kernels
run at once, multi-threaded.

*Time must be a single chunk* for a per-pixel reduction over time; a stack whose time axis is
split into several chunks is rechunked (``stack.chunk(time=-1)``) automatically. That is cheap
when the spatial tiles are small, but a stack loaded one scene per chunk with huge spatial
tiles would make each task hold the whole time series of a huge tile: load with spatial tiles
of 512-1024 px.

Outputs keep the non-time coordinates and the attrs of the stack, are float32 and hold NaN
where no valid observation exists (never an error).

Definitions:

* an *observation* (one time at one pixel) is **valid** when all its bands are non-NaN;
  :func:`valid_count` counts valid observations.
* :func:`median` and :func:`monthly_median` take the median of each band separately over
  the times where *that band* is non-NaN. With whole-observation masks (the usual cloud mask)
  this is the same set of times as the valid observations.
* :func:`best_pixel` takes all bands from the single valid observation with the lowest score
  (a NaN score makes an observation invalid too).

The median kernel gives values bit-identical to ``numpy.nanmedian(a, axis=0)`` on float32
(checked on both of numpy's code paths, below and above 600 times): the two middle values are
added in float32, with numpy's ``+0.0`` reduction start, then halved in float32; an odd count
uses the middle value twice, exactly as numpy does (so ``3e38`` alone gives ``inf``, like
numpy). Values are sorted per pixel by a sorting network applied across a tile of pixels.
"""

from __future__ import annotations

from functools import lru_cache, partial
from itertools import pairwise
from typing import Any, Literal

import dask.array as da
import numba
import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from lcgee.errors import DataError, ParamsError

__all__ = [
    "METHODS",
    "Method",
    "best_pixel",
    "period_label",
    "SEASONS",
    "sorted_median",
    "composite",
    "median",
    "monthly_median",
    "nanmedian_time",
    "period_count",
    "period_labels",
    "period_median",
    "fill_empty",
    "valid_count",
]

Method = Literal["median", "best", "monthly"]
METHODS: tuple[str, ...] = ("median", "best", "monthly")
DIMS = ("time", "band", "y", "x")

_TILE_BYTES = 1 << 17  # a tile of (times, pixels) float32 sorted in cache at once


# ---- median: a sorting network run across a tile of pixels (SIMD-friendly) ----------------
@lru_cache(maxsize=128)
def _sorting_network(n: int) -> np.ndarray:
    """Comparators ``(i, j)``, i < j, of Batcher's odd-even merge sort for ``n`` inputs."""
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    net = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    net.setflags(write=False)  # cached and shared
    return net


@numba.njit(nogil=True, cache=True)
def _tile_median(
    a: np.ndarray,
    rows: np.ndarray,
    pairs: np.ndarray,
    out: np.ndarray,
    tile: np.ndarray,
    count: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """``out[start:stop]`` = NaN-aware median of ``a[rows, start:stop]``.

    The values are copied into ``tile`` with NaN replaced by +inf (so invalid values sort
    last; a valid +inf is equal to them, so the first ``count`` sorted values are exactly the
    valid ones), sorted column-wise by the comparator network ``pairs`` (branch-free min/max
    over contiguous pixel rows, which LLVM vectorises), then the middle values are read.
    """
    width = stop - start
    for p in range(width):
        count[p] = 0
    for r in range(rows.size):
        src = a[rows[r]]
        dst = tile[r]
        for p in range(width):
            v = src[start + p]
            valid = not np.isnan(v)
            dst[p] = v if valid else np.float32(np.inf)
            count[p] += valid
    sorted_median(tile, count, pairs, out, start, width)


@numba.njit(nogil=True, cache=True)
def sorted_median(tile: np.ndarray, count: np.ndarray, pairs: np.ndarray, out: np.ndarray,
                  start: int, width: int) -> None:
    """``out[start:start + width]`` = median of the first ``count`` values of each column of
    ``tile`` (invalid values already +inf), after sorting the columns in place with the
    comparator network ``pairs``; NaN where ``count`` is 0. numpy's arithmetic: the two middle
    values (the middle one twice for odd counts) summed from +0.0, halved, in float32."""
    for k in range(pairs.shape[0]):
        low_row = tile[pairs[k, 0]]
        high_row = tile[pairs[k, 1]]
        for p in range(width):
            x = low_row[p]
            y = high_row[p]
            low_row[p] = min(x, y)
            high_row[p] = max(x, y)
    for p in range(width):
        n = count[p]
        if n == 0:
            out[start + p] = np.float32(np.nan)
            continue
        half = n // 2
        low = tile[half - 1 + n % 2, p]  # odd n: the middle value twice, as numpy does
        high = tile[half, p]
        # numpy: np.ma.sum of (low, high) starting from +0.0, then true_divide by 2, in float32.
        total = np.float32(np.float32(np.float32(0.0) + low) + high)
        out[start + p] = np.float32(total / np.float32(2.0))


@numba.njit(nogil=True, cache=True)
def _group_tile(
    a: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    pairs: np.ndarray,
    pair_offsets: np.ndarray,
    out: np.ndarray,
    width: int,
    index: int,
) -> None:
    """Medians of every time group for pixel tile number ``index``."""
    start = index * width
    stop = min(a.shape[1], start + width)
    tile = np.empty((max(a.shape[0], 1), width), np.float32)
    count = np.empty(width, np.int64)
    for g in range(offsets.size - 1):
        rows = order[offsets[g] : offsets[g + 1]]
        net = pairs[pair_offsets[g] : pair_offsets[g + 1]]
        _tile_median(a, rows, net, out[g], tile, count, start, stop)


@numba.njit(nogil=True, cache=True)
def _group_medians_serial(
    a: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    pairs: np.ndarray,
    pair_offsets: np.ndarray,
    out: np.ndarray,
    width: int,
) -> None:
    """Single-threaded, GIL-free: for Dask tasks (Dask supplies the parallelism)."""
    for index in range((a.shape[1] + width - 1) // width):
        _group_tile(a, order, offsets, pairs, pair_offsets, out, width, index)


@numba.njit(parallel=True, nogil=True, cache=True)
def _group_medians_parallel(
    a: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    pairs: np.ndarray,
    pair_offsets: np.ndarray,
    out: np.ndarray,
    width: int,
) -> None:
    """Multi-threaded over pixel tiles: for in-memory (NumPy) input."""
    for index in numba.prange((a.shape[1] + width - 1) // width):
        _group_tile(a, order, offsets, pairs, pair_offsets, out, width, index)


@numba.njit(nogil=True, cache=True)
def _best_pixels(a: np.ndarray, score: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    """``a`` (T, B, P), ``score`` (T, P) -> ``out`` (B, P) for pixels ``start:stop``.

    Takes all bands of the valid time with the lowest score; ties keep the earliest time.
    """
    n_time, n_band = a.shape[:2]
    for i in range(start, stop):
        best = -1
        best_score = np.float32(0.0)
        for t in range(n_time):
            s = score[t, i]
            if np.isnan(s) or (best >= 0 and not s < best_score):
                continue
            valid = True
            for b in range(n_band):
                if np.isnan(a[t, b, i]):
                    valid = False
                    break
            if valid:
                best = t
                best_score = s
        for b in range(n_band):
            out[b, i] = a[best, b, i] if best >= 0 else np.float32(np.nan)


@numba.njit(nogil=True, cache=True)
def _best_serial(a: np.ndarray, score: np.ndarray, out: np.ndarray) -> None:
    """Single-threaded, GIL-free best pixel: for Dask tasks."""
    _best_pixels(a, score, out, 0, a.shape[2])


@numba.njit(parallel=True, nogil=True, cache=True)
def _best_parallel(a: np.ndarray, score: np.ndarray, out: np.ndarray) -> None:
    """Multi-threaded best pixel over pixel tiles: for in-memory (NumPy) input."""
    n_pix = a.shape[2]
    for index in numba.prange((n_pix + 4095) // 4096):
        _best_pixels(a, score, out, index * 4096, min(n_pix, (index + 1) * 4096))


# ---- NumPy block functions (time first, C order) ------------------------------------------
def _group_medians(
    values: np.ndarray, order: np.ndarray, offsets: np.ndarray, parallel: bool = True
) -> np.ndarray:
    """Medians of time groups: ``values`` (T, ...) -> (G, ...) float32.

    Group ``g`` is the times ``order[offsets[g]:offsets[g + 1]]`` (G = len(offsets) - 1).
    """
    shape = values.shape[1:]
    a = np.ascontiguousarray(values, dtype=np.float32).reshape(values.shape[0], int(np.prod(shape)))
    sizes = np.diff(offsets)
    nets = [_sorting_network(int(n)) for n in sizes]
    pairs = np.concatenate(nets) if nets else np.empty((0, 2), np.int64)
    pair_offsets = np.concatenate([[0], np.cumsum([len(n) for n in nets])]).astype(np.int64)
    width = int(min(1024, max(64, _TILE_BYTES // 4 // max(int(sizes.max(initial=1)), 1))))
    out = np.empty((sizes.size, a.shape[1]), np.float32)
    kernel = _group_medians_parallel if parallel else _group_medians_serial
    kernel(a, order.astype(np.int64), offsets.astype(np.int64), pairs, pair_offsets, out, width)
    return out.reshape((sizes.size,) + shape)


def nanmedian_time(values: np.ndarray, *, parallel: bool = True) -> np.ndarray:
    """NaN-aware median over axis 0 of a NumPy array, identical to ``np.nanmedian(.., axis=0)``.

    ``values`` has shape ``(T, ...)`` and is cast to float32 first; the result has shape
    ``values.shape[1:]``, float32, NaN where no value is valid (without numpy's "All-NaN slice"
    warning). ``parallel=False`` runs
    single-threaded without the GIL, for use inside Dask tasks.
    """
    n_time = values.shape[0]
    order = np.arange(n_time, dtype=np.int64)
    offsets = np.array([0, n_time], dtype=np.int64)
    return _group_medians(values, order, offsets, parallel)[0]


def _best_block(values: np.ndarray, score: np.ndarray, parallel: bool = True) -> np.ndarray:
    """Best pixel of one block: ``values`` (T, B, ...) and ``score`` (T, 1, ...) -> (B, ...)."""
    n_time, n_band = values.shape[:2]
    n_pix = int(np.prod(values.shape[2:]))
    a = np.ascontiguousarray(values, dtype=np.float32).reshape(n_time, n_band, n_pix)
    s = np.ascontiguousarray(score, dtype=np.float32).reshape(n_time, n_pix)
    out = np.empty((n_band, n_pix), np.float32)
    (_best_parallel if parallel else _best_serial)(a, s, out)
    return out.reshape(values.shape[1:])


# ---- xarray helpers -------------------------------------------------------------------------
def _is_dask(arr: xr.DataArray) -> bool:
    return arr.chunks is not None


def _check_stack(
    stack: xr.DataArray, name: str = "stack", dims: tuple[str, ...] = DIMS
) -> xr.DataArray:
    """Validate dims and dtype; return it transposed to ``dims``, float32, time in one chunk."""
    if not isinstance(stack, xr.DataArray):
        raise DataError(
            f"expected an xarray.DataArray, got {type(stack).__name__}",
            where=name,
            fix=f"pass a DataArray with dims {dims}",
        )
    if set(stack.dims) != set(dims):
        raise DataError(
            f"dims are {stack.dims}, expected {dims}",
            where=name,
            fix="rename or select dims so exactly these remain (e.g. squeeze extra ones)",
        )
    if not np.issubdtype(stack.dtype, np.floating):
        raise DataError(
            f"dtype is {stack.dtype}; invalid observations must be marked with NaN",
            where=name,
            fix="convert to float32 and set nodata/cloud pixels to NaN (e.g. stack.where(mask))",
        )
    stack = stack.transpose(*dims)
    if stack.dtype != np.float32:
        stack = stack.astype(np.float32)
    if _is_dask(stack) and len(stack.chunks[0]) > 1:
        stack = stack.chunk({"time": -1})
    return stack


def _meta(ndim: int) -> np.ndarray:
    """An empty float32 array: Dask's ``meta`` (saves calling a block function on dummies)."""
    return np.empty((0,) * ndim, np.float32)


def _wrap(stack: xr.DataArray, data: Any, dims: tuple[str, ...], **coords: Any) -> xr.DataArray:
    """A DataArray on ``dims`` with the stack's name, attrs and coords that fit those dims."""
    kept = {k: v for k, v in stack.coords.items() if set(v.dims) <= set(dims)}
    return xr.DataArray(
        data, dims=dims, coords={**kept, **coords}, name=stack.name, attrs=dict(stack.attrs)
    )


def _month_groups(time: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calendar months of ``time``: (month starts datetime64[ns], order, offsets) for the kernel."""
    if not np.issubdtype(time.dtype, np.datetime64):
        raise DataError(
            f"the time coordinate has dtype {time.dtype}, not datetime64",
            where="stack.time",
            fix="give the stack a datetime64 time coordinate",
        )
    months = time.values.astype("datetime64[M]")
    starts, labels = np.unique(months, return_inverse=True)
    order = np.argsort(labels, kind="stable").astype(np.int64)
    offsets = np.searchsorted(labels[order], np.arange(starts.size + 1)).astype(np.int64)
    return starts.astype("datetime64[ns]"), order, offsets


def _period_starts(time: xr.DataArray, period: str) -> np.ndarray:
    """First month (``datetime64[M]``) of the period each time falls in.

    ``NM``: N-month windows starting in January (N divides 12: 1, 2, 3, 4, 6, 12);
    ``season``: meteorological seasons DJF, MAM, JJA, SON (December opens next year's DJF).
    """
    if not np.issubdtype(time.dtype, np.datetime64):
        raise DataError(f"the time coordinate has dtype {time.dtype}, not datetime64",
                        where="stack.time", fix="give the stack a datetime64 time coordinate")
    months = time.values.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    month0 = months % 12  # 0 = January
    if period == "season":
        back = (month0 + 1) % 3  # Dec -> 0, Jan -> 1, Feb -> 2, Mar -> 0 ...
    else:
        n = int(period.removesuffix("M"))
        if n < 1 or 12 % n:
            raise ParamsError(f"period {period!r} does not divide the year",
                              where="composite.period", fix="use 1M, 2M, 3M, 4M, 6M or 12M")
        back = month0 % n
    return (months - back).astype("datetime64[M]")


def _period_groups(time: xr.DataArray, period: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periods of ``time``: (starts datetime64[ns], order, offsets) for the kernel."""
    starts_m = _period_starts(time, period)
    starts, labels = np.unique(starts_m, return_inverse=True)
    order = np.argsort(labels, kind="stable").astype(np.int64)
    offsets = np.searchsorted(labels[order], np.arange(starts.size + 1)).astype(np.int64)
    return starts.astype("datetime64[ns]"), order, offsets


#: Meteorological seasons by the month (1-12) they start in.
SEASONS = {12: "DJF", 3: "MAM", 6: "JJA", 9: "SON"}


def period_label(year: int, month: int, period: str) -> str:
    """The feature-name prefix of the period starting in ``year``-``month`` (1-12): ``m202104``
    (1M), ``m202103p2`` (2M starting March 2021), ``s2021JJA`` (seasons, named by the year of
    their last month). The Earth Engine composite names its periods with it too."""
    if period == "season":
        return f"s{year + (month == 12)}{SEASONS[month]}"
    if period == "1M":
        return f"m{year:04d}{month:02d}"
    return f"m{year:04d}{month:02d}p{int(period.removesuffix('M'))}"


def period_labels(starts: ArrayLike, period: str) -> list[str]:
    """:func:`period_label` of each period start (``datetime64``)."""
    months = np.asarray(starts).astype("datetime64[M]").astype(np.int64)
    return [period_label(int(m // 12 + 1970), int(m % 12 + 1), period) for m in months]


def period_median(stack: xr.DataArray, period: str) -> xr.DataArray:
    """Median per period (see :func:`_period_starts`): ``(period, band, y, x)`` float32.

    Like :func:`monthly_median` (``"1M"`` gives the same values), one entry per period that
    has at least one time; the ``period`` coordinate is the period's first day and the
    ``label`` coordinate its feature-name prefix (:func:`period_labels`).
    """
    stack = _check_stack(stack)
    starts, order, offsets = _period_groups(stack["time"], period)
    out = _wrap(stack, _grouped(stack, order, offsets), ("period", "band", "y", "x"),
                period=starts)
    return out.assign_coords(label=("period", period_labels(starts, period)))


def period_count(stack: xr.DataArray, period: str) -> xr.DataArray:
    """Valid observations per period: ``(period, y, x)`` uint16, periods as period_median."""
    stack = _check_stack(stack)
    starts, order, offsets = _period_groups(stack["time"], period)
    mask = _valid_mask(stack).data
    counts = [mask[order[lo:hi]].sum(axis=0) for lo, hi in pairwise(offsets)]
    xp = da if _is_dask(stack) else np
    stacked = xp.stack(counts).astype(np.uint16)
    return _wrap(stack, stacked, ("period", "y", "x"), period=starts).rename("count")


def fill_empty(periods: xr.DataArray, whole: xr.DataArray) -> xr.DataArray:
    """``periods`` (``(period, band, y, x)``) with NaN replaced by ``whole`` (``(band, y, x)``,
    e.g. the median over the whole date range) at the same pixel and band: a period without
    a valid observation at a pixel takes the pixel's all-period value. Lazy on Dask input."""
    return periods.fillna(whole)


def _grouped(stack: xr.DataArray, order: np.ndarray, offsets: np.ndarray) -> Any:
    """Group medians of the stack's data: (G, band, y, x), lazy if the stack is Dask-backed."""
    if not _is_dask(stack):
        return _group_medians(stack.values, order, offsets, parallel=True)
    data = stack.data
    block = partial(_group_medians, order=order, offsets=offsets, parallel=False)
    chunks = ((offsets.size - 1,),) + data.chunks[1:]
    return data.map_blocks(block, chunks=chunks, dtype=np.float32, meta=_meta(4))


# ---- public API -----------------------------------------------------------------------------
def median(stack: xr.DataArray) -> xr.DataArray:
    """Per-pixel, per-band NaN-aware median over time: ``(band, y, x)`` float32.

    Equal to ``stack.median("time")`` (bit for bit) but computed by a numba kernel tile by
    tile. Lazy on Dask input (time rechunked to one chunk if split, spatial and band chunks
    kept); on NumPy input it runs immediately on all cores.
    """
    stack = _check_stack(stack)
    n_time = stack.sizes["time"]
    data = _grouped(stack, np.arange(n_time, dtype=np.int64), np.array([0, n_time], np.int64))
    return _wrap(stack, data[0], ("band", "y", "x"))


def monthly_median(stack: xr.DataArray) -> xr.DataArray:
    """Median per calendar month: ``(month, band, y, x)`` float32.

    One entry per calendar month that has at least one time in the stack (months without
    scenes are absent, months with scenes but no valid pixel are NaN there). The ``month``
    coordinate is the month start as ``datetime64[ns]``, sorted. One pass over the data.
    """
    stack = _check_stack(stack)
    starts, order, offsets = _month_groups(stack["time"])
    return _wrap(stack, _grouped(stack, order, offsets), ("month", "band", "y", "x"), month=starts)


def _align_score(stack: xr.DataArray, score: xr.DataArray) -> Any:
    """The score's data as (time, 1, y, x), on the stack's coords and (if Dask) spatial chunks."""
    score = _check_stack(score, "score", ("time", "y", "x"))
    try:
        xr.align(stack, score, join="exact")
    except ValueError as exc:
        raise DataError(
            f"score coordinates differ from the stack's ({exc})",
            where="score",
            fix="compute the score on the same times and pixel grid as the stack",
        ) from exc
    if not _is_dask(stack):
        return score.values[:, None]
    chunks = {"time": -1, "y": stack.chunks[2], "x": stack.chunks[3]}
    return score.chunk(chunks).data[:, None]


def best_pixel(stack: xr.DataArray, score: xr.DataArray) -> xr.DataArray:
    """All bands from the valid observation with the lowest ``score``: ``(band, y, x)`` float32.

    ``score`` has dims ``(time, y, x)`` with the same coordinates as the stack (e.g. cloud
    probability; lower is better). Observations with any NaN band or a NaN score are ignored;
    ties go to the earliest time; NaN where no observation is valid. On Dask input bands are
    rechunked into one chunk (all bands of a pixel come from the same time) and the score to
    the stack's spatial chunks; a Dask score with a NumPy stack is computed first.
    """
    stack = _check_stack(stack)
    score_data = _align_score(stack, score)
    if not _is_dask(stack):
        data = _best_block(stack.values, score_data, parallel=True)
    else:
        values = stack.chunk({"band": -1}).data
        block = partial(_best_block, parallel=False)
        data = da.map_blocks(block, values, score_data, drop_axis=0, meta=_meta(3))
    return _wrap(stack, data, ("band", "y", "x"))


def _valid_mask(stack: xr.DataArray) -> xr.DataArray:
    """``(time, y, x)`` bool: True where all bands are non-NaN."""
    return stack.notnull().all("band")


def valid_count(stack: xr.DataArray) -> xr.DataArray:
    """Number of valid observations per pixel: ``(y, x)`` uint16.

    An observation (one time) is valid when *all* its bands are non-NaN.
    """
    stack = _check_stack(stack)
    count = _valid_mask(stack).sum("time").astype(np.uint16)
    return _wrap(stack, count.data, ("y", "x")).rename("count")


def _monthly_count(stack: xr.DataArray) -> xr.DataArray:
    """Valid observations per calendar month: ``(month, y, x)`` uint16, months as monthly_median."""
    starts, order, offsets = _month_groups(stack["time"])
    mask = _valid_mask(stack).data
    counts = [mask[order[lo:hi]].sum(axis=0) for lo, hi in pairwise(offsets)]
    xp = da if _is_dask(stack) else np
    stacked = xp.stack(counts) if counts else xp.zeros((0,) + mask.shape[1:], np.uint16)
    stacked = stacked.astype(np.uint16)
    return _wrap(stack, stacked, ("month", "y", "x"), month=starts).rename("count")


def composite(
    stack: xr.DataArray, method: Method = "median", *, score: xr.DataArray | None = None
) -> xr.Dataset:
    """Composite a time stack: Dataset with ``composite`` (the image) and ``count``.

    Args:
        stack: ``(time, band, y, x)`` float32, NaN where invalid.
        method: ``"median"`` (:func:`median`), ``"best"`` (:func:`best_pixel`, needs
            ``score``) or ``"monthly"`` (:func:`monthly_median`).
        score: ``(time, y, x)``, lower is better; only for ``"best"``.

    Returns:
        ``composite``: ``(band, y, x)`` float32, or ``(month, band, y, x)`` for ``"monthly"``;
        ``count``: valid observations (all bands non-NaN), ``(y, x)`` uint16, or
        ``(month, y, x)`` for ``"monthly"``. Lazy on Dask input.

    Raises:
        ParamsError: unknown ``method``, or ``"best"`` without ``score``.
    """
    if method not in METHODS:
        raise ParamsError(
            f"unknown composite method {method!r}",
            where="composite method",
            fix="use one of " + ", ".join(repr(m) for m in METHODS),
        )
    if method == "best" and score is None:
        raise ParamsError(
            "the 'best' composite needs a score to rank observations",
            where="composite score",
            fix="pass score=<(time, y, x) DataArray, lower is better, e.g. cloud probability>"
            " or use method 'median'",
        )
    checked = _check_stack(stack)
    image: xr.DataArray
    count: xr.DataArray
    if method == "median":
        image, count = median(checked), valid_count(checked)
    elif method == "best":
        assert score is not None
        image, count = best_pixel(checked, score), valid_count(checked)
    else:
        image, count = monthly_median(checked), _monthly_count(checked)
    attrs: dict[str, Any] = dict(stack.attrs, composite_method=method)
    return xr.Dataset({"composite": image, "count": count}, attrs=attrs)
