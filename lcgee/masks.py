"""The cloud-mask stage: one mask per scene on the run's grid, from the configured source.

Sources (``clouds.source``):

* ``local`` — the s2cloudless tutorial's algorithm (:mod:`lcgee.clouds`) over a cloud
  probability layer found in a STAC collection whose item ids are Earth Engine
  ``system:index`` values (the demo world ships ``s2-cloud-probability``);
* ``scl`` — Sen2Cor's scene classification;
* ``gee`` — s2cloudless from Earth Engine (downloaded onto the grid; needs credentials).

Scenes the primary source cannot serve use ``clouds.fallback``. Masks are written as one COG
per scene under ``masks/`` (atomically, so an interrupted stage resumes where it stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from lcgee import clouds
from lcgee.errors import DataError, EarthEngineError
from lcgee.files import write_json, write_text
from lcgee.gee import cloudmask, session
from lcgee.gee.connection import EarthEngineConnection, EarthEngineOptions
from lcgee.gee.retry import RetryPolicy
from lcgee.grid import Grid
from lcgee.load import load_stack, reflectance
from lcgee.params import CloudParams
from lcgee.raster import read_cog, write_cog
from lcgee.scenes import gee_index
from lcgee.search import fetch_items
from lcgee.stream import compute_each

if TYPE_CHECKING:  # annotations only
    from pystac import Item
    from pystac_client import Client

    from lcgee.demo.world import World

__all__ = ["cloud_params", "scene_masks", "write_masks", "read_masks", "load_probability",
           "quality_table", "compare_with_truth", "mask_key", "masks_by_source", "from_files",
           "SourceComparison", "compare_sources", "MaskQuality", "quality_against_truth",
           "require_masks", "scenes_at_once", "mask_path", "read_mask_block", "read_mask_tiles"]

log = logging.getLogger(__name__)

PROBABILITY_COLLECTION = "s2-cloud-probability"

#: At most this many scenes' windows are fetched by one read task (concurrently: HTTP reads are
#: latency-bound) and computed together by :func:`write_masks`, so each read serves them once.
SCENES_PER_READ = 4


def scenes_at_once(grid: Grid, tile: int) -> int:
    """Scenes per read task and per :func:`write_masks` group: up to :data:`SCENES_PER_READ`,
    as long as their area stays within 16 tiles (memory bounded by the tile size, not by the
    AOI: a large AOI goes one scene at a time)."""
    return max(1, min(SCENES_PER_READ, 16 * tile * tile // max(1, grid.height * grid.width)))


def cloud_params(cfg: CloudParams) -> clouds.CloudMaskParams:
    """The tutorial preset with the params' overrides applied."""
    out = dict(clouds.PRESETS[cfg.preset])
    out.pop("cloud_filter", None)
    for name in ("cld_prb_thresh", "nir_drk_thresh", "cld_prj_dist", "buffer"):
        value = getattr(cfg, name)
        if value is not None:
            out[name] = value
    out["exact_buffer"] = cfg.exact_buffer
    return clouds.CloudMaskParams.from_mapping(out)


def load_probability(client: Client, items: Sequence[Item], grid: Grid, *, chunk: int,
                     collection: str = PROBABILITY_COLLECTION, time_chunk: int = 1
                     ) -> tuple[xr.DataArray, list[str]]:
    """Cloud probability (0-100, float32, NaN nodata) for the items that have a layer.

    Matches items to probability layers by Earth Engine ``system:index``. Returns the layer
    stacked over the matched items and the ids of the items without one.
    """
    keys = [gee_index(it) for it in items]
    found = fetch_items(client, collection, keys, required=False)
    have = {it.id for it in found}
    missing = [it.id for it, k in zip(items, keys) if k not in have]
    if not found:
        return xr.DataArray(np.empty((0,) + grid.shape, "float32"), dims=("time", "y", "x")), missing
    ds = load_stack(found, grid, ["probability"], chunk=chunk, scene_coords=False,
                    time_chunk=time_chunk)
    prob = ds["probability"]
    prob = prob.astype("float32")  # exact for uint16; masking in float64 cost a pass more
    prob = prob.where(prob <= 100)
    return prob, missing


