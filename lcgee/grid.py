"""The one pixel grid every stage shares: CRS, affine transform and shape.

A :class:`Grid` is immutable. It is built once from the params (:meth:`Grid.from_bbox`) and
handed to every stage; it converts to what each library wants: an odc-geo ``GeoBox`` for
odc-stac, xarray coordinates, rasterio profiles, and Earth Engine's ``crs`` +
``crsTransform`` + ``dimensions``. No stage re-derives a grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from lcgee.errors import DataError, ParamsError

if TYPE_CHECKING:
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from rasterio.io import DatasetReader

__all__ = ["Grid", "utm_epsg"]

BBox = tuple[float, float, float, float]


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing a point (Norway/Svalbard exceptions ignored)."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid.

    Attributes:
        crs: the coordinate reference system as ``"EPSG:nnnn"`` (or WKT for exotic ones).
        transform: affine transform of the top-left pixel corner, as a 6-tuple
            ``(a, b, c, d, e, f)`` (``a`` = pixel width, ``e`` = minus pixel height).
        shape: ``(height, width)`` in pixels.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        a, b, _, d, e, _ = self.transform
        if b != 0 or d != 0 or a <= 0 or e >= 0:
            raise ParamsError(
                f"grid transform {self.transform} is not north-up with positive pixel size",
                where="grid",
                fix="use a transform (res, 0, left, 0, -res, top)",
            )
        if self.shape[0] <= 0 or self.shape[1] <= 0:
            raise ParamsError(f"grid shape {self.shape} is empty", where="grid")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_bounds(cls, bounds: BBox, resolution: float, crs: str, *,
                    shape: tuple[int, int] | None = None, tolerance: float = 0.005) -> Grid:
        """Grid covering ``(left, bottom, right, top)`` in ``crs``, snapped outward to ``resolution``.

        Bounds of a raster whose pixels are *nearly* ``resolution`` (within ``tolerance``,
        relative: 0.5 % by default, e.g. 9.995 m or 10.005 m pixels for 10 m) keep its shape
        instead of gaining a row and a column from the outward snap: always when ``shape``
        ``(height, width)`` is given (the raster's; its pixel size is checked), and without
        it when the left and top edges lie on the ``resolution`` lattice. The grid then has
        pixels of exactly ``resolution`` from the raster's top-left corner (snapped to the
        lattice when within ``tolerance`` of a pixel of it). :meth:`from_raster` does this
        from a raster object directly.
        """
        kept = _near_shape(bounds, resolution, tolerance, shape)
        if kept is not None:
            left, top = (_snap(bounds[0], resolution, tolerance),
                         _snap(bounds[3], resolution, tolerance))
            return cls(crs=_crs_string(crs), transform=(float(resolution), 0.0, float(left), 0.0,
                                                        -float(resolution), float(top)),
                       shape=kept)
        left, bottom, right, top = bounds
        left = math.floor(left / resolution) * resolution
        bottom = math.floor(bottom / resolution) * resolution
        right = math.ceil(right / resolution) * resolution
        top = math.ceil(top / resolution) * resolution
        width = int(round((right - left) / resolution))
        height = int(round((top - bottom) / resolution))
        return cls(
            crs=_crs_string(crs),
            transform=(float(resolution), 0.0, float(left), 0.0, -float(resolution), float(top)),
            shape=(height, width),
        )

    @classmethod
    def from_raster(cls, source: DatasetReader | xr.DataArray | xr.Dataset,
                    resolution: float | None = None, *,
                    tolerance: float = 0.005) -> Grid:
        """The grid of a raster: a rasterio dataset, or an xarray/rioxarray object.

        ``source`` may be an open ``rasterio`` dataset (``.transform``, ``.shape``, ``.crs``)
        or a DataArray/Dataset with the ``rio`` accessor (rioxarray) or with regularly spaced
        ``x``/``y`` pixel-centre coordinates and a ``crs`` (``rio.crs``, ``spatial_ref`` or
        ``attrs["crs"]``). With ``resolution`` None the raster's own pixel size is kept;
        otherwise its pixels must be within ``tolerance`` (relative) of ``resolution``, and the
        grid keeps the raster's shape and top-left corner with pixels of exactly
        ``resolution`` (the corner snapped to the ``resolution`` lattice when it is within
        ``tolerance`` of it).
        """
        transform, shape, crs = _raster_geometry(source)
        a, _, c, _, e, f = transform
        if resolution is None:
            return cls(_crs_string(crs), (float(a), 0.0, float(c), 0.0, float(e), float(f)),
                       shape)
        bounds = (c, f + e * shape[0], c + a * shape[1], f)
        return cls.from_bounds(bounds, resolution, crs, shape=shape, tolerance=tolerance)

    @classmethod
    def from_bbox(cls, bbox: BBox, resolution: float, crs: str | None = None) -> Grid:
        """Grid covering a lon/lat ``bbox``; ``crs`` defaults to the UTM zone of its centre."""
        west, south, east, north = bbox
        if crs is None:
            crs = f"EPSG:{utm_epsg((west + east) / 2, (south + north) / 2)}"
        to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        xs, ys = to_crs.transform(
            np.array([west, east, east, west, (west + east) / 2, (west + east) / 2]),
            np.array([south, south, north, north, south, north]),
        )
        return cls.from_bounds((min(xs), min(ys), max(xs), max(ys)), resolution, crs)

    # ---- accessors ----------------------------------------------------------------------
    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def resolution(self) -> float:
        return self.transform[0]

    @property
    def epsg(self) -> int | None:
        return CRS.from_user_input(self.crs).to_epsg()

    @property
    def bounds(self) -> BBox:
        """``(left, bottom, right, top)`` in the grid's CRS."""
        a, _, c, _, e, f = self.transform
        return (c, f + e * self.height, c + a * self.width, f)

    @property
    def lonlat_bbox(self) -> BBox:
        """``(west, south, east, north)`` in WGS 84 that contains the whole grid."""
        left, bottom, right, top = self.bounds
        to_ll = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        xs = np.concatenate([np.linspace(left, right, 21), np.full(21, right),
                             np.linspace(right, left, 21), np.full(21, left)])
        ys = np.concatenate([np.full(21, bottom), np.linspace(bottom, top, 21),
                             np.full(21, top), np.linspace(top, bottom, 21)])
        lon, lat = to_ll.transform(xs, ys)
        return (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))

    @property
    def xs(self) -> np.ndarray:
        """x coordinates of pixel centres."""
        a, _, c, *_ = self.transform
        return c + a * (np.arange(self.width) + 0.5)

    @property
    def ys(self) -> np.ndarray:
        """y coordinates of pixel centres (decreasing)."""
        *_, e, f = self.transform
        return f + e * (np.arange(self.height) + 0.5)

    def coords(self) -> dict[str, np.ndarray]:
        """xarray coordinates ``{"y": ..., "x": ...}``."""
        return {"y": self.ys, "x": self.xs}

    # ---- derived grids --------------------------------------------------------------------
    def window(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The sub-grid of a pixel window (clipped to this grid)."""
        row_off, col_off = max(0, row_off), max(0, col_off)
        height = min(height, self.height - row_off)
        width = min(width, self.width - col_off)
        a, _, c, _, e, f = self.transform
        return Grid(self.crs, (a, 0.0, c + a * col_off, 0.0, e, f + e * row_off), (height, width))

    def crop(self, bounds: BBox) -> Grid:
        """The sub-grid of the pixels whose centres fall in ``bounds`` (grid CRS)."""
        left, bottom, right, top = bounds
        a, _, c, _, e, f = self.transform
        col0 = max(0, int(math.ceil((left - c) / a - 0.5)))
        col1 = min(self.width, int(math.floor((right - c) / a - 0.5)) + 1)
        row0 = max(0, int(math.ceil((top - f) / e - 0.5)))
        row1 = min(self.height, int(math.floor((bottom - f) / e - 0.5)) + 1)
        if col1 <= col0 or row1 <= row0:
            raise ParamsError(f"bounds {bounds} do not overlap the grid {self.bounds}", where="grid")
        return self.window(row0, col0, row1 - row0, col1 - col0)

    def crop_lonlat(self, bbox: BBox) -> Grid:
        """The sub-grid covering a lon/lat bbox (pixels stay aligned with this grid)."""
        to_crs = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        west, south, east, north = bbox
        xs, ys = to_crs.transform(np.array([west, east, east, west]),
                                  np.array([south, south, north, north]))
        return self.crop((min(xs), min(ys), max(xs), max(ys)))

    def offset_in(self, parent: Grid) -> tuple[int, int]:
        """``(row, col)`` of this grid's top-left pixel inside an aligned ``parent`` grid."""
        pa, _, pc, _, pe, pf = parent.transform
        a, _, c, _, e, f = self.transform
        if a != pa or e != pe or self.crs != parent.crs:
            raise DataError(f"grid ({self.crs}, {a:g} m) and parent grid ({parent.crs}, {pa:g} m) "
                            "differ in resolution or CRS", where="Grid.offset_in",
                            fix="cut the sub-grid from the parent (Grid.crop / crop_lonlat)")
        col, row = (c - pc) / a, (f - pf) / e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise DataError(f"grid origin ({c}, {f}) is not on a pixel corner of the parent grid "
                            f"(offset {row:g} rows, {col:g} columns)", where="Grid.offset_in",
                            fix="cut the sub-grid from the parent (Grid.crop / crop_lonlat)")
        return int(round(row)), int(round(col))

    def coarsen(self, factor: int) -> Grid:
        """The grid with pixels ``factor`` times larger (shape rounded up)."""
        a, _, c, _, e, f = self.transform
        return Grid(self.crs, (a * factor, 0.0, c, 0.0, e * factor, f),
                    (math.ceil(self.height / factor), math.ceil(self.width / factor)))

    # ---- conversions ----------------------------------------------------------------------
    @property
    def geobox(self) -> GeoBox:
        """This grid as an odc-geo ``GeoBox`` (what odc-stac's ``load(geobox=...)`` takes)."""
        from odc.geo.geobox import GeoBox

        return GeoBox(self.shape, self.affine, self.crs)

    def rasterio_profile(self, **extra: Any) -> dict[str, Any]:
        """A rasterio profile (driver GTiff) for a single raster on this grid."""
        profile: dict[str, Any] = {
            "driver": "GTiff", "height": self.height, "width": self.width,
            "crs": self.crs, "transform": self.affine,
        }
        profile.update(extra)
        return profile

    def ee_params(self) -> dict[str, Any]:
        """Earth Engine's ``crs``, ``crsTransform`` and ``dimensions`` for this grid."""
        return {"crs": self.crs, "crsTransform": list(self.transform),
                "dimensions": f"{self.width}x{self.height}"}

    def to_dict(self) -> dict[str, Any]:
        return {"crs": self.crs, "transform": list(self.transform), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(d["crs"], tuple(d["transform"]), tuple(d["shape"]))  # type: ignore[arg-type]


def _near_shape(bounds: BBox, resolution: float, tolerance: float,
                shape: tuple[int, int] | None) -> tuple[int, int] | None:
    """``(height, width)`` when ``bounds`` are a raster of nearly-``resolution`` pixels."""
    left, bottom, right, top = bounds
    if shape is None:
        if any(abs(v / resolution - round(v / resolution)) > 1e-6 for v in (left, top)):
            return None
        n = (round((top - bottom) / resolution), round((right - left) / resolution))
    else:
        n = (int(shape[0]), int(shape[1]))
    sizes = [(top - bottom) / max(n[0], 1), (right - left) / max(n[1], 1)]
    if min(n) < 1 or any(abs(p - resolution) > tolerance * resolution for p in sizes):
        if shape is not None:
            raise ParamsError(
                f"a raster of {n[0]} x {n[1]} pixels over {bounds} has pixels of "
                f"{sizes[1]:g} x {sizes[0]:g}, not within {tolerance:.1%} of {resolution:g}",
                where="grid", fix="resample the raster to the grid resolution first, or build "
                "the grid at the raster's own resolution (Grid.from_raster(src))")
        return None
    if shape is None and all(abs(p - resolution) <= 1e-9 * resolution for p in sizes):
        return None  # exact: the usual path gives the same grid
    return n


def _snap(value: float, resolution: float, tolerance: float) -> float:
    """``value`` moved onto the ``resolution`` lattice when it is within ``tolerance`` px."""
    snapped = round(value / resolution) * resolution
    return snapped if abs(snapped - value) <= tolerance * resolution else value


def _raster_geometry(source: Any) -> tuple[tuple[float, ...], tuple[int, int], Any]:
    """``(transform 6-tuple, (height, width), crs)`` of a rasterio dataset or xarray object."""
    if hasattr(source, "transform") and hasattr(source, "crs") and hasattr(source, "height"):
        t = source.transform
        return (t.a, t.b, t.c, t.d, t.e, t.f), (int(source.height), int(source.width)), \
            source.crs.to_string()
    rio = getattr(source, "rio", None)
    if rio is not None:
        try:
            t, crs = rio.transform(recalc=True), rio.crs
            if crs is not None:
                return (t.a, t.b, t.c, t.d, t.e, t.f), (int(rio.height), int(rio.width)), \
                    crs.to_string()
        except Exception:  # fall back to the coordinates below
            pass
    coords = getattr(source, "coords", {})
    if "x" not in coords or "y" not in coords:
        raise ParamsError(f"cannot read a grid from {type(source).__name__}", where="Grid.from_raster",
                          fix="pass a rasterio dataset or a DataArray with x/y coordinates and a crs")
    xs, ys = np.asarray(source["x"], float), np.asarray(source["y"], float)
    crs = source.attrs.get("crs") or (source["spatial_ref"].attrs.get("crs_wkt")
                                      if "spatial_ref" in coords else None)
    if crs is None or xs.size < 2 or ys.size < 2:
        raise ParamsError("the raster has no crs or fewer than 2 pixels along an axis",
                          where="Grid.from_raster", fix="set attrs['crs'] (e.g. 'EPSG:32652')")
    dx, dy = (xs[-1] - xs[0]) / (xs.size - 1), (ys[-1] - ys[0]) / (ys.size - 1)
    return (dx, 0.0, xs[0] - dx / 2, 0.0, dy, ys[0] - dy / 2), (ys.size, xs.size), crs


def _crs_string(crs: str | int) -> str:
    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg}" if epsg else parsed.to_wkt()
