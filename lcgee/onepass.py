"""The median composite straight from DN: harmonize, scale, mask and take the median in one pass.

:func:`lcgee.features.build_composite` used to build the float32 reflectance stack
(:func:`lcgee.load.reflectance`), NaN it under the masks (:func:`lcgee.clouds.apply_mask`) and
reduce it (:func:`lcgee.composite.median`, :func:`lcgee.composite.valid_count`): several full
passes over every tile's time series, each allocating a float32 copy. Here one numba kernel per
band and tile reads the uint16 DN block and the uint8 mask block once and fills the sorting
network's tile directly with the same float32 arithmetic -- ``max(float32(dn) - shift, 0) /
10000`` where ``dn != 0`` and the mask is CLEAR, else invalid -- so the medians are the same
bits as before (and as ``numpy.nanmedian``). Each band's task also returns the valid times as
bits (``(ceil(T / 8), y, x)`` uint8); the count (times valid in every band) ANDs those, so no
task needs all bands' DN at once and memory stays that of one band's tile per task.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import dask.array as da
import numba
import numpy as np
from dask.base import tokenize

from lcgee.clouds import CLEAR
from lcgee.composite import _sorting_network, sorted_median
from lcgee.scenes import HARMONIZE_OFFSET

__all__ = ["median_from_dn"]

_WIDTH = 1024  # pixels sorted together (as lcgee.composite's kernel for ~24 scenes)


@numba.njit(nogil=True, cache=True)
def _band_kernel(dn: np.ndarray, mask: np.ndarray, shift: np.ndarray, pairs: np.ndarray,
                 width: int, clear: int, out: np.ndarray, bits: np.ndarray) -> None:
    """``dn`` (T, P) uint16, ``mask`` (T, P) uint8 -> median ``out`` (P,), valid ``bits``."""
    n_time, n_pix = dn.shape
    tile = np.empty((max(n_time, 1), width), np.float32)
    count = np.empty(width, np.int64)
    zero = np.float32(0.0)
    scale = np.float32(10000.0)
    for start in range(0, n_pix, width):
        w = min(width, n_pix - start)
        for p in range(w):
            count[p] = 0
        for t in range(n_time):
            s = shift[t]
            bit = np.uint8(1 << (t & 7))
            src = dn[t]
            m = mask[t]
            dst = tile[t]
            bt = bits[t >> 3]
            for p in range(w):
                d = src[start + p]
                if d != 0 and m[start + p] == clear:
                    v = np.float32(d) - s
                    if v < zero:
                        v = zero
                    dst[p] = v / scale
                    count[p] += 1
                    bt[start + p] |= bit
                else:
                    dst[p] = np.float32(np.inf)  # invalid values sort last
        sorted_median(tile, count, pairs, out, start, w)


@numba.njit(nogil=True, cache=True)
def _popcount_and(bits: np.ndarray, out: np.ndarray) -> None:
    """``bits`` (B, nbytes, P) uint8 -> ``out`` (P,) uint16: set bits of the AND over B."""
    n_band, n_bytes, n_pix = bits.shape
    for p in range(n_pix):
        total = 0
        for j in range(n_bytes):
            v = np.uint8(0xFF)
            for b in range(n_band):
                v &= bits[b, j, p]
            while v:
                v &= np.uint8(v - np.uint8(1))
                total += 1
        out[p] = total


def _band_block(dn: np.ndarray, mask: np.ndarray, shift: np.ndarray) -> tuple:
    """One band's tile: ``(median (y, x) float32, valid bits (nbytes, y, x) uint8)``."""
    n_time, height, width = dn.shape
    out = np.empty(height * width, np.float32)
    bits = np.zeros(((n_time + 7) // 8, height * width), np.uint8)
    _band_kernel(np.ascontiguousarray(dn).reshape(n_time, -1),
                 np.ascontiguousarray(mask).reshape(n_time, -1), shift,
                 _sorting_network(max(n_time, 1)), _WIDTH, CLEAR, out, bits)
    return out.reshape(height, width), bits.reshape(-1, height, width)


def _count_block(*bits: np.ndarray) -> np.ndarray:
    stacked = np.ascontiguousarray(np.stack(bits))
    n_band, n_bytes, height, width = stacked.shape
    out = np.empty(height * width, np.uint16)
    _popcount_and(stacked.reshape(n_band, n_bytes, -1), out)
    return out.reshape(height, width)


def median_from_dn(dn: Sequence[da.Array], mask: da.Array, offset: np.ndarray
                   ) -> tuple[da.Array, da.Array]:
    """``(composite (B, y, x) float32, count (y, x) uint16)`` from DN stacks and masks.

    ``dn``: one ``(time, y, x)`` uint16 Dask array per band (0 = nodata), time in one chunk;
    ``mask``: ``(time, y, x)`` uint8 cloud-mask codes on the same chunks; ``offset``: per time,
    whether the scene's DN carry the +1000 harmonization offset. Values equal
    ``composite.median`` and ``composite.valid_count`` of the masked reflectance stack.
    """
    shift = np.where(np.asarray(offset, bool), HARMONIZE_OFFSET, 0).astype(np.float32)
    n_bytes = (mask.shape[0] + 7) // 8
    spatial = mask.chunks[1:]
    medians, bits = [], []
    for band in dn:
        band = band.rechunk((-1, *spatial))
        pair = da.map_blocks(_band_block, band, mask, shift, drop_axis=0, dtype=object,
                             meta=np.empty((0, 0), object),
                             name=f"lcgee-onepass-{tokenize(band, mask, shift)}")
        medians.append(pair.map_blocks(operator.getitem, 0, dtype=np.float32,
                                       meta=np.empty((0, 0), np.float32)))
        bits.append(pair.map_blocks(operator.getitem, 1, dtype=np.uint8, new_axis=0,
                                    chunks=((n_bytes,), *spatial),
                                    meta=np.empty((0, 0, 0), np.uint8)))
    count = da.map_blocks(_count_block, *bits, drop_axis=0, dtype=np.uint16,
                          meta=np.empty((0, 0), np.uint16))
    return da.stack(medians), count

