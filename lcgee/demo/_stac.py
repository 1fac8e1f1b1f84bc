"""STAC JSON of the demo world, shaped like Planetary Computer's (hrefs relative to the root)."""

from __future__ import annotations

import math
from datetime import datetime

from pyproj import Transformer

from lcgee.demo._common import (
    BAND_INFO,
    MGRS_TILE,
    PROBABILITY_NODATA,
    RELATIVE_ORBIT,
    S2_BANDS,
    WORLDCOVER_CLASSES,
)
from lcgee.demo._extras import EXTRA_FILES
from lcgee.grid import Grid

__all__ = [
    "COG_TYPE",
    "MGRS_TILE",
    "WORLDCOVER_ITEM_ID",
    "WORLDCOVER_MAP",
    "collection_extras",
    "collection",
    "item_collection",
    "probability_item",
    "s2_item",
    "scene_ids",
    "worldcover_item",
]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
WORLDCOVER_ITEM_ID = "ESA_WorldCover_10m_2021_v200_N33E129"
#: The published (EPSG:4326) map, relative to the world root.
WORLDCOVER_MAP = f"cogs/{WORLDCOVER_ITEM_ID}/{WORLDCOVER_ITEM_ID}_Map.tif"
_EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "class": "https://stac-extensions.github.io/classification/v1.0.0/schema.json",
    "grid": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "item_assets": "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
}


