"""Granules of a second UTM zone: some demo scenes are published in a neighbouring zone's CRS.

Planetary Computer serves each granule in the UTM zone of its MGRS tile, so an area near a zone
boundary gets scenes in two CRSs that the loader must reproject onto one grid. The demo world is
synthetic: it publishes every sixth scene as a granule of a made-up zone-53 tile (real zone-53
tiles do not reach 130.35 E), its rasters warped (nearest neighbour, same pixel size) from the
world grid into EPSG:32653, so the two-zone path runs offline.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from lcgee.demo._cog import write_cog
from lcgee.grid import Grid

__all__ = ["SECOND_ZONE_EPSG", "SECOND_ZONE_TILE", "in_second_zone", "move", "item_proj"]

SECOND_ZONE_EPSG = 32653
SECOND_ZONE_TILE = "53SJC"
_EVERY = 6


def in_second_zone(index: int) -> bool:
    """Whether the scene of this plan index is published in the second zone."""
    return index % _EVERY == _EVERY // 2


def _target(src: rasterio.io.DatasetReader, epsg: int) -> Grid:
    res = src.res[0]
    w, s, e, n = transform_bounds(src.crs, f"EPSG:{epsg}", *src.bounds)
    x0, x1 = math.floor(w / res) * res, math.ceil(e / res) * res
    y0, y1 = math.floor(s / res) * res, math.ceil(n / res) * res
    return Grid(f"EPSG:{epsg}", (res, 0.0, x0, 0.0, -res, y1),
                (round((y1 - y0) / res), round((x1 - x0) / res)))


def move(folder: Path, epsg: int = SECOND_ZONE_EPSG) -> None:
    """Warp every GeoTIFF of a granule folder into ``epsg`` (nearest, 0 stays nodata)."""
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            data = src.read()
            g = _target(src, epsg)
            out = np.zeros((src.count, *g.shape), dtype=data.dtype)
            for b in range(src.count):
                reproject(data[b], out[b], src_transform=src.transform, src_crs=src.crs,
                          src_nodata=0, dst_transform=rasterio.Affine(*g.transform),
                          dst_crs=g.crs, dst_nodata=0, resampling=Resampling.nearest)
        resampling = "NEAREST" if path.stem in ("SCL", "TCI") else "AVERAGE"
        write_cog(path, out if out.shape[0] > 1 else out[0], g, nodata=0, resampling=resampling)


def item_proj(item: dict, root: Path) -> dict:
    """The item with ``proj:*`` of every raster asset read from its file, and ``proj:epsg``."""
    for asset in item["assets"].values():
        if "proj:shape" not in asset:
            continue
        with rasterio.open(root / asset["href"]) as src:
            asset["proj:shape"] = [src.height, src.width]
            asset["proj:transform"] = list(src.transform)[:6]
            asset["proj:bbox"] = list(src.bounds)
            epsg = src.crs.to_epsg()
    item["properties"]["proj:epsg"] = epsg
    return item
