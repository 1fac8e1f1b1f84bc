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
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import rasterio

from lcgee.demo._build import generate
from lcgee.demo._common import (
    BASELINE_CHANGE,
    BOA_ADD_OFFSET,
    COLLECTIONS,
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
from lcgee.demo._scenes import clean_band_dn, context
from lcgee.errors import DataError, ParamsError
from lcgee.grid import Grid
from lcgee.procs import sweep_world_tmp

__all__ = [
    "BASELINE_CHANGE",
    "BOA_ADD_OFFSET",
    "COLLECTIONS",
    "DEMO_GRID",
    "DEMO_REGIONS",
    "LABEL_TARGET_AGREEMENT",
    "S2_BANDS",
    "SCL_CLASSES",
    "SCL_CLEAR_AS_CLOUD",
    "SCL_CLOUD_RECALL",
    "SCL_HAZE_RECALL",
    "SCL_SHADOW_AS_WATER",
    "SCL_SHADOW_RECALL",
    "SCL_WATER_AS_SHADOW",
    "SUBCLASSES",
    "WORLDCOVER_CLASSES",
    "WORLD_VERSION",
    "World",
    "WorldSpec",
    "build_world",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

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

    @property
    def duplicate(self) -> dict:
        """The reprocessed duplicate granule pair recorded in world.json."""
        return self.meta["duplicate"]


def _read(path: Path, band: int | None = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band) if band else src.read()


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
    sweep_world_tmp(cache)  # half worlds of builders killed before they could clean up
    tmp = cache / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        generate(spec, tmp, progress=progress, workers=workers)
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