def _earth_engine_masks(items: Sequence[Item], grid: Grid, cfg: CloudParams, *,
                        cache_dir: Path | None = None,
                        connection: EarthEngineConnection | None = None, workers: int = 8,
                        retries: int = 6, progress: bool = True
                        ) -> tuple[xr.DataArray | None, list[Any]]:
    """The ``gee`` source: masks computed in Earth Engine, downloaded onto the grid.

    ``connection`` answers ``compute_pixels`` / ``get_info`` (an
    :class:`lcgee.gee.emulator.OfflineEarthEngine` offline); None needs a live session
    (:func:`lcgee.gee.session.init_live`), else an EarthEngineError saying how to authenticate.
    """
    if connection is None and session.session_mode() != "live":
        raise EarthEngineError("Earth Engine is not initialised, so its cloud masks cannot be "
                               "downloaded", where="clouds.source: gee",
                               fix=session.AUTH_HELP)
    if connection is not None and session.session_mode() is None:
        session.init_offline()  # graphs are built offline for the stand-in
    if cache_dir is None:
        import tempfile

        cache_dir = Path(tempfile.gettempdir()) / "lcgee-ee-tiles"
    got, left = cloudmask.download_masks(
        items, grid, cloud_params(cfg), cache_dir=cache_dir,
        connection=connection,
        workers=workers, policy=RetryPolicy(attempts=retries), progress=progress)
    if left:
        log.warning("%d scene(s) have no Earth Engine counterpart: %s", len(left),
                    ", ".join(it.id for it in left[:5]))
    if not got:
        return None, list(items)
    data = np.stack([m for _, m in got])
    masks = xr.DataArray(data, dims=("time", "y", "x"),
                         coords={"id": ("time", [i for i, _ in got]), **grid.coords()})
    return masks.rename("cloud_mask").assign_attrs(source="gee"), left


def _source_masks(source: str, items: Sequence[Item], grid: Grid, cfg: CloudParams, *,
                  client: Client, chunk: int, engine: str,
                  earth_engine: EarthEngineOptions | None = None
                  ) -> tuple[xr.DataArray | None, list[Any]]:
    """Masks from one source for as many items as it can serve; returns (masks, left over)."""
    if source == "auto":
        raise DataError("clouds.source auto is not resolved", where="clouds.source",
                        fix="pass the params' clouds with the source from "
                            "lcgee.cloudsource.resolve_source")
    if source == "scl":
        ds = load_stack(items, grid, ["SCL"], engine=engine, chunk=chunk)
        return clouds.scl_masks(ds["SCL"]).assign_coords(id=ds["id"]), []
    if source == "local":
        prob, missing = load_probability(client, items, grid, chunk=chunk,
                                         time_chunk=scenes_at_once(grid, chunk))
        served = [it for it in items if it.id not in set(missing)]
        if not served:
            return None, list(items)
        ds = load_stack(served, grid, ["B08", "SCL"], engine=engine, chunk=chunk,
                        time_chunk=scenes_at_once(grid, chunk))
        nir = reflectance(ds, ["B08"]).sel(band="B08", drop=True)
        prob = prob.assign_coords(time=nir["time"].values)
        masks = clouds.local_masks(prob, nir, ds["SCL"], sun_azimuth=ds["sun_azimuth"].values,
                                   resolution=grid.resolution, tile=chunk,
                                   **cloud_params(cfg).as_kwargs())
        return masks.assign_coords(id=ds["id"]), [it for it in items if it.id in set(missing)]
    if source == "gee":
        return _earth_engine_masks(items, grid, cfg,
                                   **(earth_engine.as_kwargs() if earth_engine else {}))
    raise DataError(f"unknown cloud source {source!r}", where="clouds.source")