def _compact(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.024000Z")


def scene_ids(scene: dict, generated: datetime) -> dict[str, str]:
    """Planetary Computer / ESA identifiers of a granule and its Earth Engine ``system:index``."""
    m, take, strip = scene["mission"], _compact(scene["datatake_start"]), _compact(scene["datastrip_start"])
    gen, base = _compact(generated), scene["baseline"]
    orbit = f"{scene['abs_orbit']:06d}"
    tile = scene.get("tile", MGRS_TILE)
    return {
        "item_id": f"{m}_MSIL2A_{take}_R{RELATIVE_ORBIT:03d}_T{tile}_{gen}",
        "system_index": f"{take}_{strip}_T{tile}",
        "datatake_id": f"G{m}_{take}_{orbit}_N{base}",
        "datastrip_id": f"{m}_OPER_MSI_L2A_DS_ESRI_{gen}_S{strip}_N{base}",
        "granule_id": f"{m}_OPER_MSI_L2A_TL_ESRI_{gen}_A{orbit}_T{tile}_N{base}",
        "product_uri": (f"{m}_MSIL2A_{take}_N{base.replace('.', '')}_R{RELATIVE_ORBIT:03d}"
                        f"_T{tile}_{gen}.SAFE"),
    }


def _footprint(grid: Grid, nodata: dict | None) -> tuple[dict, list[float]]:
    """Lon/lat polygon (and bbox) of the valid part of the grid."""
    h, w = grid.shape
    if not nodata:
        corners = [(0, 0), (w, 0), (w, h), (0, h)]
    elif nodata["side"] == "west":
        corners = [(nodata["top_px"], 0), (w, 0), (w, h), (nodata["bottom_px"], h)]
    else:
        corners = [(0, 0), (w - nodata["top_px"], 0), (w - nodata["bottom_px"], h), (0, h)]
    a, _, c, _, e, f = grid.transform
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    ring = [to_ll.transform(c + a * col, f + e * row) for col, row in corners]
    ring = [[round(x, 7), round(y, 7)] for x, y in ring]
    ring.append(ring[0])
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return {"type": "Polygon", "coordinates": [ring]}, [min(xs), min(ys), max(xs), max(ys)]


def _proj(grid: Grid) -> dict:
    return {"proj:shape": list(grid.shape), "proj:transform": list(grid.transform),
            "proj:bbox": list(grid.bounds)}


def _band_asset(item_id: str, band: str, grid: Grid) -> dict:
    res = S2_BANDS[band]
    common, desc, centre, fwhm = BAND_INFO[band]
    eo = {"name": band, "description": desc, "center_wavelength": centre,
          "full_width_half_max": fwhm}
    if common:
        eo["common_name"] = common
    return {
        "href": f"cogs/{item_id}/{band}.tif", "type": COG_TYPE, "title": f"{desc} - {res}m",
        "roles": ["data"], "gsd": float(res), "eo:bands": [eo], **_proj(grid.coarsen(res // 10)),
    }


def _extra_assets(item_id: str, grid: Grid) -> dict:
    """AOT, WVP, visual, metadata and preview, as Planetary Computer items carry them (no
    ``raster:bands``: nodata is not declared)."""
    def href(key: str) -> str:
        return f"cogs/{item_id}/{EXTRA_FILES[key]}"

    return {
        "AOT": {"href": href("AOT"), "type": COG_TYPE, "roles": ["data"], "gsd": 20.0,
                "title": "Aerosol optical thickness (AOT)", **_proj(grid.coarsen(2))},
        "WVP": {"href": href("WVP"), "type": COG_TYPE, "roles": ["data"], "gsd": 20.0,
                "title": "Water vapour (WVP)", **_proj(grid.coarsen(2))},
        "visual": {"href": href("visual"), "type": COG_TYPE, "roles": ["data"], "gsd": 60.0,
                   "title": "True color image", **_proj(grid.coarsen(6)),
                   "eo:bands": [{"name": b, "common_name": BAND_INFO[b][0]}
                                for b in ("B04", "B03", "B02")]},
        "granule-metadata": {"href": href("granule-metadata"), "type": "application/xml",
                             "roles": ["metadata"], "title": "Granule metadata"},
        "rendered_preview": {"href": href("rendered_preview"), "type": "image/png",
                             "roles": ["overview"], "title": "Rendered preview"},
    }


def _links() -> list[dict]:
    """An item's link to its collection (required by STAC when ``collection`` is set)."""
    return [{"rel": "collection", "href": "./collection.json", "type": "application/json"}]


def _reflectance_factor(doy: int) -> float:
    return 1.0 / (1.0 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))) ** 2


def s2_item(scene: dict, ids: dict[str, str], generated: datetime, grid: Grid, stats: dict) -> dict:
    """A ``sentinel-2-l2a`` item as Planetary Computer publishes it."""
    geometry, bbox = _footprint(grid, scene["nodata"])
    pct = stats["scl_percentages"]
    item_id = ids["item_id"]
    assets = {band: _band_asset(item_id, band, grid) for band in S2_BANDS}
    assets["SCL"] = {
        "href": f"cogs/{item_id}/SCL.tif", "type": COG_TYPE, "title": "Scene classfication map (SCL)",
        "roles": ["data"], "gsd": 20.0, **_proj(grid.coarsen(2)),
    }
    assets.update(_extra_assets(item_id, grid))
    props = {
        "datetime": _iso(scene["datatake_start"]), "platform": scene["platform"],
        "proj:epsg": grid.epsg, "instruments": ["msi"],
        "s2:mgrs_tile": scene.get("tile", MGRS_TILE), "constellation": "Sentinel 2",
        "s2:granule_id": ids["granule_id"],
        "eo:cloud_cover": pct["cloud_cover"], "s2:datatake_id": ids["datatake_id"],
        "s2:product_uri": ids["product_uri"], "s2:datastrip_id": ids["datastrip_id"],
        "s2:product_type": "S2MSI2A", "sat:orbit_state": "descending",
        "s2:datatake_type": "INS-NOBS", "s2:generation_time": _iso(generated),
        "sat:relative_orbit": RELATIVE_ORBIT, "s2:water_percentage": pct["water"],
        "s2:mean_solar_zenith": scene["sun_zenith"], "s2:mean_solar_azimuth": scene["sun_azimuth"],
        "s2:processing_baseline": scene["baseline"], "s2:snow_ice_percentage": pct["snow"],
        "s2:vegetation_percentage": pct["vegetation"], "s2:thin_cirrus_percentage": pct["cirrus"],
        "s2:cloud_shadow_percentage": pct["shadow"], "s2:nodata_pixel_percentage": pct["nodata"],
        "s2:unclassified_percentage": pct["unclassified"],
        "s2:dark_features_percentage": pct["dark"], "s2:not_vegetated_percentage": pct["not_vegetated"],
        "s2:degraded_msi_data_percentage": 0.0, "s2:high_proba_clouds_percentage": pct["high"],
        "s2:reflectance_conversion_factor": round(_reflectance_factor(scene["doy"]), 12),
        "s2:medium_proba_clouds_percentage": pct["medium"],
        "s2:saturated_defective_pixel_percentage": pct["saturated"],
    }
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": [_EXT["eo"], _EXT["sat"], _EXT["proj"]],
        "id": item_id, "collection": "sentinel-2-l2a", "geometry": geometry, "bbox": bbox,
        "properties": props, "links": _links(), "assets": assets,
    }


