"""Direct windowed reads for assets on the run grid's lattice (the common Sentinel-2 case).

When an asset's pixels line up with the run's :class:`~lcgee.grid.Grid` -- same CRS, north-up,
a pixel size that is a whole multiple ``f`` of the grid's, pixel edges on the grid's lattice,
and the grid's window inside the asset -- nearest-neighbour resampling is pure index
arithmetic: grid pixel ``n`` (counted from the asset's edge, in grid pixels) takes asset pixel
``n // f``. Each Dask task then reads just the asset window under its tile with rasterio and
repeats pixels, instead of going through odc-stac's per-chunk reprojection machinery (which
costs about three times the bare reads on the demo, see ``bench/imagery.py``).

:func:`replace_aligned` swaps those variables of a lazily loaded odc-stac Dataset for such
reads, keeping its coordinates, dtype and chunks; variables of items that are not aligned keep
odc-stac's graph. Values are those odc-stac gives (tested against it, including odc-stac's
nodata remapping when the file's nodata differs from the STAC ``raster:bands`` one).

Each read opens and closes its file: handles kept open across tasks keep their decoded blocks
in GDAL's block cache (up to 5 % of RAM), which broke the memory bound of ``bench/scale.py``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from lcgee.errors import DataError
from lcgee.gdal import configure_gdal
from lcgee.grid import Grid
from lcgee.integrity import BadAsset, read_error, reason, without_query
from lcgee.signing import sign_href

if TYPE_CHECKING:  # annotations only
    from pystac import Item

__all__ = ["ENABLED", "asset_layout", "replace_aligned", "read_block"]

#: Switch for tests and comparisons: False leaves every variable to odc-stac.
ENABLED = True


Layout = tuple[int, int, int, int, int, Any]  # factor, row0, col0, height, width, nodata


def asset_layout(item: Item, asset: str, grid: Grid) -> Layout | None:
    """``(factor, row0, col0, height, width, declared nodata)`` of an aligned asset, else None.

    ``row0`` / ``col0``: the grid's top-left corner in grid pixels from the asset's corner.
    """
    a = item.assets.get(asset)
    if a is None:
        return None
    fields = {**item.properties, **a.extra_fields}
    transform, shape = fields.get("proj:transform"), fields.get("proj:shape")
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}"
                                      if fields.get("proj:epsg") else None)
    if transform is None or shape is None or code is None or grid.epsg is None:
        return None
    if code.upper() != f"EPSG:{grid.epsg}":
        return None
    sx, rx, left, ry, sy, top = (float(v) for v in transform[:6])
    res = grid.resolution
    gx, _, gleft, _, gy, gtop = grid.affine[:6]
    if rx or ry or sx <= 0 or sy != -sx or gx != res or gy != -res:
        return None
    factor = round(sx / res)
    col0, row0 = (gleft - left) / res, (top - gtop) / res
    if (factor < 1 or abs(sx - factor * res) > 1e-9 * res
            or abs(col0 - round(col0)) > 1e-6 or abs(row0 - round(row0)) > 1e-6):
        return None
    row0, col0 = round(row0), round(col0)
    height, width = int(shape[0]), int(shape[1])
    if (row0 < 0 or col0 < 0 or (row0 + grid.height - 1) // factor >= height
            or (col0 + grid.width - 1) // factor >= width):
        return None
    bands = a.extra_fields.get("raster:bands") or [{}]
    return factor, row0, col0, height, width, bands[0].get("nodata")


def _file_layout(src: Any, corner: tuple[float, float, float], block_end: tuple[int, int],
                 item_id: str, asset: str, href: str) -> tuple[int, int, int]:
    """``(factor, row0, col0)`` of an open file on the grid's lattice, else a DataError."""
    gleft, gtop, res = corner
    sx, rx, left, ry, sy, top = (float(v) for v in tuple(src.transform)[:6])
    factor = round(sx / res) if sx > 0 else 0
    col0, row0 = (gleft - left) / res, (top - gtop) / res
    ok = (not rx and not ry and factor >= 1 and sy == -sx and abs(sx - factor * res) <= 1e-9 * res
          and abs(col0 - round(col0)) <= 1e-6 and abs(row0 - round(row0)) <= 1e-6)
    if ok:
        row0, col0 = round(row0), round(col0)
        ok = (row0 >= 0 and col0 >= 0 and (row0 + block_end[0] - 1) // factor < src.height
              and (col0 + block_end[1] - 1) // factor < src.width)
    if not ok:
        raise DataError(f"asset {asset} of scene {item_id} ({without_query(href)}) does not lie "
                        f"on the run grid's lattice as its STAC item says (file transform "
                        f"{tuple(src.transform)[:6]}, {src.height} x {src.width} px)",
                        where="load (direct read)",
                        fix="correct the item's proj:transform / proj:shape, or set "
                            "lcgee.fastread.ENABLED = False to let odc-stac reproject the file")
    return factor, int(row0), int(col0)


def read_block(hrefs: Sequence[str], layouts: Sequence[Layout],
               patch_url: Callable[[str], str] | None = None,
               sources: Sequence[tuple[str, str]] | None = None,
               corner: tuple[float, float, float] | None = None, *,
               block_info: dict | None = None) -> np.ndarray:
    """One ``(time, y, x)`` uint16 block: each scene's asset window, pixels repeated to the grid.

    URLs are signed when the block is read (:func:`lcgee.signing.sign_href`), then passed through
    ``patch_url``; a failed read raises lcgee's :class:`~lcgee.errors.DataError` naming the
    asset href, the scene (``sources``: ``(item id, asset)`` per href) and the fix. With
    ``corner`` (the grid's ``(left, top, resolution)``) the window comes from the file's own
    transform (the STAC item's only chose the direct path); a file off the grid's lattice is
    refused with a DataError.
    """
    import rasterio
    from rasterio.windows import Window

    assert block_info is not None
    configure_gdal()  # GDAL's HTTP retries, also in worker processes of a remote cluster
    (t0, t1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    out = np.empty((t1 - t0, r1 - r0, c1 - c0), np.uint16)

    def one(k: int) -> None:
        href, (f, row0, col0, _, _, declared) = hrefs[t0 + k], layouts[t0 + k]
        item_id, asset = sources[t0 + k] if sources else ("?", "?")
        url = sign_href(href)
        try:
            with rasterio.open(patch_url(url) if patch_url else url) as src:
                if corner is not None:  # the file's own georeferencing decides the window
                    f, row0, col0 = _file_layout(src, corner, (r1, c1), item_id, asset, href)
                rows = np.arange(row0 + r0, row0 + r1) // f
                cols = np.arange(col0 + c0, col0 + c1) // f
                window = Window(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                                int(rows[-1] - rows[0] + 1))
                pix = src.read(1, window=window, out_dtype="uint16")
                nodata = src.nodatavals[0]
        except rasterio.errors.RasterioError as exc:
            raise read_error(BadAsset(item_id, asset, without_query(href), reason(exc)),
                             "load (direct read)") from None
        if declared is not None and nodata is not None and declared != nodata:
            pix[pix == np.uint16(nodata)] = np.uint16(declared)  # odc-stac's remapping
        if f > 1:
            pix = pix[np.ix_(rows - rows[0], cols - cols[0])]
        out[k] = pix

    if t1 - t0 == 1:
        one(0)
    else:  # HTTP reads wait on the network, not the CPU: several scenes at once
        list(_io_pool().map(one, range(t1 - t0)))
    return out


def _io_pool() -> ThreadPoolExecutor:
    """Threads this process reads scenes' windows with (``LCGEE_READ_THREADS``, default 8):
    reads over HTTP are latency-bound, so a task reads its scenes concurrently."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(int(os.environ.get("LCGEE_READ_THREADS", "8")),
                                       thread_name_prefix="lcgee-read")
        return _POOL


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _direct(name: str, items: Sequence[Any], layouts: Sequence[Layout], chunks: tuple,
            patch_url: Callable[[str], str] | None, grid: Grid) -> da.Array:
    """Lazy direct reads of asset ``name`` of ``items`` (all aligned) with ``chunks``."""
    hrefs = [it.assets[name].href for it in items]
    sources = [(it.id, name) for it in items]
    corner = (grid.affine[2], grid.affine[5], grid.resolution)
    token = tokenize(hrefs, layouts, chunks, patch_url, corner)
    return da.map_blocks(read_block, hrefs, layouts, patch_url, sources, corner, chunks=chunks,
                         dtype=np.uint16, meta=np.empty((0, 0, 0), np.uint16),
                         name=f"lcgee-read-{name}-{token}")


def _mixed_block(hrefs: Sequence[str | None], layouts: Sequence[Layout | None],
                 patch_url: Callable[[str], str] | None, sources: Sequence[tuple[str, str]],
                 corner: tuple[float, float, float], items: Sequence[Any], grid: Grid,
                 load_tile: Callable[[Any, Any], np.ndarray], *,
                 block_info: dict | None = None) -> np.ndarray:
    """A ``(time, y, x)`` block of scenes some of which are not on the grid's lattice: those are
    loaded by ``load_tile(item, tile geobox)`` (odc-stac onto exactly this tile, as its own
    Dask chunk would be), concurrently with the direct reads of the others."""
    assert block_info is not None
    (t0, t1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    out = np.empty((t1 - t0, r1 - r0, c1 - c0), np.uint16)
    direct = [t for t in range(t0, t1) if layouts[t] is not None]
    other = [t for t in range(t0, t1) if layouts[t] is None]
    tile = grid.geobox[r0:r1, c0:c1]
    pool = _io_pool()
    pending = [(t, pool.submit(load_tile, items[t], tile)) for t in other]
    if direct:
        got = read_block([hrefs[t] for t in direct], [layouts[t] for t in direct], patch_url,
                         [sources[t] for t in direct], corner,
                         block_info={None: {"array-location": [(0, len(direct)), (r0, r1),
                                                               (c0, c1)]}})
        out[np.array(direct) - t0] = got
    for t, future in pending:
        out[t - t0] = future.result()[0]
    return out


def _mixed(name: str, items: Sequence[Any], layouts: Sequence[Layout | None], chunks: tuple,
           patch_url: Callable[[str], str] | None, grid: Grid,
           load_tile: Callable[[Any, Any], np.ndarray]) -> da.Array:
    """Lazy reads of asset ``name`` when only some scenes are aligned: one task per chunk."""
    hrefs = [it.assets[name].href if lay is not None else None
             for it, lay in zip(items, layouts)]
    sources = [(it.id, name) for it in items]
    corner = (grid.affine[2], grid.affine[5], grid.resolution)
    token = tokenize(hrefs, layouts, chunks, patch_url, corner, [it.id for it in items],
                     load_tile)
    return da.map_blocks(_mixed_block, hrefs, layouts, patch_url, sources, corner, list(items),
                         grid, load_tile, chunks=chunks, dtype=np.uint16,
                         meta=np.empty((0, 0, 0), np.uint16),
                         name=f"lcgee-read-{name}-mixed-{token}")


def replace_aligned(ds: xr.Dataset, items: Sequence[Any], grid: Grid,
                    patch_url: Callable[[str], str] | None = None, *,
                    load_tile: Callable[..., np.ndarray] | None = None) -> xr.Dataset:
    """``ds`` (lazy odc-stac load of ``items`` on ``grid``) with aligned assets read directly.

    Where every item's asset is aligned (see module docstring) the variable is read directly.
    Where only some are (scenes published in another UTM zone), the aligned ones are read
    directly and the others come from ``load_tile(item, tile_geobox, name=asset)`` (odc-stac
    onto one tile, run in the read threads beside the direct reads), in the original scene
    order; without ``load_tile`` such a variable stays odc-stac's. Coordinates, dtype (uint16)
    and chunks stay those of ``ds``.
    """
    if not ENABLED or not items:
        return ds
    out = {}
    for name, var in ds.data_vars.items():
        layouts = [asset_layout(it, str(name), grid) for it in items]
        aligned = [i for i, lay in enumerate(layouts) if lay is not None]
        if (var.dtype != np.uint16 or var.dims != ("time", "y", "x") or var.chunks is None
                or not aligned):
            continue
        if len(aligned) == len(items):
            out[name] = var.copy(data=_direct(str(name), items, layouts, var.data.chunks,
                                              patch_url, grid))
        elif load_tile is not None:  # odc-stac onto each tile, concurrently with direct reads
            out[name] = var.copy(data=_mixed(str(name), items, layouts, var.data.chunks,
                                             patch_url, grid, partial(load_tile, name=str(name))))
    return ds.assign(out) if out else ds