def scene_masks(items: Sequence[Item], grid: Grid, cfg: CloudParams, *, client: Client,
                chunk: int = 1024, engine: str = "odc-stac",
                earth_engine: EarthEngineOptions | None = None) -> list[tuple[str, str, xr.DataArray]]:
    """``(item id, source, mask)`` per item; the primary source first, then the fallback.

    ``earth_engine`` holds keyword arguments of the ``gee`` source (``cache_dir`` for the tile
    cache, ``connection`` for an offline stand-in, ``workers``, ``retries``, ``progress``).
    """
    out: list[tuple[str, str, xr.DataArray]] = []
    todo = list(items)
    for source in (cfg.source, cfg.fallback):
        if not todo or source == "none":
            break
        try:
            masks, todo = _source_masks(source, todo, grid, cfg, client=client, chunk=chunk,
                                        engine=engine, earth_engine=earth_engine)
        except EarthEngineError as exc:
            if source == cfg.fallback or cfg.fallback == "none":
                raise
            log.warning("cloud source %s unavailable (%s); using %s", source, exc, cfg.fallback)
            continue
        if masks is not None:
            out += [(str(m["id"].item()), source, m) for m in masks.transpose("time", ...)]
    if todo:
        raise DataError(f"{len(todo)} scene(s) have no cloud mask from {cfg.source!r} or the "
                        f"fallback {cfg.fallback!r}: {', '.join(it.id for it in todo[:5])}",
                        where="clouds", fix="set clouds.fallback: scl")
    order = {it.id: i for i, it in enumerate(items)}
    return sorted(out, key=lambda t: order[t[0]])


def mask_key(cfg: CloudParams, grid: Grid) -> str:
    """A hash of everything a scene's mask depends on besides the scene itself."""
    import hashlib
    import json

    data = {"clouds": cfg.model_dump(mode="json"), "resolved": cloud_params(cfg).as_kwargs(),
            "grid": grid.to_dict(), "version": clouds.__name__ + ":2"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def write_masks(masks: Sequence[tuple[str, str, xr.DataArray]], grid: Grid, directory: Path,
                *, key: str, progress: bool = True) -> list[Path]:
    """One COG per scene (``<id>.tif``) under ``directory``.

    Files written under the same ``key`` (see :func:`mask_key`) are kept, so a rerun after an
    interruption resumes; a different key (other cloud params or grid) clears the directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "key.txt"
    if not key_file.is_file() or key_file.read_text().strip() != key:
        for old in directory.glob("*.tif"):
            old.unlink()
        write_text(key_file, key + "\n")
    paths = [mask_path(directory, item_id) for item_id, _, _ in masks]
    todo = [(path, source, mask) for path, (_, source, mask) in zip(paths, masks)
            if not path.exists()]
    bar: Any = None
    if progress:
        from tqdm.std import tqdm

        bar = tqdm(total=len(masks), initial=len(masks) - len(todo), desc="cloud masks",
                   unit="scene")

    def write(i: int, mask: Any) -> None:
        path, source, _ = todo[i]
        write_cog(path, np.asarray(mask).astype("uint8"), grid, nodata=int(clouds.NODATA),
                  band_names=["cloud_mask"], tags={"source": source,
                                                   "codes": "0 clear,1 cloud,2 shadow,255 nodata"})
        if bar is not None:
            bar.update()

    lazy = [i for i, (_, _, m) in enumerate(todo) if hasattr(m.data, "dask")]
    for i in sorted(set(range(len(todo))) - set(lazy)):
        write(i, todo[i][2].data)  # NumPy masks (Earth Engine downloads)
    # groups of scenes (those one read task serves) computing at once, each written when ready
    tile = max(max(c) for c in todo[lazy[0]][2].data.chunks[-2:]) if lazy else 1024
    step = scenes_at_once(grid, tile)
    groups = [lazy[k:k + step] for k in range(0, len(lazy), step)]

    def write_group(g: int, values: tuple) -> None:
        for i, value in zip(groups[g], values):
            write(i, value)

    compute_each([[todo[i][2].data for i in group] for group in groups], write_group)
    if bar is not None:
        bar.close()
    return paths


def mask_path(directory: Path, item_id: str) -> Path:
    """The mask COG of scene ``item_id`` under ``directory``."""
    return Path(directory) / f"{item_id}.tif"


def read_masks(directory: Path, ids: Sequence[str], *, chunk: int = 1024) -> xr.DataArray:
    """The masks of ``ids`` as a lazy uint8 ``(time, y, x)`` array (time = position in ids)."""
    require_masks(directory, ids)
    layers = [read_cog(mask_path(directory, i), chunks=chunk).isel(band=0, drop=True)
              for i in ids]
    return xr.concat(layers, dim="time").assign_coords(id=("time", list(ids)))


def require_masks(directory: Path, ids: Sequence[str]) -> None:
    """A DataError unless every scene of ``ids`` has its mask COG in ``directory``."""
    missing = [i for i in ids if not mask_path(directory, i).is_file()]
    if missing:
        raise DataError(f"no cloud mask for {len(missing)} scene(s), e.g. {missing[0]}",
                        where=str(directory), fix="run the 02_clouds stage first")


def read_mask_block(paths: Sequence[str], *, block_info: dict | None = None) -> np.ndarray:
    """``(time, y, x)`` uint8 window of the scenes' mask COGs (one per path, on the grid)."""
    import rasterio
    from rasterio.windows import Window

    assert block_info is not None
    (t0, t1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    out = np.empty((t1 - t0, r1 - r0, c1 - c0), np.uint8)
    for k, path in enumerate(paths[t0:t1]):
        with rasterio.open(path) as src:
            src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), out=out[k])
    return out


