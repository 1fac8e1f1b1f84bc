"""Cloud-optimized GeoTIFFs on the run's grid: written atomically, read lazily."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from lcgee.files import atomic_path
from lcgee.grid import Grid

__all__ = ["write_cog", "read_cog"]


def write_cog(path: str | Path, data: np.ndarray | xr.DataArray, grid: Grid, *,
              nodata: float | int | None = None, band_names: Sequence[str] | None = None,
              colormap: Mapping[int, tuple[int, ...]] | None = None,
              tags: Mapping[str, Any] | None = None, compress: str = "DEFLATE",
              resampling: str = "nearest") -> Path:
    """Write a 2-D ``(y, x)`` or 3-D ``(band, y, x)`` array on ``grid`` as a COG, atomically.

    Dask-backed input is computed one band at a time. ``colormap`` (code -> RGB[A]) is
    embedded for single-band uint8 maps; ``band_names`` become band descriptions.
    """
    import rasterio
    from rasterio.shutil import copy as rio_copy

    arr = data
    if getattr(arr, "ndim", 0) == 2:
        arr = arr[None]
    count = arr.shape[0]
    if tuple(arr.shape[-2:]) != grid.shape:
        raise ValueError(f"array shape {arr.shape[-2:]} does not match grid {grid.shape}")
    dtype = np.dtype(arr.dtype).name
    profile = grid.rasterio_profile(count=count, dtype=dtype, nodata=nodata, tiled=True,
                                    blockxsize=512, blockysize=512, compress=compress)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".cog-") as tmp, \
            atomic_path(path) as final:
        plain = Path(tmp) / "plain.tif"
        with rasterio.open(plain, "w", **profile) as dst:
            for i in range(count):
                band = np.asarray(arr[i].values if hasattr(arr[i], "values") else arr[i])
                dst.write(band.astype(dtype, copy=False), i + 1)
                if band_names:
                    dst.set_band_description(i + 1, str(band_names[i]))
            if colormap is not None:
                dst.write_colormap(1, dict(colormap))
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        rio_copy(plain, final, driver="COG", compress=compress, overview_resampling=resampling,
                 blocksize=512)
    return path


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
