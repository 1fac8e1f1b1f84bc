"""The embedded demo world: a deterministic synthetic Sentinel-2 L2A archive and its truth.

``build_world()`` generates, on first use, a small archive near Fukuoka (UTM 52N, 10 m) laid out
like Planetary Computer: a ``sentinel-2-l2a`` collection (12 bands at native resolution + SCL,
processing baselines before and after 2022-01-25, one reprocessed duplicate granule), an
``esa-worldcover`` collection (a noisy label map) and an ``s2-cloud-probability`` collection
(Earth Engine's ``COPERNICUS/S2_CLOUD_PROBABILITY`` stand-in, item id = ``system:index``).
The truth (land cover, sub-classes, clouds, shadows, clean reflectance) lives under ``truth/``
and in no STAC collection.

Layout of a world root::

    world.json                       spec, grid, regions, scenes, achieved error rates, sizes
    build.json                       wall time and versions (the only non-reproducible file)
    stac/<collection>/collection.json, stac/<collection>/items.json
    cogs/<item id>/<band>.tif        hrefs in the items are these paths, relative to the root
    truth/landcover.tif, truth/subclass.tif, truth/clouds/<item id>.tif, truth/static/*.npy
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import multiprocessing
import numpy as np
import rasterio

from lcgee.demo import _stac
from lcgee.demo._cog import write_cog
from lcgee.demo._common import (
    BASELINE_CHANGE,
    BOA_ADD_OFFSET,
    DEMO_GRID,
    DEMO_REGIONS,
    LABEL_TARGET_AGREEMENT,
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
from lcgee.demo._scenes import clean_band_dn, context, render_scene
from lcgee.demo._sky import acquisition_plan
from lcgee.errors import DataError, ParamsError
from lcgee.grid import Grid

__all__ = [
    "WORLD_VERSION", "DEMO_GRID", "DEMO_REGIONS", "WORLDCOVER_CLASSES", "SUBCLASSES", "S2_BANDS",
    "SCL_CLASSES", "SCL_CLOUD_RECALL", "SCL_HAZE_RECALL", "SCL_SHADOW_RECALL",
    "SCL_SHADOW_AS_WATER", "SCL_WATER_AS_SHADOW", "SCL_CLEAR_AS_CLOUD", "LABEL_TARGET_AGREEMENT",
    "BASELINE_CHANGE", "BOA_ADD_OFFSET", "COLLECTIONS", "WorldSpec", "World", "build_world",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

#: The STAC collections of a world.
COLLECTIONS = ("sentinel-2-l2a", "esa-worldcover", "s2-cloud-probability")
_CENTRE_LATLON = (33.6, 130.35)
_SIZE_STEP = 192  # divisible by the 20 m, 60 m and 160 m (cloud probability) blocks


@dataclass(frozen=True)
class WorldSpec:
    """What a demo world is generated from; equal specs give byte-identical worlds."""

    #: seed of every random choice (landscape, dates, clouds, noise, label errors).
    seed: int = 2021
    #: grid side in 10 m pixels (a multiple of 192); the origin is always DEMO_GRID's.
    size: int = 1536
    #: number of acquisitions (a reprocessed duplicate item comes on top).
    n_scenes: int = 24
    #: first day acquisitions may fall on (ISO date).
    start: str = "2021-04-01"
    #: last day acquisitions may fall on (ISO date); the span must include 2022-01-25.
    end: str = "2022-09-30"

    def __post_init__(self) -> None:
        if self.size < _SIZE_STEP or self.size % _SIZE_STEP:
            raise ParamsError(f"world size {self.size} is not a positive multiple of {_SIZE_STEP}",
                              where="WorldSpec.size", fix="use 192, 384, 576, ... or 1536")
        if self.n_scenes < 6:
            raise ParamsError(f"n_scenes={self.n_scenes} is too small", where="WorldSpec.n_scenes",
                              fix="use at least 6 (the default is 24)")
        start, end = date.fromisoformat(self.start), date.fromisoformat(self.end)
        if not start < BASELINE_CHANGE <= end:
            raise ParamsError(f"acquisition span {self.start}..{self.end} does not cross "
                              f"{BASELINE_CHANGE}", where="WorldSpec.start/end",
                              fix="start before and end after 2022-01-25")
        if (end - start).days < 5 * self.n_scenes:
            raise ParamsError(f"{self.n_scenes} acquisitions do not fit in {self.start}..{self.end}",
                              where="WorldSpec.n_scenes", fix="widen the span or ask fewer scenes")

    @property
    def key(self) -> str:
        """Short hash of the spec, part of the cache directory name."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def grid(self) -> Grid:
        """The world grid: DEMO_GRID's origin and resolution, ``size x size`` pixels."""
        return Grid(DEMO_GRID.crs, DEMO_GRID.transform, (self.size, self.size))


