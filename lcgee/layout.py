"""The run directory ``outputs/<run>/``: the one place its artifact names are spelled.

Notebooks, the CLI and the stage modules ask a :class:`RunLayout` for a path instead of
joining file names by hand, so renaming an artifact is a one-line change and a test can check
that no other module spells these names. Paths are plain: nothing is created by asking
(every writer in lcgee creates its parent directory).

It also cuts region windows: :func:`region_grid` (a named region's sub-grid, pixel-aligned with
the run grid) and :func:`region_window` / :func:`region_windows` (where that sub-grid sits in
the run grid, as a :class:`Window` that slices arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from lcgee.errors import DataError, ParamsError
from lcgee.grid import Grid
from lcgee.params import Params

__all__ = ["RunLayout", "Window", "region_grid", "region_window", "region_windows"]

_A = TypeVar("_A")


@dataclass(frozen=True)
class RunLayout:
    """Every artifact path of one run directory (``root``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # the runner
    @property
    def params(self) -> Path:
        """The resolved params the stages ran with."""
        return self.root / "params.yaml"

    @property
    def run_record(self) -> Path:
        """``run.json``: params, versions, stage timings (secrets redacted)."""
        return self.root / "run.json"

    @property
    def stage_markers(self) -> Path:
        """The directory of per-stage cache markers."""
        return self.root / ".stages"

    def stage_marker(self, stage: str) -> Path:
        """The cache marker of one stage (its key and timing)."""
        return self.stage_markers / f"{stage}.json"

    def notebook(self, stage: str) -> Path:
        """The executed notebook of one stage."""
        return self.root / f"{stage}.ipynb"

    # 01 search
    @property
    def scenes(self) -> Path:
        return self.root / "scenes.parquet"

    @property
    def duplicates(self) -> Path:
        """Reprocessed copies dropped by the search, beside the scene table."""
        return self.root / "duplicates.json"

    # 02 clouds
    @property
    def masks(self) -> Path:
        """The directory of per-scene cloud masks."""
        return self.root / "masks"

    @property
    def mask_quality(self) -> Path:
        return self.root / "mask_quality.json"

    @property
    def mask_sources(self) -> Path:
        return self.root / "mask_sources.json"

    @property
    def ee_tiles(self) -> Path:
        """Cache of Earth Engine tiles (cloud masks, exports), so an interrupted run resumes."""
        return self.root / ".cache" / "ee-tiles"

    # 03 composite, 04 labels and samples
    @property
    def features(self) -> Path:
        return self.root / "features.tif"

    @property
    def count(self) -> Path:
        """Clear observations per pixel."""
        return self.root / "count.tif"

    @property
    def labels(self) -> Path:
        return self.root / "labels.tif"

    @property
    def samples(self) -> Path:
        return self.root / "samples.parquet"

    @property
    def sampling(self) -> Path:
        """How the samples were drawn (blocks, counts per class)."""
        return self.root / "samples.json"

    # 05 train and evaluate
    @property
    def model(self) -> Path:
        """The LightGBM model directory."""
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def confusion(self) -> Path:
        return self.root / "confusion.png"

    @property
    def difference(self) -> Path:
        return self.root / "difference.png"

    # 06 predict
    @property
    def landcover(self) -> Path:
        return self.root / "landcover.tif"

    @property
    def landcover_item(self) -> Path:
        """The STAC Item describing ``landcover.tif``."""
        return self.root / "landcover.json"

    # 07 Earth Engine
    @property
    def ee_classifier(self) -> Path:
        return self.model / "ee_classifier.json"

    @property
    def ee_graph(self) -> Path:
        return self.model / "ee_graph.json"

    @property
    def holdout(self) -> Path:
        """Held-out pixel sample the Earth Engine check classifies."""
        return self.model / "holdout.parquet"

    # 09 water
    @property
    def water_model(self) -> Path:
        """The water network's directory."""
        return self.model / "water"

    @property
    def water_probability(self) -> Path:
        return self.root / "water_probability.tif"

    @property
    def water(self) -> Path:
        return self.root / "water.tif"

    @property
    def water_item(self) -> Path:
        """The STAC Item describing the water maps."""
        return self.root / "water.json"


class Window(NamedTuple):
    """Where a named region sits in the run grid: ``(name, row, col, height, width)``."""

    name: str
    row: int
    col: int
    height: int
    width: int

    def cut(self, array: _A) -> _A:
        """The window of an array (numpy or xarray) whose last two axes are the run grid."""
        return array[..., self.row:self.row + self.height, self.col:self.col + self.width]

    def grid_in(self, grid: Grid) -> Grid:
        """The window's own grid, given the run ``grid`` it was cut from."""
        return grid.window(self.row, self.col, self.height, self.width)


def region_grid(params: Params, grid: Grid, name: str, base: Path | None = None) -> Grid:
    """The sub-grid of region ``name``, pixel-aligned with the run ``grid``.

    ``base`` is the folder relative paths in the params (region files) are resolved against.
    """
    try:
        region = params.regions[name]
    except KeyError:
        raise ParamsError(f"no region named {name!r}", where="regions",
                          fix=f"use one of {sorted(params.regions)}") from None
    if region.bbox is not None and region.crs.upper() == grid.crs.upper():
        return grid.crop(region.bbox)
    return grid.crop_lonlat(region.lonlat_bbox(base))


def region_window(params: Params, grid: Grid, name: str, base: Path | None = None) -> Window:
    """The :class:`Window` of region ``name`` in the run ``grid``."""
    rg = region_grid(params, grid, name, base)
    (row, col), (height, width) = rg.offset_in(grid), rg.shape
    return Window(name, row, col, height, width)


def region_windows(params: Params, grid: Grid, role: str, base: Path | None = None) -> list[Window]:
    """The windows of the regions with ``role`` (``train`` / ``predict``), in params order."""
    out = [region_window(params, grid, name, base) for name in params.regions_with(role)]
    if not out:
        raise DataError(f"no region with role {role!r}", where="regions",
                        fix=f"add a region with role: {role}")
    return out
