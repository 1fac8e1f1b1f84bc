"""Generation of a demo world into a directory: landscape, labels, scenes, STAC, world.json.

Called by :func:`lcgee.demo.world.build_world`, which owns caching and the atomic rename.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio

from lcgee.demo import _extras, _stac, _worldcover, _zones
from lcgee.demo._cog import write_cog
from lcgee.demo._common import (
    BASELINE_CHANGE,
    BOA_ADD_OFFSET,
    COLLECTIONS,
    DEMO_GRID,
    DEMO_REGIONS,
    S2_BANDS,
    SCL_CLASSES,
    SCL_CLEAR_AS_CLOUD,
    SCL_CLOUD_RECALL,
    SCL_HAZE_RECALL,
    SCL_SHADOW_AS_WATER,
    SCL_SHADOW_RECALL,
    SCL_WATER_AS_SHADOW,
    SUBCLASSES,
    WORLD_VERSION,
    WORLDCOVER_CLASSES,
)
from lcgee.demo._labels import derive_labels
from lcgee.demo._landscape import build_landscape
from lcgee.demo._scenes import render_scene
from lcgee.demo._sky import acquisition_plan
from lcgee.grid import Grid
from lcgee.procs import die_with_parent

if TYPE_CHECKING:  # lcgee.demo.world imports this module
    from lcgee.demo.world import WorldSpec

__all__ = ["generate", "render_args", "scaled_regions"]

log = logging.getLogger(__name__)

_CENTRE_LATLON = (33.6, 130.35)
_COLLECTION_TEXT = {
    "sentinel-2-l2a": (
        "Sentinel-2 Level-2A (demo)",
        ("Synthetic Sentinel-2 L2A granules of tile 52SFC, shaped like Planetary Computer's "
         "sentinel-2-l2a."),
    ),
    "esa-worldcover": (
        "ESA WorldCover (demo)",
        "Synthetic WorldCover-like label map (about 75 % agreement with the demo truth).",
    ),
    "s2-cloud-probability": (
        "Sentinel-2 cloud probability (demo)",
        ("Synthetic stand-in for Earth Engine's COPERNICUS/S2_CLOUD_PROBABILITY; item id = "
         "Earth Engine system:index."),
    ),
}


def scaled_regions(size: int) -> dict[str, list[int]]:
    """DEMO_REGIONS scaled to a world of ``size`` pixels (exact for multiples of 192)."""
    return {name: [v * size // DEMO_GRID.height for v in win] for name, win in DEMO_REGIONS.items()}


def generate(spec: WorldSpec, root: Path, *, progress: bool, workers: int | None) -> None:
    """Write a complete world for ``spec`` (a ``WorldSpec``) into the empty directory ``root``."""
    t0 = time.perf_counter()
    grid = spec.grid
    log.info("generating demo world %s into %s", spec, root)
    land = build_landscape(spec.seed, spec.size)
    land.save(root / "truth" / "static")
    landcover = land.landcover
    cmap = {code: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) + (255,)
            for code, (_, c) in WORLDCOVER_CLASSES.items()}
    write_cog(root / "truth" / "landcover.tif", landcover, grid, nodata=0, resampling="NEAREST",
              colormap=cmap)
    write_cog(root / "truth" / "subclass.tif", land.subclass, grid, nodata=0, resampling="NEAREST")
    labels, label_stats = derive_labels(landcover, land.subclass, spec.seed)
    # Published like ESA's WorldCover: EPSG:4326 on the 1/12000 degree lattice; what a run
    # sees on the UTM grid is that map sampled at pixel centres (truth/labels.tif).
    published, geo = _worldcover.to_geographic(labels, grid)
    write_cog(root / _stac.WORLDCOVER_MAP, published, geo, nodata=0, resampling="NEAREST",
              colormap=cmap)
    labels = _worldcover.onto_grid(published, geo, grid)
    labels_path = Path("truth") / "labels.tif"
    write_cog(root / labels_path, labels, grid, nodata=0, resampling="NEAREST", colormap=cmap)
    label_stats = {**label_stats, "agreement": round(float((labels == landcover).mean()), 4),
                   "published": {"crs": geo.crs, "transform": list(geo.transform),
                                 "shape": list(geo.shape)}}
    del land, labels, published

    log.info("landscape and labels done after %.1f s", time.perf_counter() - t0)
    plan, dup = _plan(spec, grid)
    stats = _render_all(spec, root, grid, plan, progress=progress, workers=workers)
    log.info("%d scenes rendered after %.1f s", len(plan), time.perf_counter() - t0)
    for scene in plan:
        _extras.write_extras(root / "cogs" / scene["item_id"], grid, scene)
        if "tile" in scene:
            _zones.move(root / "cogs" / scene["item_id"])
    _copy_duplicate(root, plan[dup["index"]]["item_id"], dup["item_id"])
    _extras.reprocess(root / "cogs" / dup["item_id"], plan[dup["index"]], dup)
    items = _write_stac(root, grid, geo, plan, dup, stats)
    meta = _world_json(spec, grid, plan, dup, stats, items, label_stats, labels_path)
    meta["sizes"] = _sizes(root)
    (root / "world.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    seconds = time.perf_counter() - t0
    build = {"seconds": round(seconds, 2), "finished": datetime.now(UTC).isoformat(),
             "workers": _workers(workers), "python": sys.version.split()[0],
             "numpy": np.__version__, "gdal": rasterio.__gdal_version__}
    (root / "build.json").write_text(json.dumps(build, indent=1) + "\n")
    log.info("demo world generated in %.1f s, %.1f MB", seconds, meta["sizes"]["total"] / 1e6)


def _plan(spec: Any, grid: Grid) -> tuple[list[dict], dict]:
    """Acquisitions with their ids, and the reprocessed duplicate of one of them."""
    plan = acquisition_plan(spec.seed, spec.n_scenes, date.fromisoformat(spec.start),
                            date.fromisoformat(spec.end), _CENTRE_LATLON, spec.size)
    for scene in plan:
        if _zones.in_second_zone(scene["index"]):
            scene["tile"] = _zones.SECOND_ZONE_TILE
        scene.update(_stac.scene_ids(scene, scene["generated"]))
    old = [s for s in plan if s["offset"] == 0 and "tile" not in s]
    original = old[len(old) // 2]
    generated = original["generated"] + timedelta(days=600, seconds=4321)
    # Reprocessed much later at a newer baseline (as Planetary Computer did at 05.10): its DN
    # carry the +1000 offset although the original's do not.
    reprocessed = {**original, "baseline": _extras.REPROCESSED_BASELINE, "offset": BOA_ADD_OFFSET}
    ids = _stac.scene_ids(reprocessed, generated)
    dup = {"index": original["index"], "generated": generated, "baseline":
           _extras.REPROCESSED_BASELINE, "offset": BOA_ADD_OFFSET, **ids}
    return plan, dup


def _workers(workers: int | None) -> int:
    """Worker processes: as asked, else up to 2; 1 when spawned children could not start."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        return 1  # e.g. ``python - < script``: spawn cannot re-import __main__
    return max(1, workers if workers is not None else min(2, os.cpu_count() or 1))


