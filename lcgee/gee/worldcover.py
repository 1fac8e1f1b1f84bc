"""ESA WorldCover v200 read from Earth Engine onto the run grid (``labels.source: earth-engine``).

The image ``ESA/WorldCover/v200/2021`` (band ``Map``) is fetched with the tiled downloader
(:func:`lcgee.gee.download.download_image`: request limits, retries, resumable tile cache) on a
10 m grid with the run grid's CRS and origin; Earth Engine resamples to a requested grid by
nearest neighbour (its default). When the run grid is coarser, the class of each coarse pixel
is the most frequent non-zero code of the 10 m pixels it covers (mode; ties: the smallest
code), computed here rather than with ``reduceResolution`` so that no undocumented server
behaviour is involved. Masked pixels come back as 0 (no data), as in the other label sources.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from lcgee.errors import ParamsError
from lcgee.gee.api import ee as _ee
from lcgee.gee.connection import EarthEngineConnection
from lcgee.gee.download import download_image
from lcgee.gee.retry import RetryPolicy
from lcgee.grid import Grid

__all__ = ["WORLDCOVER", "WORLDCOVER_IMAGE", "WORLDCOVER_BAND", "fine_grid", "block_mode",
           "download_worldcover"]

#: ESA WorldCover v200 classes: code -> (name, official colour).
WORLDCOVER: dict[int, tuple[str, str]] = {
    10: ("Tree cover", "#006400"),
    20: ("Shrubland", "#ffbb22"),
    30: ("Grassland", "#ffff4c"),
    40: ("Cropland", "#f096ff"),
    50: ("Built-up", "#fa0000"),
    60: ("Bare / sparse vegetation", "#b4b4b4"),
    70: ("Snow and ice", "#f0f0f0"),
    80: ("Permanent water bodies", "#0064c8"),
    90: ("Herbaceous wetland", "#0096a0"),
    95: ("Mangroves", "#00cf75"),
    100: ("Moss and lichen", "#fae6a0"),
}

#: The WorldCover v200 image in Earth Engine's catalog.
WORLDCOVER_IMAGE = "ESA/WorldCover/v200/2021"
#: Its class band.
WORLDCOVER_BAND = "Map"
_NATIVE = 10.0


def fine_grid(grid: Grid) -> tuple[Grid, int]:
    """The 10 m grid covering ``grid`` exactly (same CRS and origin) and the coarsening factor."""
    res = float(grid.resolution)
    factor = round(res / _NATIVE)
    if factor < 1 or not math.isclose(factor * _NATIVE, res, rel_tol=1e-9):
        raise ParamsError(f"a {res:g} m grid is not a whole multiple of WorldCover's 10 m",
                          where="labels.source: earth-engine",
                          fix="use a grid resolution of 10, 20, 30 ... metres")
    a, _, c, _, e, f = grid.transform
    return Grid(grid.crs, (a / factor, 0.0, c, 0.0, e / factor, f),
                (grid.height * factor, grid.width * factor)), factor


def block_mode(codes: np.ndarray, factor: int) -> np.ndarray:
    """Most frequent non-zero code per ``factor`` x ``factor`` block (ties: the smallest)."""
    if factor == 1:
        return codes.astype(np.uint8)
    h, w = codes.shape[0] // factor, codes.shape[1] // factor
    blocks = codes[:h * factor, :w * factor].reshape(h, factor, w, factor).transpose(0, 2, 1, 3)
    flat = blocks.reshape(h, w, factor * factor).astype(np.int64)
    counts = np.zeros((h, w, 256), np.int32)
    for k in range(flat.shape[-1]):
        np.add.at(counts, (np.arange(h)[:, None], np.arange(w)[None, :], flat[..., k]), 1)
    counts[..., 0] = 0  # no data never wins over a class
    out = np.argmax(counts, axis=-1).astype(np.uint8)  # first maximum: the smallest code
    out[counts.max(axis=-1) == 0] = 0
    return out


def download_worldcover(grid: Grid, *, cache_dir: str | Path | None = None,
                        connection: EarthEngineConnection | None = None, workers: int = 8,
                        retries: int | None = None, progress: bool = False) -> np.ndarray:
    """WorldCover codes on ``grid`` (uint8 ``(y, x)``, 0 = no data) from Earth Engine.

    ``connection`` (e.g. the offline stand-in :class:`lcgee.gee.emulator.OfflineEarthEngine`)
    answers the pixel requests; default: the live service of an initialised session.
    """
    ee = _ee()
    fine, factor = fine_grid(grid)
    image = ee.Image(WORLDCOVER_IMAGE).select([WORLDCOVER_BAND]).unmask(0).toUint8()
    policy = RetryPolicy(attempts=int(retries)) if retries else None

    def fetch(folder: str | Path) -> np.ndarray:
        return download_image(image, fine, cache_dir=folder, n_bands=1, dtype="uint8",
                              band_ids=[WORLDCOVER_BAND], connection=connection, workers=workers,
                              policy=policy, progress=progress,
                              description="ESA WorldCover from Earth Engine")[0]

    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="lcgee-worldcover-") as tmp:
            codes = fetch(tmp)
    else:
        codes = fetch(cache_dir)
    return block_mode(codes, factor)
