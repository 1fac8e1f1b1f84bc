"""Byte-reproducible Cloud-Optimized GeoTIFF writing for the demo world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from lcgee.grid import Grid

__all__ = ["BLOCKSIZE", "overview_count", "write_cog"]

BLOCKSIZE = 512


def overview_count(height: int, width: int) -> int:
    """Halvings until the image fits one block, at least one so every COG has overviews."""
    n, side = 0, max(height, width)
    while side > BLOCKSIZE:
        side = (side + 1) // 2
        n += 1
    return max(n, 1)


def write_cog(path: Path, data: np.ndarray, grid: Grid, *, nodata: float | None,
              resampling: str = "AVERAGE", colormap: dict[int, tuple[int, ...]] | None = None,
              descriptions: tuple[str, ...] | None = None) -> None:
    """Write a 2-D or band-first 3-D array as a ZSTD COG (512 px tiles, overviews).

    GDAL writes no timestamps into these files, so equal arrays give equal bytes.
    """
    arr = data if data.ndim == 3 else data[None]
    count, height, width = arr.shape
    if (height, width) != grid.shape:
        raise ValueError(f"array shape {(height, width)} does not match grid {grid.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_NUM_THREADS="1"), rasterio.open(
        path, "w", driver="COG", height=height, width=width, count=count, dtype=arr.dtype,
        crs=grid.crs, transform=grid.affine, nodata=nodata, BLOCKSIZE=BLOCKSIZE,
        COMPRESS="ZSTD", LEVEL=1, OVERVIEW_RESAMPLING=resampling,
        OVERVIEW_COUNT=overview_count(height, width), BIGTIFF="NO",
    ) as dst:
        dst.write(arr)
        if colormap:
            dst.write_colormap(1, colormap)
        for i, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, text)