def _render_all(spec: Any, root: Path, grid: Grid, plan: list[dict], *, progress: bool,
                workers: int | None) -> list[dict]:
    from tqdm.std import tqdm

    static = str(root / "truth" / "static")
    jobs = [render_args(s) for s in plan]
    n = _workers(workers)
    bar = tqdm(total=len(jobs), desc="demo world scenes", unit="scene", file=sys.stderr,
               disable=not progress)
    results: list[dict] = []
    try:
        if n == 1:
            for job in jobs:
                results.append(render_scene(static, str(root), spec.seed, grid.to_dict(), job))
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                       initargs=(os.getpid(),))
            try:
                futures = [pool.submit(render_scene, static, str(root), spec.seed, grid.to_dict(),
                                       job) for job in jobs]
                for fut in futures:
                    results.append(fut.result())
                    bar.update()
            except BaseException:
                _stop_pool(pool)
                raise
            pool.shutdown()
    finally:
        bar.close()
    return sorted(results, key=lambda r: r["index"])


def _worker_init(parent_pid: int) -> None:
    """Worker initializer: die with the builder (however it dies), leave Ctrl-C to it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    _single_threaded()


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Interrupted: end the workers now instead of waiting for their queued scenes."""
    procs = list(getattr(pool, "_processes", {}).values())  # no public way to reach them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def _single_threaded() -> None:
    """Worker initializer: one BLAS thread per process (the pool already uses every core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(1)


def render_args(scene: dict) -> dict:
    """The JSON-able subset of a scene that rendering (and surface_reflectance) needs."""
    keys = ("index", "item_id", "system_index", "doy", "sun_azimuth", "sun_zenith", "offset",
            "cloud_cover_target", "haze_cover_target", "shadow_k", "prob_false_positive", "nodata")
    return {k: scene[k] for k in keys}


def _copy_duplicate(root: Path, original: str, duplicate: str) -> None:
    """The reprocessed granule has the same pixels as the original."""
    shutil.copytree(root / "cogs" / original, root / "cogs" / duplicate)
    clouds = root / "truth" / "clouds"
    shutil.copyfile(clouds / f"{original}.tif", clouds / f"{duplicate}.tif")


def _write_stac(root: Path, grid: Grid, geo: Grid, plan: list[dict], dup: dict,
                stats: list[dict]) -> dict[str, list[dict]]:
    s2 = [_stac.s2_item(s, s, s["generated"], grid, st) for s, st in zip(plan, stats)]
    original = plan[dup["index"]]
    s2.append(_stac.s2_item({**original, "baseline": dup["baseline"]}, dup, dup["generated"],
                            grid, stats[dup["index"]]))
    s2 = [_zones.item_proj(it, root) if it["properties"]["s2:mgrs_tile"] != _stac.MGRS_TILE
          else it for it in s2]
    s2.sort(key=lambda it: (it["properties"]["datetime"], it["id"]))
    items = {
        "sentinel-2-l2a": s2,
        "esa-worldcover": [_stac.worldcover_item(geo)],
        "s2-cloud-probability": [_stac.probability_item(s, s, grid) for s in plan],
    }
    for cid, its in items.items():
        folder = root / "stac" / cid
        folder.mkdir(parents=True, exist_ok=True)
        coll = _stac.collection(cid, *_COLLECTION_TEXT[cid], its)
        coll.update(_stac.collection_extras(cid, its))
        (folder / "collection.json").write_text(json.dumps(coll, indent=1) + "\n")
        (folder / "items.json").write_text(json.dumps(_stac.item_collection(its), indent=1) + "\n")
    return items


def _scl_summary(stats: list[dict]) -> dict[str, Any]:
    tot = {k: sum(st["scl_counts"][k] for st in stats) for k in stats[0]["scl_counts"]}

    def rate(num: str, den: str) -> float | None:
        return round(tot[num] / tot[den], 4) if tot[den] else None

    return {
        "definition": "rates at 20 m against the 10 m truth aggregated per 2x2 block (see "
                      "lcgee/demo/_scl.py); over all scenes, duplicate excluded",
        "designed": {"scl_cloud_recall": SCL_CLOUD_RECALL, "scl_haze_recall": SCL_HAZE_RECALL,
                     "scl_shadow_recall": SCL_SHADOW_RECALL,
                     "scl_shadow_as_water": SCL_SHADOW_AS_WATER,
                     "scl_water_as_shadow": SCL_WATER_AS_SHADOW,
                     "scl_clear_as_cloud": SCL_CLEAR_AS_CLOUD},
        "achieved": {"scl_cloud_recall": rate("cloud_detected", "cloud"),
                     "scl_haze_recall": rate("haze_detected", "haze"),
                     "scl_shadow_recall": rate("shadow_as_3", "shadow"),
                     "scl_shadow_as_water": rate("shadow_as_6", "shadow"),
                     "scl_water_as_shadow": rate("water_as_3", "water"),
                     "scl_clear_as_cloud": rate("clear_as_cloud", "clear")},
        "counts": tot,
    }


def _scene_entry(scene: dict, ids: dict, st: dict, item: dict, duplicate_of: str | None) -> dict:
    props = item["properties"]
    return {
        "item_id": ids["item_id"], "datetime": props["datetime"],
        "system_index": ids["system_index"], "platform": scene["platform"],
        "tile": scene.get("tile", _stac.MGRS_TILE),
        "epsg": props["proj:epsg"],
        "baseline": ids.get("baseline", scene["baseline"]),
        "offset": ids.get("offset", scene["offset"]),
        "sun_azimuth": scene["sun_azimuth"], "sun_zenith": scene["sun_zenith"],
        "cloud_fraction": st["truth_cloud_fraction"], "haze_fraction": st["truth_haze_fraction"],
        "shadow_fraction": st["truth_shadow_fraction"], "nodata_fraction": st["nodata_fraction"],
        "eo_cloud_cover": props["eo:cloud_cover"], "duplicate_of": duplicate_of,
        "render": render_args(scene),
    }


def _world_json(spec: Any, grid: Grid, plan: list[dict], dup: dict, stats: list[dict],
                items: dict[str, list[dict]], label_stats: dict, labels_path: Path) -> dict:
    by_id = {it["id"]: it for it in items["sentinel-2-l2a"]}
    scenes = [_scene_entry(s, s, st, by_id[s["item_id"]], None) for s, st in zip(plan, stats)]
    original = plan[dup["index"]]
    scenes.append(_scene_entry(original, dup, stats[dup["index"]], by_id[dup["item_id"]],
                               original["item_id"]))
    scenes.sort(key=lambda s: (s["datetime"], s["item_id"]))
    return {
        "world_version": WORLD_VERSION, "spec": asdict(spec), "grid": grid.to_dict(),
        "regions": scaled_regions(spec.size),
        "worldcover_classes": {str(k): list(v) for k, v in WORLDCOVER_CLASSES.items()},
        "subclasses": {str(k): list(v) for k, v in SUBCLASSES.items()},
        "bands": S2_BANDS, "scl_classes": {str(k): v for k, v in SCL_CLASSES.items()},
        "baseline_change": BASELINE_CHANGE.isoformat(), "boa_add_offset": BOA_ADD_OFFSET,
        "hrefs": "asset hrefs are paths relative to this directory",
        "collections": {cid: {"collection": f"stac/{cid}/collection.json",
                              "items": f"stac/{cid}/items.json"} for cid in COLLECTIONS},
        "files": {"labels": labels_path.as_posix(), "published_labels": _stac.WORLDCOVER_MAP,
                  "truth_landcover": "truth/landcover.tif",
                  "truth_subclass": "truth/subclass.tif",
                  "truth_clouds": "truth/clouds/<item_id>.tif (bands: cloud 0/1 haze/2 cloud, "
                                  "shadow 0/1, cloud height in hm)"},
        "labels": label_stats,
        "scl": _scl_summary(stats),
        "duplicate": {"original": original["item_id"], "duplicate": dup["item_id"],
                      "system_index": dup["system_index"], "newer": dup["item_id"]},
        "scenes": scenes,
    }


def _sizes(root: Path) -> dict[str, int]:
    sizes = {}
    for part in ("cogs", "truth", "stac"):
        sizes[part] = sum(p.stat().st_size for p in (root / part).rglob("*") if p.is_file())
    sizes["total"] = sum(sizes.values())
    return sizes