def read_mask_tiles(directory: Path, ids: Sequence[str], like: xr.DataArray) -> da.Array:
    """The written masks of ``ids`` as a ``(time, y, x)`` uint8 Dask array on ``like``'s
    spatial chunks, time in one chunk (one task reads every scene's window of a tile), for
    :mod:`lcgee.onepass`; :func:`read_masks` is the per-scene DataArray."""
    require_masks(directory, ids)
    paths = [str(mask_path(directory, i)) for i in ids]
    chunks = ((len(paths),), *like.data.chunks[-2:])
    stamps = [Path(p).stat().st_mtime_ns for p in paths]
    return da.map_blocks(read_mask_block, paths, chunks=chunks, dtype=np.uint8,
                         meta=np.empty((0, 0, 0), np.uint8),
                         name=f"lcgee-masks-{tokenize(paths, stamps, chunks)}")


def quality_table(world: World, grid: Grid, masks_by_source: dict[str, dict[str, np.ndarray]]
                  ) -> pd.DataFrame:
    """Cloud and shadow precision / recall / balanced accuracy of each source vs the truth.

    ``masks_by_source`` maps a source name to ``{item id: mask array on grid}``; truth comes
    from the demo world (pooled over all scenes).
    """
    row0, col0 = grid.offset_in(world.grid)
    window = (slice(row0, row0 + grid.height), slice(col0, col0 + grid.width))
    rows = []
    for source, masks in masks_by_source.items():
        preds, tc, ts = [], [], []
        for item_id, mask in masks.items():
            preds.append(mask)
            tc.append(world.truth_cloud(item_id)[window])
            ts.append(world.truth_shadow(item_id)[window])
        q = clouds.mask_quality(np.stack(preds), np.stack(tc), np.stack(ts))
        for kind in ("cloud", "shadow", "cloud_or_shadow"):
            rows.append({"source": source, "kind": kind,
                         **{k: q[kind][k] for k in ("precision", "recall", "balanced_accuracy")}})
    return pd.DataFrame(rows)


def masks_by_source(items: Sequence[Item], grid: Grid, cfg: CloudParams, *, client: Client,
                    chunk: int = 1024, earth_engine: EarthEngineOptions | None = None,
                    have: Sequence[tuple[str, str, xr.DataArray]] = ()
                    ) -> dict[str, dict[str, np.ndarray]]:
    """``{source: {item id: mask}}`` for ``scl``, ``local`` and (when ``earth_engine`` options
    are given) ``gee``, each source alone (no fallback). Masks in ``have`` are reused."""
    sources = ["scl", "local"] + (["gee"] if earth_engine is not None else [])
    out: dict[str, dict[str, np.ndarray]] = {}
    wanted = {it.id for it in items}
    for source in sources:
        mine = {i: m for i, s, m in have if s == source and i in wanted}
        if len(mine) == len(wanted):
            out[source] = dict(zip(mine, _compute(list(mine.values())), strict=True))
            continue
        one = cfg.model_copy(update={"source": source, "fallback": "none"})
        try:
            got = scene_masks(items, grid, one, client=client, chunk=chunk,
                              earth_engine=earth_engine)
        except (EarthEngineError, DataError) as exc:
            log.warning("no %s masks to compare: %s", source, exc)
            continue
        out[source] = dict(zip([i for i, _, _ in got], _compute([m for _, _, m in got]),
                               strict=True))
    return out


