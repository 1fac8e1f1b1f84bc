"""WorldCover as ESA publishes it: a geographic (EPSG:4326) map on the 1/12000 degree lattice.

The demo derives its label map on the world's UTM grid, then publishes it the way ESA does:
in EPSG:4326, on the lattice of the 3 x 3 degree tile that holds it (pixel edges at multiples of
1/12000 degree), cut to the world's extent. What a run sees on its UTM grid is that published
map sampled at each pixel centre (nearest neighbour); :func:`onto_grid` computes it
independently of the loader (pyproj on pixel centres) so tests can compare the two.
"""

from __future__ import annotations

import math

import numpy as np
from pyproj import Transformer

from lcgee.grid import Grid

__all__ = ["DEGREE_PX", "publish_grid", "to_geographic", "onto_grid", "tile_name"]

#: WorldCover pixels per degree (10 m at the equator).
DEGREE_PX = 12000


def tile_name(lon: float, lat: float) -> str:
    """The 3 x 3 degree tile holding a point, e.g. ``N33E129``."""
    lat0, lon0 = 3 * math.floor(lat / 3), 3 * math.floor(lon / 3)
    return (f"{'N' if lat0 >= 0 else 'S'}{abs(lat0):02d}"
            f"{'E' if lon0 >= 0 else 'W'}{abs(lon0):03d}")


def publish_grid(grid: Grid) -> Grid:
    """The EPSG:4326 grid on WorldCover's lattice that covers ``grid``."""
    w, s, e, n = grid.lonlat_bbox
    c0, c1 = math.floor(w * DEGREE_PX), math.ceil(e * DEGREE_PX)
    r0, r1 = math.floor(s * DEGREE_PX), math.ceil(n * DEGREE_PX)
    res = 1.0 / DEGREE_PX
    return Grid("EPSG:4326", (res, 0.0, c0 / DEGREE_PX, 0.0, -res, r1 / DEGREE_PX),
                (r1 - r0, c1 - c0))


def _sample(values: np.ndarray, src: Grid, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``values`` (on ``src``) at points given in ``src``'s CRS; 0 outside."""
    a, _, c, _, e, f = src.transform
    cols = np.floor((xs - c) / a).astype(np.int64)
    rows = np.floor((ys - f) / e).astype(np.int64)
    inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
    out = np.zeros(xs.shape, dtype=values.dtype)
    out[inside] = values[rows[inside], cols[inside]]
    return out


def _centres(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    a, _, c, _, e, f = grid.transform
    xs = c + a * (np.arange(grid.width) + 0.5)
    ys = f + e * (np.arange(grid.height) + 0.5)
    return np.meshgrid(xs, ys)


def to_geographic(labels: np.ndarray, grid: Grid) -> tuple[np.ndarray, Grid]:
    """``labels`` on ``grid`` (UTM) published on the EPSG:4326 lattice (nearest)."""
    geo = publish_grid(grid)
    lon, lat = _centres(geo)
    x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(lon, lat)
    return _sample(labels, grid, np.asarray(x), np.asarray(y)), geo


def onto_grid(published: np.ndarray, geo: Grid, grid: Grid) -> np.ndarray:
    """The published map at the pixel centres of ``grid`` (what a nearest-neighbour load gives)."""
    x, y = _centres(grid)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return _sample(published, geo, np.asarray(lon), np.asarray(lat))
