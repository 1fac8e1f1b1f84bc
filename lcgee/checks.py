"""Checks of a params file that go beyond its schema, all made before any work starts.

:func:`check_inputs` runs after the pydantic model has validated (``lcgee params check`` and
``lcgee run`` both go through :func:`lcgee.params.load_params`). It looks at what a notebook
would otherwise discover minutes later:

* CRS strings (``aoi.crs``, ``regions.*.crs``, ``grid.crs``) that pyproj does not know;
* spectral indices that do not exist, or that need bands missing from ``features.bands``;
* GeoJSON files: present, readable text, valid JSON, polygons only, in lon/lat (RFC 7946);
  relative paths are resolved against the params file's folder (not the output folder), and
  the returned params hold them as absolute paths so every stage finds them;
* the AOI spans at least one pixel of the grid in each direction, and every region lies
  inside the AOI (within one pixel) and spans at least one pixel.

Each problem is a :class:`~lcgee.errors.ParamsError` naming the field, the value and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from lcgee.errors import ParamsError
from lcgee.indices import INDICES
from lcgee.rungrid import build_grid

if TYPE_CHECKING:  # lcgee.params imports this module at its top; the models are annotations here
    from lcgee.params import Area, Params

__all__ = ["check_inputs", "read_geojson"]

_LONLAT = {"EPSG:4326", "OGC:CRS84", "URN:OGC:DEF:CRS:OGC:1.3:CRS84", "URN:OGC:DEF:CRS:EPSG::4326",
           "CRS84"}
_POLYGONAL = {"Polygon", "MultiPolygon"}


def check_inputs(params: Params, base: Path) -> Params:
    """Check what the schema cannot; return ``params`` with GeoJSON paths made absolute."""
    _check_crs(params)
    _check_indices(params)
    params = _resolve_geojson(params, base)
    for name, area in _areas(params).items():
        if area.geojson is not None:
            read_geojson(area.geojson, f"{name}.geojson")
    _check_extents(params)
    return params


def _areas(params: Params) -> dict[str, Area]:
    return {"aoi": params.aoi, **{f"regions.{k}": r for k, r in params.regions.items()}}


# ---- CRS and indices ------------------------------------------------------------------------

def _check_crs(params: Params) -> None:
    fields = {f"{name}.crs": area.crs for name, area in _areas(params).items()}
    if params.grid.crs is not None:
        fields["grid.crs"] = params.grid.crs
    for field, value in fields.items():
        try:
            CRS.from_user_input(value)
        except CRSError:
            raise ParamsError(f"unknown CRS {value!r}", where=field,
                              fix="give an EPSG code such as EPSG:4326 or EPSG:32652") from None


def _check_indices(params: Params) -> None:
    bands = set(params.features.bands)
    for name in params.features.indices:
        index = INDICES.get(name)
        if index is None:
            raise ParamsError(f"unknown index {name!r}", where="features.indices",
                              fix=f"choose from {', '.join(INDICES)}")
        missing = [b for b in index.bands if b not in bands]
        if missing:
            raise ParamsError(
                f"index {name} needs band(s) {missing}, which are not in features.bands "
                f"{list(params.features.bands)}", where="features.indices",
                fix=f"add {', '.join(missing)} to features.bands (and bands), or drop {name}")


# ---- GeoJSON --------------------------------------------------------------------------------

def _resolve_geojson(params: Params, base: Path) -> Params:
    def absolute(area: Area) -> Area:
        if area.geojson is None or area.geojson.is_absolute():
            return area
        return area.model_copy(update={"geojson": (base / area.geojson).resolve()})

    regions = {k: absolute(r) for k, r in params.regions.items()}
    return params.model_copy(update={"aoi": absolute(params.aoi), "regions": regions})


def read_geojson(path: Path, field: str) -> list[Any]:
    """The polygonal shapely geometries of a lon/lat GeoJSON file, or a ParamsError."""
    from shapely.geometry import shape

    fix = ("give a GeoJSON Polygon/MultiPolygon (Feature or FeatureCollection) in lon/lat, "
           "or use `bbox` instead")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"GeoJSON file {str(path)!r} does not exist", where=field,
                          fix="give a path relative to the params file's folder, or absolute"
                          ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"GeoJSON file {str(path)!r} cannot be read as text ({exc})",
                          where=field, fix=fix) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"{str(path)!r} is not valid JSON ({exc})", where=field,
                          fix=fix) from None
    _check_geojson_crs(data, path, field)
    geometries = _geometries(data, path, field, fix)
    try:
        geoms = [shape(g) for g in geometries]
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ParamsError(f"{str(path)!r} holds a malformed geometry ({exc})", where=field,
                          fix=fix) from None
    for g in geoms:
        w, s, e, n = g.bounds
        if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
            raise ParamsError(f"{str(path)!r} has coordinates outside lon/lat ({g.bounds}); "
                              "GeoJSON is lon/lat (RFC 7946)", where=field,
                              fix="reproject it to EPSG:4326 (ogr2ogr -t_srs EPSG:4326), or "
                              "give `bbox` with `crs`")
        if g.is_empty or not g.is_valid:
            from shapely.validation import explain_validity

            raise ParamsError(f"{str(path)!r} holds an invalid polygon ({explain_validity(g)})",
                              where=field, fix="repair it (e.g. shapely make_valid) or use bbox")
    return geoms


def _check_geojson_crs(data: Any, path: Path, field: str) -> None:
    crs = data.get("crs") if isinstance(data, dict) else None
    if crs is None:
        return
    name = str((crs.get("properties") or {}).get("name", "")) if isinstance(crs, dict) else ""
    if name.upper() not in _LONLAT:
        raise ParamsError(f"{str(path)!r} declares CRS {name or crs!r}; lcgee reads GeoJSON in "
                          "lon/lat (EPSG:4326, RFC 7946)", where=field,
                          fix="reproject it to EPSG:4326 (ogr2ogr -t_srs EPSG:4326)")


def _geometries(data: Any, path: Path, field: str, fix: str) -> list[dict]:
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        feats = data.get("features") or []
        geoms = [f.get("geometry") if isinstance(f, dict) else None for f in feats]
    elif kind == "Feature":
        geoms = [data.get("geometry")]
    elif kind in _POLYGONAL or kind in ("Point", "MultiPoint", "LineString", "MultiLineString",
                                        "GeometryCollection"):
        geoms = [data]
    else:
        raise ParamsError(f"{str(path)!r} is not GeoJSON (type {kind!r})", where=field, fix=fix)
    if not geoms:
        raise ParamsError(f"{str(path)!r} has no features", where=field, fix=fix)
    for g in geoms:
        gtype = g.get("type") if isinstance(g, dict) else None
        if gtype not in _POLYGONAL:
            raise ParamsError(f"{str(path)!r} holds a {gtype or 'missing'} geometry; an area "
                              "must be polygonal", where=field, fix=fix)
    return geoms  # type: ignore[return-value]


# ---- extents --------------------------------------------------------------------------------

def _bounds_in(area: Area, crs: str) -> tuple[float, float, float, float]:
    """The area's bounds in ``crs`` (as the stages crop it)."""
    if area.bbox is not None and area.crs.upper() == crs.upper():
        return area.bbox
    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return t.transform_bounds(*area.lonlat_bbox())