def default_cache_dir() -> Path:
    """``$LCGEE_CACHE/demo`` or ``~/.cache/lcgee/demo``."""
    base = os.environ.get("LCGEE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "lcgee") / "demo"


@dataclass(frozen=True)
class World:
    """A generated demo world on disk.

    Attributes:
        root: the world directory (holds world.json).
        spec: the spec it was generated from.
        grid: the full world grid.
        meta: the parsed world.json.
    """

    root: Path
    spec: WorldSpec
    grid: Grid
    meta: dict = field(repr=False, compare=False)

    @classmethod
    def open(cls, root: Path) -> World:
        """Open a world directory written by :func:`build_world`."""
        path = Path(root) / "world.json"
        if not path.exists():
            raise DataError(f"{path} does not exist", where="demo world",
                            fix="build the world with lcgee.demo.world.build_world()")
        meta = json.loads(path.read_text())
        return cls(Path(root), WorldSpec(**meta["spec"]), Grid.from_dict(meta["grid"]), meta)

    # ---- STAC ----------------------------------------------------------------------------
    def collection_path(self, collection_id: str) -> Path:
        """``stac/<collection>/collection.json``."""
        return self.root / "stac" / self._check_collection(collection_id) / "collection.json"

    def item_collection_path(self, collection_id: str) -> Path:
        """``stac/<collection>/items.json`` (a FeatureCollection, hrefs relative to the root)."""
        return self.root / "stac" / self._check_collection(collection_id) / "items.json"

    def _check_collection(self, collection_id: str) -> str:
        if collection_id not in COLLECTIONS:
            raise ParamsError(f"unknown demo collection '{collection_id}'", where="demo world",
                              fix=f"use one of {', '.join(COLLECTIONS)}")
        return collection_id

    # ---- scenes ----------------------------------------------------------------------------
    def scenes(self) -> list[dict]:
        """Per item: id, datetime, system_index, baseline, sun angles, cloud fractions, ..."""
        return [{k: v for k, v in s.items() if k != "render"} for s in self.meta["scenes"]]

    def _scene(self, item_id: str) -> dict:
        for scene in self.meta["scenes"]:
            if scene["item_id"] == item_id:
                return scene
        raise DataError(f"no scene '{item_id}' in the demo world", where=str(self.root),
                        fix="pick an item id from World.scenes()")

    # ---- truth -----------------------------------------------------------------------------
    def truth_landcover(self) -> np.ndarray:
        """The true WorldCover class of every pixel (uint8, full grid)."""
        return _read(self.root / "truth" / "landcover.tif")

    def truth_subclass(self) -> np.ndarray:
        """The true sub-class (see ``meta["subclasses"]``; paddy 41 vs dry crop 42, ...)."""
        return _read(self.root / "truth" / "subclass.tif")

    def labels(self) -> np.ndarray:
        """The published (noisy, ~75 % correct) WorldCover-like label map."""
        return _read(self.root / self.meta["files"]["labels"])

    def _truth_clouds(self, item_id: str) -> np.ndarray:
        self._scene(item_id)
        return _read(self.root / "truth" / "clouds" / f"{item_id}.tif", band=None)

    def truth_cloud(self, item_id: str, *, include_haze: bool = True) -> np.ndarray:
        """True where a cloud (and, by default, thin haze) alters the pixel (10 m, bool)."""
        code = self._truth_clouds(item_id)[0]
        return code >= 1 if include_haze else code == 2

    def truth_shadow(self, item_id: str) -> np.ndarray:
        """True where a cloud shadow is visible (not hidden under the cloud; 10 m, bool)."""
        return self._truth_clouds(item_id)[1] == 1

    def truth_cloud_height(self, item_id: str) -> np.ndarray:
        """Cloud-object height in metres where the cloud casts a shadow (opacity > 0.1), else 0."""
        return self._truth_clouds(item_id)[2].astype(np.int32) * 100

    def surface_reflectance(self, item_id: str, band: str) -> np.ndarray:
        """Clean harmonized DN (``round(reflectance * 10000)``) of a band at native resolution.

        What a perfect cloud/shadow mask plus harmonization recovers in clear pixels; 0 where
        the swath has no data. Regenerated deterministically from ``truth/static``.
        """
        if band not in S2_BANDS:
            raise ParamsError(f"unknown band '{band}'", where="surface_reflectance",
                              fix=f"use one of {', '.join(S2_BANDS)}")
        scene = self._scene(item_id)
        ctx = context(str(self.root / "truth" / "static"), self.spec.seed, self.grid)
        return clean_band_dn(ctx, scene["render"], band)

    # ---- regions ---------------------------------------------------------------------------
    def region_window(self, name: str) -> tuple[int, int, int, int]:
        """``(row0, row1, col0, col1)`` of a region on this world's grid."""
        try:
            return tuple(self.meta["regions"][name])  # type: ignore[return-value]
        except KeyError:
            raise ParamsError(f"unknown region '{name}'", where="demo world",
                              fix=f"use one of {', '.join(DEMO_REGIONS)}") from None

    def region_grid(self, name: str) -> Grid:
        """The sub-grid of a region."""
        r0, r1, c0, c1 = self.region_window(name)
        return self.grid.window(r0, c0, r1 - r0, c1 - c0)

    @cached_property
    def duplicate(self) -> dict:
        """The reprocessed duplicate granule pair recorded in world.json."""
        return self.meta["duplicate"]


def _read(path: Path, band: int | None = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band) if band else src.read()


def scaled_regions(size: int) -> dict[str, list[int]]:
    """DEMO_REGIONS scaled to a world of ``size`` pixels (exact for multiples of 192)."""
    return {name: [v * size // DEMO_GRID.height for v in win] for name, win in DEMO_REGIONS.items()}


# ---- building ------------------------------------------------------------------------------
def build_world(spec: WorldSpec = WorldSpec(), cache_dir: Path | None = None, *,
                progress: bool = True, workers: int | None = None) -> World:
    """Return the cached world for ``spec``, generating it first if needed.

    Generation happens in a temporary sibling directory that is renamed into place at the end,
    so a crash leaves no half world and concurrent builders never see each other's files.
    ``workers`` processes render scenes (default: up to 2).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / f"world-v{WORLD_VERSION}-{spec.key}"
    if (final / "world.json").exists():
        return World.open(final)
    if final.exists() and any(final.iterdir()):
        raise DataError(f"{final} exists but holds no world.json", where="demo world cache",
                        fix=f"delete {final}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _generate(spec, tmp, progress=progress, workers=workers)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "world.json").exists():
                raise
            log.info("another process built %s first; using it", final)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return World.open(final)


def _generate(spec: WorldSpec, root: Path, *, progress: bool, workers: int | None) -> None:
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
    labels_path = Path("cogs") / _stac.WORLDCOVER_ITEM_ID / "map.tif"
    write_cog(root / labels_path, labels, grid, nodata=0, resampling="NEAREST", colormap=cmap)
    del land, labels

    log.info("landscape and labels done after %.1f s", time.perf_counter() - t0)
    plan, dup = _plan(spec, grid)
    stats = _render_all(spec, root, grid, plan, progress=progress, workers=workers)
    log.info("%d scenes rendered after %.1f s", len(plan), time.perf_counter() - t0)
    _copy_duplicate(root, plan[dup["index"]]["item_id"], dup["item_id"])
    items = _write_stac(root, grid, plan, dup, stats)
    meta = _world_json(spec, grid, plan, dup, stats, items, label_stats, labels_path)
    meta["sizes"] = _sizes(root)
    (root / "world.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    seconds = time.perf_counter() - t0
    build = {"seconds": round(seconds, 2), "finished": datetime.now(timezone.utc).isoformat(),
             "workers": _workers(workers), "python": sys.version.split()[0],
             "numpy": np.__version__, "gdal": rasterio.__gdal_version__}
    (root / "build.json").write_text(json.dumps(build, indent=1) + "\n")
    log.info("demo world generated in %.1f s, %.1f MB", seconds, meta["sizes"]["total"] / 1e6)


def _plan(spec: WorldSpec, grid: Grid) -> tuple[list[dict], dict]:
    """Acquisitions with their ids, and the reprocessed duplicate of one of them."""
    plan = acquisition_plan(spec.seed, spec.n_scenes, date.fromisoformat(spec.start),
                            date.fromisoformat(spec.end), _CENTRE_LATLON, spec.size)
    for scene in plan:
        scene.update(_stac.scene_ids(scene, scene["generated"]))
    old = [s for s in plan if s["offset"] == 0]
    original = old[len(old) // 2]
    generated = original["generated"] + timedelta(days=600, seconds=4321)
    ids = _stac.scene_ids(original, generated)
    dup = {"index": original["index"], "generated": generated, **ids}
    return plan, dup


def _workers(workers: int | None) -> int:
    return max(1, workers if workers is not None else min(2, os.cpu_count() or 1))


def _render_all(spec: WorldSpec, root: Path, grid: Grid, plan: list[dict], *, progress: bool,
                workers: int | None) -> list[dict]:
    from tqdm.auto import tqdm

    static = str(root / "truth" / "static")
    jobs = [_render_args(s) for s in plan]
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
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
                futures = [pool.submit(render_scene, static, str(root), spec.seed, grid.to_dict(),
                                       job) for job in jobs]
                for fut in futures:
                    results.append(fut.result())
                    bar.update()
    finally:
        bar.close()
    return sorted(results, key=lambda r: r["index"])


def _render_args(scene: dict) -> dict:
    """The JSON-able subset of a scene that rendering (and surface_reflectance) needs."""
    keys = ("index", "item_id", "system_index", "doy", "sun_azimuth", "sun_zenith", "offset",
            "cloud_cover_target", "haze_cover_target", "shadow_k", "prob_false_positive", "nodata")
    return {k: scene[k] for k in keys}


def _copy_duplicate(root: Path, original: str, duplicate: str) -> None:
    """The reprocessed granule has the same pixels as the original."""
    shutil.copytree(root / "cogs" / original, root / "cogs" / duplicate)
    clouds = root / "truth" / "clouds"
    shutil.copyfile(clouds / f"{original}.tif", clouds / f"{duplicate}.tif")


def _write_stac(root: Path, grid: Grid, plan: list[dict], dup: dict,
                stats: list[dict]) -> dict[str, list[dict]]:
    s2 = [_stac.s2_item(s, s, s["generated"], grid, st) for s, st in zip(plan, stats)]
    original = plan[dup["index"]]
    s2.append(_stac.s2_item(original, dup, dup["generated"], grid, stats[dup["index"]]))
    s2.sort(key=lambda it: (it["properties"]["datetime"], it["id"]))
    items = {
        "sentinel-2-l2a": s2,
        "esa-worldcover": [_stac.worldcover_item(grid)],
        "s2-cloud-probability": [_stac.probability_item(s, s, grid) for s in plan],
    }
    texts = {
        "sentinel-2-l2a": ("Sentinel-2 Level-2A (demo)", "Synthetic Sentinel-2 L2A granules of "
                           "tile 52SFC, shaped like Planetary Computer's sentinel-2-l2a."),
        "esa-worldcover": ("ESA WorldCover (demo)", "Synthetic WorldCover-like label map "
                           "(about 75 % agreement with the demo truth)."),
        "s2-cloud-probability": ("Sentinel-2 cloud probability (demo)", "Synthetic stand-in for "
                                 "Earth Engine's COPERNICUS/S2_CLOUD_PROBABILITY; item id = "
                                 "Earth Engine system:index."),
    }
    for cid, its in items.items():
        folder = root / "stac" / cid
        folder.mkdir(parents=True, exist_ok=True)
        coll = _stac.collection(cid, *texts[cid], its)
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
        "baseline": scene["baseline"], "offset": scene["offset"],
        "sun_azimuth": scene["sun_azimuth"], "sun_zenith": scene["sun_zenith"],
        "cloud_fraction": st["truth_cloud_fraction"], "haze_fraction": st["truth_haze_fraction"],
        "shadow_fraction": st["truth_shadow_fraction"], "nodata_fraction": st["nodata_fraction"],
        "eo_cloud_cover": props["eo:cloud_cover"], "duplicate_of": duplicate_of,
        "render": _render_args(scene),
    }


def _world_json(spec: WorldSpec, grid: Grid, plan: list[dict], dup: dict, stats: list[dict],
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
        "files": {"labels": labels_path.as_posix(), "truth_landcover": "truth/landcover.tif",
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
