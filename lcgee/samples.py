"""Training samples: stratified by class, per region, each with a spatial block id.

Pixels with no valid composite (any feature NaN) or no label (0) are skipped. By default the
sample keeps each region's class shares (proportional allocation, with a floor for rare
classes); ``balanced`` takes up to the same number of every class instead (which changes the
class priors the model learns: see docs/decisions/0009). Block ids group pixels into square
blocks so that cross-validation can keep neighbouring pixels together (random pixel splits
leak spatial autocorrelation); :func:`lcgee.blocks.choose_block_size` picks their size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lcgee.errors import DataError, DataWarning

if TYPE_CHECKING:
    import xarray as xr

    from lcgee.grid import Grid

__all__ = ["sample_region", "sample_pixels", "block_ids", "collect", "allocate"]


def block_ids(rows: np.ndarray, cols: np.ndarray, block_px: int, region: str) -> np.ndarray:
    """``"region:r_c"`` block ids of pixels from their grid row/col."""
    br, bc = rows // block_px, cols // block_px
    return np.char.add(f"{region}:", np.char.add(br.astype(str), np.char.add("_", bc.astype(str))))


def allocate(counts: np.ndarray, *, per_class: int, balance: bool,
             min_per_class: int = 100) -> np.ndarray:
    """Samples to draw of each class from its available ``counts``.

    ``balance``: ``per_class`` of each (or all it has). Otherwise proportional allocation of a
    budget of ``per_class`` x the number of classes, so the sample keeps the classes' shares,
    with ``min_per_class`` as a floor for rare classes (never more than a class has).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if balance:
        want = np.full(counts.shape, per_class, dtype=np.int64)
    else:
        budget = per_class * counts.size
        want = np.rint(budget * counts / max(int(counts.sum()), 1)).astype(np.int64)
        want = np.maximum(want, min(min_per_class, per_class))
    return np.minimum(np.maximum(want, 1), counts)


def sample_pixels(labels: np.ndarray, valid: np.ndarray, *, per_class: int,
                  rng: np.random.Generator, balance: bool = False,
                  min_per_class: int = 100) -> np.ndarray:
    """Flat indices of a stratified random sample of the labelled, valid pixels.

    Class sizes come from :func:`allocate`: ``balance`` True takes up to ``per_class`` pixels
    of each class; False keeps the classes' shares (floor ``min_per_class``).
    """
    ok = valid & (labels > 0)
    picks = []
    codes, counts = np.unique(labels[ok], return_counts=True)
    sizes = allocate(counts, per_class=per_class, balance=balance, min_per_class=min_per_class)
    for code, n in zip(codes, sizes):
        idx = np.flatnonzero(ok & (labels == code))
        picks.append(rng.choice(idx, size=int(n), replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)


def sample_region(features: np.ndarray, labels: np.ndarray, feature_names: Sequence[str], *,
                  region: str, offset: tuple[int, int], block_px: int, per_class: int,
                  seed: int = 0, balance: bool = False, min_per_class: int = 20,
                  floor: int = 100) -> pd.DataFrame:
    """Samples of one region: feature columns (in model order), ``label``, ``region``,
    ``row``/``col`` on the run grid, ``block``.

    ``features`` is ``(band, y, x)`` for the region (NumPy), ``labels`` ``(y, x)``;
    ``offset`` is the region's ``(row, col)`` in the run grid. ``balance`` and ``floor`` are
    passed to :func:`sample_pixels`; ``min_per_class`` only sets when to warn.
    """
    if features.shape[1:] != labels.shape:
        raise DataError(f"features {features.shape[1:]} and labels {labels.shape} differ",
                        where=f"region {region}")
    valid = np.all(np.isfinite(features), axis=0)
    rng = np.random.default_rng(seed)
    idx = sample_pixels(labels, valid, per_class=per_class, rng=rng, balance=balance,
                        min_per_class=floor)
    if idx.size == 0:
        raise DataError("no pixel has both a valid composite and a label", where=f"region {region}",
                        fix="check the region lies inside the AOI and has cloud-free observations")
    rows, cols = np.unravel_index(idx, labels.shape)
    frame = pd.DataFrame(features.reshape(features.shape[0], -1)[:, idx].T,
                         columns=list(feature_names))
    frame["label"] = labels.ravel()[idx].astype(int)
    frame["region"] = region
    frame["row"] = rows + offset[0]
    frame["col"] = cols + offset[1]
    frame["block"] = block_ids(frame["row"].to_numpy(), frame["col"].to_numpy(), block_px, region)
    counts = frame["label"].value_counts()
    rare = sorted(int(c) for c, n in counts.items() if n < min_per_class)
    if rare:
        warnings.warn(f"region {region}: classes {rare} have fewer than {min_per_class} samples",
                      DataWarning, stacklevel=2)
    return frame


def collect(features: xr.DataArray | np.ndarray, labels: np.ndarray, regions: dict[str, Grid],
            grid: Grid, *,
            block_px: int, per_class: int, seed: int = 0, balance: bool = False,
            floor: int = 100) -> pd.DataFrame:
    """Samples of several regions (``{name: region Grid}``) of a ``(band, y, x)`` feature
    stack on ``grid`` (lazy is fine: only each region's window is read).

    ``balance`` True: up to ``per_class`` of each class per region (lcgee's old default,
    kept as an option); False: the region's class shares (see :func:`allocate`)."""
    names = [str(b) for b in features["band"].values]
    frames = []
    for i, (name, rgrid) in enumerate(regions.items()):
        r0, c0 = rgrid.offset_in(grid)
        window = (slice(r0, r0 + rgrid.height), slice(c0, c0 + rgrid.width))
        X = np.asarray(features[:, window[0], window[1]].values, dtype=np.float32)
        frames.append(sample_region(X, labels[window], names, region=name, offset=(r0, c0),
                                    block_px=block_px, per_class=per_class, seed=seed + i,
                                    balance=balance, floor=floor))
    return pd.concat(frames, ignore_index=True)