def _check_extents(params: Params) -> None:
    grid = build_grid(params)
    res = params.grid.resolution
    w, s, e, n = aoi = _bounds_in(params.aoi, grid.crs)
    if e - w < res or n - s < res:
        raise ParamsError(f"the AOI spans {e - w:.1f} x {n - s:.1f} m, less than one "
                          f"{res:g} m pixel", where="aoi",
                          fix="give a larger area or a finer grid.resolution")
    for name, region in params.regions.items():
        rw, rs, re_, rn = _bounds_in(region, grid.crs)
        if re_ - rw < res or rn - rs < res:
            raise ParamsError(f"region {name!r} spans {re_ - rw:.1f} x {rn - rs:.1f} m, less "
                              f"than one {res:g} m pixel", where=f"regions.{name}",
                              fix="give the region a larger area")
        if rw < w - res or rs < s - res or re_ > e + res or rn > n + res:
            raise ParamsError(
                f"region {name!r} {_fmt((rw, rs, re_, rn))} is not inside the AOI {_fmt(aoi)} "
                f"({grid.crs})", where=f"regions.{name}",
                fix="move the region inside the AOI, or enlarge the AOI to cover it")


def _fmt(bounds: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(str(round(v, 6)).removesuffix(".0") for v in bounds) + "]"
