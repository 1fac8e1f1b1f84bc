"""The spatial block size for cross-validation and early stopping, chosen from the data.

Blocks should be larger than the range over which labels are autocorrelated (so held-out
blocks are not near-copies of training pixels, Roberts et al. 2017; blockCV, Valavi et al.
2019), yet small enough that the training regions hold enough blocks for ``cv_folds`` folds
and an early-stopping split inside each fold. :func:`choose_block_size` does both:

1. the **autocorrelation range** of the labels in the training regions: the smallest lag at
   which two pixels that far apart (along rows or columns) share a class hardly more often than
   two random pixels of the same region do (excess agreement
   ``rho(h) = (P_same(h) - p0) / (1 - p0)`` below ``threshold``, averaged over regions and
   both axes; ``p0`` = the region's sum of squared class shares); when the labels stay
   correlated over every lag that fits the regions, the largest block size is tried first;
2. shrunk, pixel by pixel, until the labelled parts of the training regions cover at least
   ``target_blocks`` blocks (:func:`target_blocks`: 5 per fold).

Fewer blocks than :func:`minimum_blocks` even with 1-pixel blocks, or an explicit size that
gives fewer, raise :class:`~lcgee.errors.DataError` before any training starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lcgee.errors import DataError

__all__ = ["BlockChoice", "autocorrelation_range", "choose_block_size", "count_blocks",
           "minimum_blocks", "target_blocks"]

_LAGS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass(frozen=True)
class BlockChoice:
    """The block size used and why (written to ``samples.json`` and ``metrics.json``)."""

    block_size_m: float
    block_px: int
    n_blocks: int
    rule: str  #: "auto" or "given"
    autocorrelation_range_m: float | None
    target_blocks: int
    minimum_blocks: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def minimum_blocks(cv_folds: int, valid_fraction: float) -> int:
    """Fewest blocks that allow ``cv_folds`` folds, each fold's training part still holding
    enough blocks that ``valid_fraction`` of them is at least one whole block."""
    per_train = math.ceil(1 / valid_fraction) + 1
    return max(cv_folds, math.ceil(per_train * cv_folds / (cv_folds - 1)))


def target_blocks(cv_folds: int, valid_fraction: float) -> int:
    """Blocks the automatic size aims for: 5 per fold (and at least the minimum)."""
    return max(5 * cv_folds, minimum_blocks(cv_folds, valid_fraction))


def count_blocks(labelled: Mapping[str, np.ndarray], block_px: int, *,
                 min_fill: float = 0.25) -> int:
    """Blocks of ``block_px`` pixels, over regions, at least ``min_fill`` of them labelled.

    (Slivers at the regions' edges hold few samples and do not count.)

    ``labelled`` maps region name to a ``(y, x)`` bool array; blocks start at each region's
    top-left pixel, as :func:`lcgee.samples.block_ids` numbers them when regions are aligned
    to blocks (they are numbered on the run grid, so counts may differ by the partial blocks
    at the region edges).
    """
    total = 0
    for mask in labelled.values():
        h, w = mask.shape
        ph, pw = -h % block_px, -w % block_px
        padded = np.pad(mask, ((0, ph), (0, pw)))
        filled = padded.reshape(padded.shape[0] // block_px, block_px,
                                padded.shape[1] // block_px, block_px).sum(axis=(1, 3))
        total += int(np.count_nonzero(filled >= max(1.0, min_fill * block_px ** 2)))
    return total


def autocorrelation_range(labels: Mapping[str, np.ndarray], *, threshold: float = 0.05,
                          max_lag: int | None = None) -> int | None:
    """Smallest lag (pixels) at which the labels' excess agreement falls below ``threshold``.

    ``labels`` maps region name to a ``(y, x)`` class array (0 = unlabelled). Lags are tried
    on a roughly geometric ladder up to half the largest region side (or ``max_lag``); None
    when the labels stay correlated over every lag tried, or when there are none.
    """
    values = []
    for v in labels.values():
        v = np.asarray(v)
        _, counts = np.unique(v[v > 0], return_counts=True)
        if counts.size >= 2:
            values.append((v, float(np.sum((counts / counts.sum()) ** 2))))
    if not values:
        return None
    limit = max_lag or max(max(v.shape) for v, _ in values) // 2
    for lag in (h for h in _LAGS if h <= limit):
        rhos = []
        for v, p0 in values:
            for a, b in ((v[lag:, :], v[:-lag, :]), (v[:, lag:], v[:, :-lag])):
                ok = (a > 0) & (b > 0)
                pairs = np.count_nonzero(ok)
                if pairs:
                    same = np.count_nonzero(ok & (a == b)) / pairs
                    rhos.append((same - p0) / (1 - p0))
        if rhos and float(np.mean(rhos)) < threshold:
            return lag
    return None


def choose_block_size(labels: Mapping[str, np.ndarray], resolution: float, *,
                      block_size: float | str = "auto", cv_folds: int = 5,
                      valid_fraction: float = 0.2) -> BlockChoice:
    """The block size for the training regions' ``labels`` (``{region: (y, x) classes}``).

    ``block_size`` in metres is checked (enough blocks?) and kept; ``"auto"`` follows the
    rule of the module docstring. Raises :class:`DataError` with what to change when the
    regions cannot hold :func:`minimum_blocks` blocks.
    """
    labelled = {k: np.asarray(v) > 0 for k, v in labels.items()}
    need, target = minimum_blocks(cv_folds, valid_fraction), target_blocks(cv_folds, valid_fraction)
    if block_size != "auto":
        px = max(1, int(round(float(block_size) / resolution)))
        n = count_blocks(labelled, px)
        if n < need:
            best = _largest_with(labelled, need, px)
            hint = (f"set labels.block_size to {best * resolution:g} m or less (or auto)"
                    if best else "use larger training regions")
            raise DataError(
                f"the training regions hold {n} spatial blocks of {block_size} m, fewer than the "
                f"{need} that {cv_folds}-fold block CV with a {valid_fraction:g} early-stopping "
                "split needs", where="labels.block_size",
                fix=f"{hint}, or lower train.cv_folds")
        return BlockChoice(px * resolution, px, n, "given", None, target, need)
    lag = autocorrelation_range(labels)
    sides = [max(m.shape) for m in labelled.values()] or [1]
    start = lag if lag is not None else max(sides)
    px = _largest_with(labelled, target, start) or _largest_with(labelled, need, start)
    if not px:
        raise DataError(
            f"the training regions hold only {count_blocks(labelled, 1)} labelled pixels in "
            f"total, fewer than the {need} blocks {cv_folds}-fold block CV needs",
            where="regions", fix="use larger training regions or more labelled pixels, "
            "or lower train.cv_folds")
    return BlockChoice(px * resolution, px, count_blocks(labelled, px), "auto",
                       None if lag is None else lag * resolution, target, need)


def _largest_with(labelled: Mapping[str, np.ndarray], n_blocks: int, start: int) -> int:
    """Largest block size <= ``start`` px giving at least ``n_blocks`` blocks; 0 if none."""
    for px in range(int(start), 0, -1):
        if count_blocks(labelled, px) >= n_blocks:
            return px
    return 0