@dataclass(frozen=True)
class SourceComparison:
    """The masks of a few scenes by each source (:func:`compare_sources`)."""

    masks: Mapping[str, Mapping[str, np.ndarray]]
    """``{source: {item id: mask}}`` (:func:`masks_by_source`)."""

    @property
    def gee_equal_local(self) -> tuple[int, int] | None:
        """``(scenes whose Earth Engine mask equals the local one, scenes compared)``; None
        without Earth Engine masks."""
        if "gee" not in self.masks or "local" not in self.masks:
            return None
        gee, local = self.masks["gee"], self.masks["local"]
        same = [np.array_equal(gee[i], local[i]) for i in gee if i in local]
        return sum(same), len(same)

    @property
    def summary(self) -> str:
        """One sentence: how many Earth Engine masks equal the local ones."""
        counts = self.gee_equal_local
        if counts is None:
            return "no Earth Engine masks to compare with the local ones"
        return f"Earth Engine masks equal to the local ones: {counts[0]} of {counts[1]} scenes"


def compare_sources(items: Sequence[Item], grid: Grid, cfg: CloudParams, *, client: Client,
                    chunk: int = 1024, earth_engine: EarthEngineOptions | None = None,
                    have: Sequence[tuple[str, str, xr.DataArray]] = ()) -> SourceComparison:
    """:func:`masks_by_source` of ``items``, as a :class:`SourceComparison`."""
    return SourceComparison(masks_by_source(items, grid, cfg, client=client, chunk=chunk,
                                            earth_engine=earth_engine, have=have))


@dataclass(frozen=True)
class MaskQuality:
    """Mask quality of each source against the demo world's truth (:func:`quality_against_truth`)."""

    table: pd.DataFrame
    """:func:`quality_table` (empty without a truth)."""

    message: str
    """What was measured and where it was written, or why nothing was."""

    @property
    def balanced_accuracy(self) -> pd.DataFrame:
        """Balanced accuracy by kind (rows) and source (columns); empty without a truth."""
        if self.table.empty:
            return pd.DataFrame()
        return self.table.pivot(index="kind", columns="source", values="balanced_accuracy")


def quality_against_truth(world: World | None, items: Sequence[Item], grid: Grid, cfg: CloudParams, *,
                          client: Client, out: Path, chunk: int = 1024,
                          have: Sequence[tuple[str, str, xr.DataArray]] = (),
                          earth_engine: EarthEngineOptions | None = None) -> MaskQuality:
    """:func:`compare_with_truth` on the demo world, written to ``out`` (JSON records).

    ``world`` is None on real data: nothing is measured or written and the message says so.
    """
    if world is None:
        return MaskQuality(pd.DataFrame(),
                           "no truth on real data: compare the overlays above by eye")
    table = compare_with_truth(world, items, grid, cfg, client=client, chunk=chunk, have=have,
                               earth_engine=earth_engine)
    write_json(out, table.to_dict(orient="records"))
    return MaskQuality(table, f"sources {sorted(set(table['source']))} against the demo world's "
                              f"truth over {len(items)} scenes (written to {out.name})")


def _compute(masks: Sequence[xr.DataArray]) -> list[np.ndarray]:
    """All masks in one compute: they are slices of one lazy array, and computing them one by
    one repeats the shared work (and races key release on a distributed cluster)."""
    return [np.asarray(a) for a in dask.compute(*[m.data for m in masks])]


def compare_with_truth(world: World, items: Sequence[Item], grid: Grid, cfg: CloudParams, *,
                       client: Client, chunk: int = 1024,
                       have: Sequence[tuple[str, str, xr.DataArray]] = (),
                       earth_engine: EarthEngineOptions | None = None) -> pd.DataFrame:
    """:func:`quality_table` of the ``local``, ``scl`` (and ``gee``) sources on the demo world.

    Masks already computed (``have``, from the run's own source) are reused.
    """
    return quality_table(world, grid, masks_by_source(items, grid, cfg, client=client,
                                                      chunk=chunk, earth_engine=earth_engine,
                                                      have=have))


def from_files(masks: Sequence[tuple[str, str, xr.DataArray]], directory: Path, *,
               chunk: int = 1024) -> list[tuple[str, str, xr.DataArray]]:
    """The same ``(item id, source, mask)`` triples, each mask read lazily from the COG that
    :func:`write_masks` wrote, so later uses (figures, source comparison, quality) read a
    small file instead of recomputing the mask from the imagery."""
    return [(item_id, source, read_cog(mask_path(directory, item_id), chunks=chunk)
             .isel(band=0, drop=True).rename("cloud_mask"))
            for item_id, source, _ in masks]
