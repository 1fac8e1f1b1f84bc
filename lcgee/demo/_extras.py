"""The assets a Planetary Computer granule carries besides the bands lcgee reads, and the
reprocessed copy of a granule.

Real items also hold ``AOT`` and ``WVP`` (aerosol and water vapour), ``visual`` (true colour,
8 bit), the granule metadata XML and a ``rendered_preview``. The demo writes small but real
files for them so every href resolves: constant AOT / WVP at 20 m, a 60 m true-colour COG, a
PNG preview and a metadata XML naming the baseline.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.enums import Resampling

from lcgee.demo._cog import write_cog
from lcgee.demo._common import BOA_ADD_OFFSET, S2_BANDS
from lcgee.grid import Grid

__all__ = ["write_extras", "reprocess", "EXTRA_FILES", "REPROCESSED_BASELINE"]

#: Baseline of the reprocessed copy (Planetary Computer reprocessed the archive at 05.10).
REPROCESSED_BASELINE = "05.10"
#: asset key -> file name in the granule folder.
EXTRA_FILES = {"AOT": "AOT.tif", "WVP": "WVP.tif", "visual": "TCI.tif",
               "granule-metadata": "MTD_TL.xml", "rendered_preview": "preview.png"}
_PREVIEW_FACTOR = 6


def _read_coarse(path: Path, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, out_shape=shape, resampling=Resampling.nearest)


def write_extras(folder: Path, grid: Grid, scene: dict) -> None:
    """AOT, WVP, visual, preview and metadata files of one granule (after its bands)."""
    g20 = grid.coarsen(2)
    valid20 = _read_coarse(folder / "SCL.tif", g20.shape) > 0
    write_cog(folder / EXTRA_FILES["AOT"], np.where(valid20, 150, 0).astype("uint16"), g20,
              nodata=0)
    write_cog(folder / EXTRA_FILES["WVP"], np.where(valid20, 1800, 0).astype("uint16"), g20,
              nodata=0)
    g60 = grid.coarsen(_PREVIEW_FACTOR)
    rgb = np.stack([_read_coarse(folder / f"{b}.tif", g60.shape) for b in ("B04", "B03", "B02")])
    offset = float(scene.get("offset", 0))
    tci = np.clip((rgb.astype("float32") - offset) / 2000.0 * 255.0, 1, 255)
    tci = np.where(rgb > 0, tci, 0).astype("uint8")
    write_cog(folder / EXTRA_FILES["visual"], tci, g60, nodata=0)
    profile = {"driver": "PNG", "width": g60.width, "height": g60.height, "count": 3,
               "dtype": "uint8"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a PNG
        with rasterio.open(folder / EXTRA_FILES["rendered_preview"], "w", **profile) as dst:
            dst.write(tci)
    _write_metadata(folder, scene["item_id"], scene["baseline"])


def _write_metadata(folder: Path, item_id: str, baseline: str) -> None:
    (folder / EXTRA_FILES["granule-metadata"]).write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<n1:Level-2A_Tile_ID><General_Info><TILE_ID>{item_id}</TILE_ID>'
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
        f"<BOA_ADD_OFFSET>{-BOA_ADD_OFFSET if baseline >= '04.00' else 0}</BOA_ADD_OFFSET>"
        "</General_Info></n1:Level-2A_Tile_ID>\n")


def reprocess(folder: Path, original: dict, dup: dict) -> None:
    """Turn a copy of ``original``'s files into its reprocessing at ``dup["baseline"]``: the
    optical DN gain the offset the new baseline carries (0 stays nodata)."""
    add = int(dup["offset"]) - int(original["offset"])
    for band in S2_BANDS:
        path = folder / f"{band}.tif"
        with rasterio.open(path) as src:
            dn = src.read(1)
            g = Grid(src.crs.to_string(), tuple(src.transform)[:6], (src.height, src.width))
        shifted = np.where(dn > 0, dn.astype("int32") + add, 0).astype("uint16")
        write_cog(path, shifted, g, nodata=0)
    _write_metadata(folder, dup["item_id"], dup["baseline"])