def probability_item(scene: dict, ids: dict[str, str], grid: Grid) -> dict:
    """An ``s2-cloud-probability`` item standing in for Earth Engine's S2_CLOUD_PROBABILITY."""
    geometry, bbox = _footprint(grid, scene["nodata"])
    sid = ids["system_index"]
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": [_EXT["proj"], _EXT["raster"]],
        "id": sid, "collection": "s2-cloud-probability", "geometry": geometry, "bbox": bbox,
        "properties": {"datetime": _iso(scene["datatake_start"]), "platform": scene["platform"],
                       "s2:mgrs_tile": scene.get("tile", MGRS_TILE), "proj:epsg": grid.epsg,
                       "proj:code": grid.crs},
        "links": _links(),
        "assets": {"probability": {
            "href": f"cogs/{sid}/probability.tif", "type": COG_TYPE, "roles": ["data"],
            "title": "s2cloudless cloud probability (%)", "gsd": 10.0, **_proj(grid),
            "raster:bands": [{"nodata": PROBABILITY_NODATA, "data_type": "uint8",
                              "spatial_resolution": 10.0, "unit": "%"}],
        }},
    }


def _worldcover_classes() -> list[dict]:
    """Classification extension v1.0.0 as ESA / Planetary Computer write it: description and
    ``color-hint``, no ``name``."""
    return [{"value": code, "description": name, "color-hint": colour.lstrip("#").upper()}
            for code, (name, colour) in WORLDCOVER_CLASSES.items()]


def worldcover_item(geo: Grid) -> dict:
    """The ``esa-worldcover`` item of the demo label map: an EPSG:4326 map (asset ``map``)."""
    geometry, bbox = _footprint(geo, None)
    tile = WORLDCOVER_ITEM_ID.rsplit("_", 1)[-1]
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": [_EXT["proj"], _EXT["grid"], _EXT["raster"], _EXT["class"]],
        "id": WORLDCOVER_ITEM_ID, "collection": "esa-worldcover", "geometry": geometry, "bbox": bbox,
        "properties": {
            "datetime": None, "start_datetime": "2021-01-01T00:00:00Z",
            "end_datetime": "2021-12-31T23:59:59Z", "description": "ESA WorldCover product at 10m resolution",
            "mission": "sentinel-1, sentinel-2", "instruments": ["c-sar", "msi"],
            "platform": "sentinel-1a, sentinel-1b, sentinel-2a, sentinel-2b",
            "esa_worldcover:product_version": "2.0.0", "esa_worldcover:product_tile": tile,
            "proj:epsg": 4326, "grid:code": f"ESAWORLDCOVER-{tile}",
        },
        "links": _links(),
        "assets": {"map": {
            "href": WORLDCOVER_MAP, "type": COG_TYPE, "roles": ["data"],
            "title": "Land Cover Classes", "classification:classes": _worldcover_classes(),
            "proj:shape": list(geo.shape), "proj:transform": list(geo.transform),
            "raster:bands": [{"name": "Band1", "nodata": 0, "sampling": "area",
                              "data_type": "uint8", "spatial_resolution": 10}],
        }},
    }


def collection_extras(cid: str, items: list[dict]) -> dict:
    """``item_assets``, ``summaries`` and extensions, as Planetary Computer's collections have."""
    if cid == "sentinel-2-l2a":
        assets = items[0]["assets"]
        keep = ("type", "roles", "title", "gsd", "eo:bands")
        item_assets = {k: {f: a[f] for f in keep if f in a} for k, a in assets.items()}
        bands = [b for k in S2_BANDS for b in assets[k]["eo:bands"]]
        summaries = {"gsd": [10, 20, 60], "eo:bands": bands,
                     "platform": sorted({it["properties"]["platform"] for it in items}),
                     "instruments": ["msi"], "constellation": ["sentinel-2"],
                     "view:off_nadir": [0]}
        return {"stac_extensions": [_EXT["item_assets"]], "item_assets": item_assets,
                "summaries": summaries}
    if cid == "esa-worldcover":
        m = items[0]["assets"]["map"]
        return {"stac_extensions": [_EXT["item_assets"], _EXT["class"]],
                "item_assets": {"map": {f: m[f] for f in ("type", "roles", "title",
                                                          "classification:classes",
                                                          "raster:bands")}},
                "summaries": {"esa_worldcover:product_version": ["1.0.0", "2.0.0"]}}
    return {}


def item_collection(items: list[dict]) -> dict:
    """A GeoJSON FeatureCollection of items."""
    return {"type": "FeatureCollection", "features": items}


def collection(cid: str, title: str, description: str, items: list[dict]) -> dict:
    """A STAC Collection whose extent covers ``items``."""
    boxes = [it["bbox"] for it in items]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]
    times = sorted(t for it in items for t in (it["properties"].get("datetime"),
                   it["properties"].get("start_datetime"), it["properties"].get("end_datetime")) if t)
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": cid, "title": title,
        "description": description, "license": "proprietary",
        "keywords": ["lcgee", "demo", "synthetic"],
        "providers": [{"name": "lcgee demo world (synthetic)", "roles": ["producer", "host"]}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[times[0], times[-1]]]}},
        "links": [],
    }
