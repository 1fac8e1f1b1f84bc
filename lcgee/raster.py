"""Cloud-optimized GeoTIFFs on the run's grid: written atomically, read lazily."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from lcgee.files import atomic_path
from lcgee.grid import Grid
from lcgee.stream import compute_each

if TYPE_CHECKING:  # annotation only
    import dask.array as da

__all__ = ["CogSpec", "write_cog", "write_cogs", "read_cog"]


@dataclass
class CogSpec:
    """One COG to write: its path, ``(y, x)`` or ``(band, y, x)`` data and its metadata."""

    path: Path
    data: Any
    nodata: float | int | None = None
    band_names: Sequence[str] | None = None
    colormap: Mapping[int, tuple[int, ...]] | None = None
    tags: Mapping[str, Any] | None = None
    resampling: str = "nearest"

    def array(self) -> np.ndarray | da.Array:
        arr = self.data.data if isinstance(self.data, xr.DataArray) else self.data
        return arr[None] if getattr(arr, "ndim", 0) == 2 else arr


def write_cog(path: str | Path, data: np.ndarray | xr.DataArray, grid: Grid, *,
              nodata: float | int | None = None, band_names: Sequence[str] | None = None,
              colormap: Mapping[int, tuple[int, ...]] | None = None,
              tags: Mapping[str, Any] | None = None, resampling: str = "nearest") -> Path:
    """Write a 2-D ``(y, x)`` or 3-D ``(band, y, x)`` array on ``grid`` as a COG, atomically.

    ``colormap`` (code -> RGB[A]) is embedded for single-band uint8 maps; ``band_names``
    become band descriptions. See :func:`write_cogs` for how Dask input is computed.
    """
    spec = CogSpec(Path(path), data, nodata, band_names, colormap, tags, resampling)
    write_cogs([spec], grid)
    return Path(path)


def write_cogs(specs: Sequence[CogSpec], grid: Grid, *, compress: str = "DEFLATE") -> None:
    """Write several COGs on ``grid`` in one pass, each atomically.

    Dask-backed data is computed by spatial tiles, all arrays of a tile together (shared
    inputs are read once), a few tiles at once (:func:`lcgee.stream.compute_each`), each
    written as soon as it is ready; memory is bounded by those tiles, not by the grid.
    """
    import rasterio
    from rasterio.shutil import copy as rio_copy

    arrays = [spec.array() for spec in specs]
    for spec, arr in zip(specs, arrays):
        if tuple(arr.shape[-2:]) != grid.shape:
            raise ValueError(f"{spec.path.name}: array shape {arr.shape[-2:]} does not match "
                             f"grid {grid.shape}")
    parent = Path(specs[0].path).parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".cog-") as tmp:
        plains = [Path(tmp) / f"{i}.tif" for i in range(len(specs))]
        with contextlib.ExitStack() as stack:
            dsts = []
            for spec, arr, plain in zip(specs, arrays, plains):
                profile = grid.rasterio_profile(
                    count=arr.shape[0], dtype=np.dtype(arr.dtype).name, nodata=spec.nodata,
                    tiled=True, blockxsize=512, blockysize=512)  # scratch: uncompressed
                dst = stack.enter_context(rasterio.open(plain, "w", **profile))
                _describe(dst, spec)
                dsts.append(dst)
            _write_tiles(dsts, arrays)
        for spec, plain in zip(specs, plains):
            with atomic_path(spec.path) as final:
                rio_copy(plain, final, driver="COG", compress=compress,
                         overview_resampling=spec.resampling, blocksize=512,
                         num_threads=_cog_threads())


def _cog_threads() -> str:
    """Threads GDAL's COG driver compresses with (``LCGEE_COG_THREADS``, default all cores).

    The scratch file is written uncompressed and compressed once, in parallel, into the COG:
    compressing it twice (and decompressing once) cost more than computing the composite.
    """
    import os

    return os.environ.get("LCGEE_COG_THREADS", "ALL_CPUS")


def _describe(dst: Any, spec: CogSpec) -> None:
    for i, name in enumerate(spec.band_names or []):
        dst.set_band_description(i + 1, str(name))
    if spec.colormap is not None:
        dst.write_colormap(1, dict(spec.colormap))
    if spec.tags:
        dst.update_tags(**{k: str(v) for k, v in spec.tags.items()})


def _write_tiles(dsts: list[Any], arrays: list[Any]) -> None:
    """NumPy arrays at once; Dask arrays tile by tile along the first one's chunks."""
    from rasterio.windows import Window

    lazy = [hasattr(a, "dask") for a in arrays]
    for dst, arr, is_lazy in zip(dsts, arrays, lazy):
        if not is_lazy:
            dst.write(np.asarray(arr).astype(dst.dtypes[0], copy=False))
    todo = [(d, a) for d, a, is_lazy in zip(dsts, arrays, lazy) if is_lazy]
    if not todo:
        return
    rows, cols = todo[0][1].chunks[1], todo[0][1].chunks[2]
    row_starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int)
    col_starts = np.concatenate([[0], np.cumsum(cols)[:-1]]).astype(int)
    windows = [Window(int(c), int(r), w, h) for r, h in zip(row_starts, rows)
               for c, w in zip(col_starts, cols)]
    pieces = [[a[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]
               for _, a in todo] for w in windows]

    def write(i: int, blocks: tuple) -> None:
        for (dst, _), block in zip(todo, blocks):
            dst.write(np.asarray(block).astype(dst.dtypes[0], copy=False), window=windows[i])

    # a few tiles computing at once, each written (in this thread) as soon as it is ready
    compute_each(pieces, write)


def read_cog(path: str | Path, *, chunks: int | None = 1024, masked: bool = False) -> xr.DataArray:
    """A COG as a lazily read ``(band, y, x)`` DataArray with band descriptions as names."""
    import rioxarray

    da = rioxarray.open_rasterio(path, chunks={"x": chunks, "y": chunks} if chunks else None,
                                 masked=masked)
    names = da.attrs.get("long_name")
    if isinstance(names, (tuple, list)) and len(names) == da.sizes["band"]:
        da = da.assign_coords(band=list(names))
    elif isinstance(names, str) and da.sizes["band"] == 1:
        da = da.assign_coords(band=[names])
    return da
