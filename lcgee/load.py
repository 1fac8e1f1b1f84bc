"""Load scenes lazily onto the run's grid, and harmonize processing baselines.

odc-stac is the default loader (maintained, faster for mosaics); stackstac is the
alternative (``load.engine: stackstac``). Either way the result is the same: an
``xarray.Dataset`` with one uint16 variable per asset (DN, 0 = nodata), dims
``(time, y, x)`` on exactly the :class:`~lcgee.grid.Grid`, one time step per item, and per-time
coordinates ``id``, ``gee_index``, ``sun_azimuth``, ``sun_zenith`` and ``offset`` (True where
the item's processing baseline is >= 04.00 and its DN carry +1000). Chunks are spatial tiles,
so memory is bounded by chunk size, not by the AOI.

:func:`reflectance` harmonizes (subtracts 1000 where ``offset``, keeps 0 as nodata, clips at
0, never touches SCL) and scales to surface reflectance, matching Earth Engine's
``COPERNICUS/S2_SR_HARMONIZED`` / 10000.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlparse

import numpy as np
import xarray as xr

from lcgee.errors import DataError, ParamsError, require
from lcgee.fastread import replace_aligned
from lcgee.gdal import configure_gdal  # re-exported: lcgee.load.configure_gdal stays
from lcgee.grid import Grid
from lcgee.integrity import guarded_driver  # signs at read time; errors name href and scene
from lcgee.scenes import HARMONIZE_OFFSET, scene_table
from lcgee.signing import stackstac_reader

__all__ = ["load_stack", "reflectance", "harmonize", "configure_gdal", "NON_OPTICAL",
           "sign_if_planetary_computer"]

log = logging.getLogger(__name__)

# odc-loader reprojects overview reads through an in-memory dataset without a geotransform;
# rasterio warns about it on every read although the result is georeferenced correctly.
warnings.filterwarnings("ignore", message="Dataset has no geotransform", module="rasterio.warp")

#: Assets that are classifications or probabilities, never offset or scaled.
NON_OPTICAL = frozenset({"SCL", "probability", "AOT", "WVP", "visual"})

_PC_BLOB_HOSTS = (".blob.core.windows.net",)
def load_stack(items: Sequence[Any], grid: Grid, assets: Sequence[str], *,
               engine: str = "odc-stac", chunk: int = 1024,
               patch_url: Callable[[str], str] | None = None,
               scene_coords: bool = True, time_chunk: int = 1) -> xr.Dataset:
    """Lazily load ``assets`` of ``items`` onto ``grid`` (nearest neighbour, uint16 DN).

    ``scene_coords`` adds the Sentinel-2 per-scene coordinates (sun angles, offset, Earth
    Engine index); turn it off for other collections (probability layers), which get ``id``.
    ``time_chunk`` -1 puts every scene of a tile in one chunk (what a composite over time
    wants: no rechunk, memory bounded by one tile's time series); 1 suits per-scene work.
    """
    if not items:
        raise DataError("no items to load", where="load", fix="search with wider dates or area")
    _check_assets(items, assets)
    configure_gdal()
    tchunk = len(items) if time_chunk == -1 else time_chunk
    if engine == "odc-stac":
        ds = _load_odc(items, grid, assets, chunk, patch_url, tchunk)
    elif engine == "stackstac":
        ds = _load_stackstac(items, grid, assets, chunk)
        if tchunk != 1:
            ds = ds.chunk({"time": tchunk})
    else:
        raise ParamsError(f"unknown loader {engine!r}", where="load.engine",
                          fix="use odc-stac or stackstac")
    if not scene_coords:
        return ds.assign_coords(id=("time", [it.id for it in items]))
    return _with_scene_coords(ds, items)


def _check_assets(items: Sequence[Any], assets: Sequence[str]) -> None:
    for it in items:
        missing = [a for a in assets if a not in it.assets]
        if missing:
            raise DataError(f"asset(s) {missing} not in the item; it has "
                            f"{sorted(it.assets)}", where=f"item {it.id}",
                            fix="choose `bands` from the available assets")


def sign_if_planetary_computer(href: str) -> str:
    """Sign Planetary Computer blob URLs afresh (SAS tokens expire); leave others alone.

    The odc-stac loader no longer uses it (it signs at read time, :mod:`lcgee.signing`);
    kept for callers that build their own loads.
    """
    host = urlparse(href).hostname or ""
    if not host.endswith(_PC_BLOB_HOSTS):
        return href
    import planetary_computer

    return str(planetary_computer.sign(href))


def _load_odc(items: Sequence[Any], grid: Grid, assets: Sequence[str], chunk: int,
              patch_url: Callable[[str], str] | None, time_chunk: int) -> xr.Dataset:
    import odc.stac


    # URLs are signed when each tile is read (lcgee.signing), not here: no token service call
    # while the graph is built, and long computations outlive a token.
    ds = odc.stac.load(items, bands=list(assets), geobox=grid.geobox, groupby="id",
                       resampling="nearest", dtype="uint16",
                       chunks={"time": time_chunk, "x": chunk, "y": chunk},
                       patch_url=patch_url, driver=guarded_driver(items, assets),
                       preserve_original_order=True, fail_on_error=True)
    # Assets on the grid's lattice are read directly (same values, a third of the time);
    # scenes of another UTM zone keep odc-stac's reprojection.
    ds = replace_aligned(ds, items, grid, patch_url,
                         load_tile=partial(_odc_tile, assets=list(assets), patch_url=patch_url))
    return ds.drop_vars("spatial_ref", errors="ignore")


def _odc_tile(item: Any, geobox: Any, *, name: str, assets: list[str],
              patch_url: Callable[[str], str] | None) -> np.ndarray:
    """One scene's asset ``name`` loaded by odc-stac onto ``geobox`` (a tile of the grid), with
    the arguments :func:`_load_odc` gives its lazy load: the pixels of that load's chunk."""
    import odc.stac

    ds = odc.stac.load([item], bands=[name], geobox=geobox, groupby="id", resampling="nearest",
                       dtype="uint16", patch_url=patch_url, driver=guarded_driver([item], assets),
                       preserve_original_order=True, fail_on_error=True)
    return ds[name].values


def _load_stackstac(items: Sequence[Any], grid: Grid, assets: Sequence[str],
                    chunk: int) -> xr.Dataset:
    from rasterio.enums import Resampling

    stackstac = require("stackstac", "stackstac")
    arr = stackstac.stack(
        list(items), assets=list(assets), epsg=grid.epsg, resolution=grid.resolution,
        bounds=grid.bounds, chunksize=chunk, dtype=np.dtype("uint16"), fill_value=np.uint16(0),
        rescale=False, resampling=Resampling.nearest, xy_coords="center", snap_bounds=False,
        sortby_date=False, reader=stackstac_reader())  # signs at read time, like odc-stac
    if arr.shape[-2:] != grid.shape:
        raise DataError(f"stackstac produced {arr.shape[-2:]} px for a {grid.shape} grid",
                        where="load (stackstac)", fix="use load.engine: odc-stac")
    arr = arr.assign_coords(y=grid.ys, x=grid.xs)
    keep = {"time", "band", "y", "x"}
    arr = arr.drop_vars([c for c in arr.coords if c not in keep])
    ds = arr.to_dataset("band")
    return ds


def _with_scene_coords(ds: xr.Dataset, items: Sequence[Any]) -> xr.Dataset:
    table = scene_table(items)
    # odc-stac (groupby id, original order) and stackstac keep item order: align the table.
    table = table.set_index("id").loc[[it.id for it in items]]
    if ds.sizes["time"] != len(table):
        raise DataError(f"loader returned {ds.sizes['time']} time steps for {len(table)} items",
                        where="load")
    return ds.assign_coords(
        id=("time", table.index.to_numpy()),
        gee_index=("time", table["gee_index"].to_numpy()),
        sun_azimuth=("time", table["sun_azimuth"].to_numpy(dtype="float64")),
        sun_zenith=("time", table["sun_zenith"].to_numpy(dtype="float64")),
        offset=("time", table["offset"].to_numpy(dtype=bool)),
    )


def harmonize(ds: xr.Dataset) -> xr.Dataset:
    """DN on the ``S2_SR_HARMONIZED`` scale: optical bands minus 1000 where ``offset``.

    0 stays nodata, results clip at 0, and SCL / probability layers are never changed.
    """
    out = {}
    shift = xr.DataArray(np.where(ds["offset"].values, HARMONIZE_OFFSET, 0).astype("int32"),
                         dims="time")
    for name, var in ds.data_vars.items():
        if name in NON_OPTICAL:
            out[name] = var
            continue
        shifted = (var.astype("int32") - shift).clip(min=0).astype("uint16")
        out[name] = xr.where(var == 0, np.uint16(0), shifted).astype("uint16")
    return xr.Dataset(out, coords=ds.coords, attrs=ds.attrs)


def reflectance(ds: xr.Dataset, bands: Sequence[str]) -> xr.DataArray:
    """Harmonized surface reflectance, float32 ``(time, band, y, x)``, NaN where DN was 0."""
    missing = [b for b in bands if b not in ds.data_vars]
    if missing:
        raise DataError(f"band(s) {missing} not loaded; loaded: {sorted(ds.data_vars)}",
                        where="reflectance", fix="add them to `bands` in the params")
    shift = xr.DataArray(np.where(ds["offset"].values, HARMONIZE_OFFSET, 0).astype("float32"),
                         dims="time")
    layers = []
    for b in bands:
        dn = ds[b]
        value = ((dn.astype("float32") - shift).clip(min=0) / np.float32(10000)).astype("float32")
        layers.append(value.where(dn != 0))
    stack = xr.concat(layers, dim=xr.DataArray(list(bands), dims="band", name="band"))
    return stack.transpose("time", "band", "y", "x").astype("float32")
