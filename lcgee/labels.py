"""Land-cover labels: the ESA WorldCover class table, and WorldCover brought onto the grid.

WorldCover comes from Planetary Computer's ``esa-worldcover`` collection (asset ``map``),
from the demo world's copy of it, or from Earth Engine's ``ESA/WorldCover/v200``
(:mod:`lcgee.gee.worldcover`, through the tiled downloader).
It is resampled onto the run's grid by nearest neighbour, or by mode when the grid is coarser
than WorldCover's 10 m. Labels from an existing map are noisy (WorldCover is ~75 % accurate):
evaluation keeps that in mind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import xarray as xr

from lcgee.errors import DataError, DataWarning, EarthEngineError, StacError
from lcgee.gee.connection import EarthEngineOptions
from lcgee.gee.worldcover import WORLDCOVER, download_worldcover
from lcgee.load import load_stack
from lcgee.signing import signing_driver

if TYPE_CHECKING:
    from pystac_client import Client

    from lcgee.grid import Grid

__all__ = ["WORLDCOVER", "worldcover_colormap", "load_worldcover", "remap", "class_names",
           "WORLDCOVER_VERSIONS", "check_classes"]

#: A label array: what :func:`remap` is given, it returns.
LabelArray = TypeVar("LabelArray", np.ndarray, xr.DataArray)

#: params' ``labels.version`` -> ``esa_worldcover:product_version`` on Planetary Computer.
WORLDCOVER_VERSIONS = {"v100": "1.0.0", "v200": "2.0.0"}


def worldcover_colormap() -> dict[int, tuple[int, int, int, int]]:
    """The class colours as a rasterio colormap (code -> RGBA), 0 transparent."""
    cmap = {0: (0, 0, 0, 0)}
    for code, (_, hex_colour) in WORLDCOVER.items():
        h = hex_colour.lstrip("#")
        cmap[code] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    return cmap


def class_names(codes: Iterable[int | np.integer]) -> list[str]:
    """``"40 Cropland"``-style names for class codes."""
    return [f"{int(c)} {WORLDCOVER.get(int(c), ('class ' + str(int(c)), ''))[0]}" for c in codes]


def load_worldcover(grid: Grid, *, source: str, client: Client | None = None, version: str = "v200",
                    collection: str = "esa-worldcover", chunk: int = 1024,
                    earth_engine: EarthEngineOptions | None = None) -> xr.DataArray:
    """WorldCover codes on ``grid`` (uint8 ``(y, x)``, 0 = no data), lazily.

    ``source: earth-engine`` reads ``ESA/WorldCover/v200`` through the tiled downloader
    (:func:`lcgee.gee.worldcover.download_worldcover`; mode when coarsening), with
    ``earth_engine`` options (:class:`~lcgee.gee.connection.EarthEngineOptions`, e.g. from
    :func:`lcgee.ee_stage.earth_engine_options`).
    """
    if source == "earth-engine":
        if version != "v200":
            raise EarthEngineError(f"WorldCover {version} is not read from Earth Engine",
                                   where="labels.version", fix="use labels.version: v200")
        codes = download_worldcover(grid, **(earth_engine.as_kwargs() if earth_engine else {}))
        return xr.DataArray(codes, dims=("y", "x"), coords=grid.coords(), name="worldcover")
    want = WORLDCOVER_VERSIONS[version]
    try:
        found = list(client.search(collections=[collection], bbox=list(grid.lonlat_bbox),
                                   max_items=100).items())
    except Exception as exc:
        raise StacError(f"searching {collection} failed ({type(exc).__name__}: {exc})",
                        where="labels", fix="retry later") from exc
    items = [it for it in found
             if it.properties.get("esa_worldcover:product_version", want) == want]
    if not items:
        raise DataError(f"no {collection} {version} tiles cover the AOI "
                        f"({len(found)} of other versions)", where="labels",
                        fix="check labels.version and the AOI")
    resampling = "mode" if grid.resolution > 10 else "nearest"
    ds = _load_mosaic(items, grid, chunk, resampling)
    return ds.rename("worldcover")


def _load_mosaic(items: list[Any], grid: Any, chunk: int, resampling: str) -> xr.DataArray:
    import odc.stac

    if resampling == "nearest":
        ds = load_stack(items, grid, ["map"], chunk=chunk, scene_coords=False)
        layers = ds["map"]
    else:
        layers = odc.stac.load(items, bands=["map"], geobox=grid.geobox, groupby="id",
                               resampling=resampling, dtype="uint8",
                               chunks={"x": chunk, "y": chunk}, driver=signing_driver())["map"]
    # Tiles do not overlap: the first non-zero value per pixel is the mosaic.
    return layers.max("time").astype("uint8")


def remap(labels: LabelArray, mapping: Mapping[int, int]) -> LabelArray:
    """Merge or recode classes (``{from: to}``; 0 stays no data)."""
    if not mapping:
        return labels
    out = labels.copy()
    for src, dst in mapping.items():
        out = xr.where(labels == src, dst, out) if isinstance(labels, xr.DataArray) else \
            np.where(labels == src, dst, out)
    return out


def check_classes(labels: np.ndarray, min_pixels: int = 50) -> dict[int, int]:
    """Pixel counts per class; warn about classes too rare to learn."""
    import warnings

    codes, counts = np.unique(labels[labels > 0], return_counts=True)
    table = {int(c): int(n) for c, n in zip(codes, counts)}
    rare = [c for c, n in table.items() if n < min_pixels]
    if rare:
        warnings.warn(f"classes {rare} have fewer than {min_pixels} labelled pixels; they are "
                      "hard to learn (merge them with labels.remap)", DataWarning, stacklevel=2)
    return table
