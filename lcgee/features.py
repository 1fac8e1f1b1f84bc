"""The composite stage: masked reflectance -> composite -> feature stack (bands + indices).

The feature stack is what training reads and what Earth Engine recomputes server-side: the
composite's bands, then the spectral indices from :mod:`lcgee.indices`, in the order
:func:`lcgee.indices.feature_names` gives. It is written as ``features.tif`` (float32, band
names as descriptions, NaN where no observation was valid) beside ``count.tif``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from lcgee import clouds, composite, indices, onepass
from lcgee.cloudsource import has_probability_layer
from lcgee.errors import DataWarning
from lcgee.grid import Grid
from lcgee.layout import RunLayout
from lcgee.load import load_stack, reflectance
from lcgee.masks import load_probability, read_mask_tiles, read_masks
from lcgee.params import Params
from lcgee.raster import CogSpec, read_cog, write_cogs

if TYPE_CHECKING:
    from pystac_client import Client

__all__ = ["CompositeResult", "build_composite", "write_outputs", "read_features",
           "monthly_preview", "features_from_stack"]


@dataclass
class CompositeResult:
    """What the composite stage produces (lazy arrays until written)."""

    features: xr.DataArray  #: (band, y, x) float32: composite bands then indices
    count: xr.DataArray  #: (y, x) uint16 valid observations
    monthly: xr.DataArray | None  #: (month, band, y, x) when composite.method is monthly
    method: str


def _score(items: Sequence[Any], table: pd.DataFrame, grid: Grid, params: Params,
           client: Any, stack: xr.DataArray) -> xr.DataArray:
    """Per-observation score for best-pixel: cloud probability, else scene cloud cover."""
    if params.clouds.source in ("local", "auto") and has_probability_layer(client):
        prob, missing = load_probability(client, items, grid, chunk=params.load.chunk)
        if not missing:
            return prob.assign_coords(time=stack["time"].values).fillna(100.0)
    cover = table.set_index("id").loc[[it.id for it in items], "cloud_cover"].to_numpy("float32")
    return xr.DataArray(cover, dims="time", coords={"time": stack["time"].values}).broadcast_like(
        stack.isel(band=0, drop=True)).chunk({"y": params.load.chunk, "x": params.load.chunk})


def build_composite(items: Sequence[Any], table: pd.DataFrame, grid: Grid, params: Params, *,
                    client: Client | None, masks_dir: Path) -> CompositeResult:
    """Load, mask, composite and add indices for ``items`` on ``grid``."""
    bands = list(params.features.bands)
    ds = load_stack(items, grid, bands, engine=params.load.engine, chunk=params.load.chunk,
                    time_chunk=-1)
    method = params.composite.method
    if method == "median":  # DN -> masked reflectance -> median + count in one pass per tile
        return _median_one_pass(ds, bands, [it.id for it in items], masks_dir,
                                params.features.indices)
    stack = reflectance(ds, bands)
    mask = read_masks(masks_dir, [it.id for it in items], chunk=params.load.chunk)
    mask = mask.assign_coords(time=stack["time"].values, y=stack["y"], x=stack["x"])
    stack = clouds.apply_mask(stack, mask)
    score = _score(items, table, grid, params, client, stack) if method == "best" else None
    return features_from_stack(stack, method, index_names=params.features.indices, score=score,
                               period=params.composite.period,
                               empty_period=params.composite.empty_period)


def _median_one_pass(ds: xr.Dataset, bands: list[str], ids: list[str], masks_dir: Path,
                     index_names: Sequence[str]) -> CompositeResult:
    """The median composite and count from the loaded DN (:mod:`lcgee.onepass`): the same
    values as :func:`features_from_stack` on the masked reflectance stack."""
    like = ds[bands[0]]
    mask = read_mask_tiles(masks_dir, ids, like)
    data, count = onepass.median_from_dn([ds[b].data for b in bands], mask,
                                         ds["offset"].values)
    coords = {"y": like["y"], "x": like["x"]}
    image = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": bands, **coords})
    feats = indices.compute_indices(image, indices_for(bands, index_names))
    return CompositeResult(features=feats.astype("float32"),
                           count=xr.DataArray(count, dims=("y", "x"), coords=coords,
                                              name="count"),
                           monthly=None, method="median")


def features_from_stack(stack: xr.DataArray, method: str = "median", *,
                        index_names: Sequence[str] = (), score: xr.DataArray | None = None,
                        period: str | None = None, empty_period: str = "fill") -> CompositeResult:
    """Composite a masked ``(time, band, y, x)`` reflectance stack and add the indices.

    Indices whose bands the stack lacks are skipped with a :class:`DataWarning` naming them.
    ``method`` ``monthly`` composites per ``period`` (None: calendar months; ``2M``,
    ``season`` ...). A period with no valid observation at a pixel is filled from the median
    of the whole date range there (``empty_period="fill"``), or, with ``"drop"``, periods
    with no valid observation anywhere are dropped with a warning (other gaps stay NaN).
    """
    bands = [str(b) for b in stack["band"].values]
    names = indices_for(bands, index_names)
    if method != "monthly":
        result = composite.composite(stack, method, score=score)  # type: ignore[arg-type]
        feats = indices.compute_indices(result["composite"], names)
        return CompositeResult(features=feats.astype("float32"), count=result["count"],
                               monthly=None, method=method)
    period = period or "1M"
    periods = composite.period_median(stack, period)
    if empty_period == "fill":
        periods = composite.fill_empty(periods, composite.median(stack))
    else:
        periods = _drop_empty(periods, composite.period_count(stack, period))
    flat = _flatten_periods(periods, names)
    return CompositeResult(features=flat, count=composite.valid_count(stack), monthly=periods,
                           method=method)


def indices_for(bands: Sequence[str], index_names: Sequence[str]) -> list[str]:
    """The indices of ``index_names`` computable from ``bands``; the others are skipped with a
    :class:`DataWarning` that names them and their missing bands."""
    keep, skipped = [], []
    for name in index_names:
        missing = [b for b in indices.get_index(name).bands if b not in bands]
        (skipped.append(f"{name} (needs {', '.join(missing)})") if missing else keep.append(name))
    if skipped:
        warnings.warn(f"indices skipped, their bands are absent: {'; '.join(skipped)}",
                      DataWarning, stacklevel=3)
    return keep


def _drop_empty(periods: xr.DataArray, counts: xr.DataArray) -> xr.DataArray:
    totals = np.asarray(counts.sum(("y", "x")).values)
    empty = [str(v) for v in periods["label"].values[totals == 0]]
    if empty:
        warnings.warn(f"periods {empty} have no valid observation anywhere: dropped",
                      DataWarning, stacklevel=3)
    return periods.isel(period=np.flatnonzero(totals > 0))


def _flatten_periods(periods: xr.DataArray, names: Sequence[str]) -> xr.DataArray:
    layers = []
    for i, label in enumerate(periods["label"].values):
        one = indices.compute_indices(periods.isel(period=i, drop=True), list(names))
        layers.append(one.assign_coords(band=[f"{label}_{b}" for b in one["band"].values]))
    return xr.concat(layers, dim="band").astype("float32")


def write_outputs(result: CompositeResult, grid: Grid, run_dir: Path) -> dict[str, Path]:
    """``features.tif`` and ``count.tif`` in ``run_dir``, streamed tile by tile.

    Memory stays bounded by the chunk size; afterwards ``result`` points at the written files
    (read lazily), so figures do not recompute the composite.
    """
    names = [str(b) for b in result.features["band"].values]
    layout = RunLayout(run_dir)
    out = {"features": layout.features, "count": layout.count}
    write_cogs([CogSpec(out["features"], result.features, nodata=np.nan, band_names=names,
                        tags={"composite_method": result.method}),
                CogSpec(out["count"], result.count.astype("uint16"), band_names=["count"])],
               grid)
    result.features = read_features(run_dir)
    result.count = read_cog(layout.count).isel(band=0, drop=True)
    return out


def read_features(run_dir: Path, *, chunks: int | None = 1024) -> xr.DataArray:
    """The feature stack written by :func:`write_outputs`, lazily, with band names."""
    return read_cog(RunLayout(run_dir).features, chunks=chunks)


def monthly_preview(items: Sequence[Any], grid: Grid, params: Params, *, masks_dir: Path,
                    factor: int = 4) -> xr.DataArray:
    """Monthly true-colour medians on a ``factor`` times coarser grid, for a quick look.

    A coarse pixel counts as masked when any of its fine pixels is masked (conservative).
    """
    coarse = grid.coarsen(factor)
    rgb = ["B04", "B03", "B02"]
    ds = load_stack(items, coarse, rgb, engine=params.load.engine, chunk=params.load.chunk,
                    time_chunk=-1)
    stack = reflectance(ds, rgb)
    mask = read_masks(masks_dir, [it.id for it in items], chunk=params.load.chunk)
    mask = (mask != clouds.CLEAR).coarsen(y=factor, x=factor, boundary="pad").max()
    mask = xr.DataArray(mask.data, dims=("time", "y", "x"),
                        coords={"time": stack["time"].values, "y": stack["y"], "x": stack["x"]})
    return composite.monthly_median(stack.where(~mask.astype(bool))).compute()
