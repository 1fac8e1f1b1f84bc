"""The run's grid from its params: the AOI (or a region) at the grid resolution and CRS.

Kept apart from :mod:`lcgee.stage` so that :mod:`lcgee.checks` (run by
:func:`lcgee.params.load_params`) can build the grid without importing the stage module, which
imports :mod:`lcgee.params` itself. ``Params`` and ``Area`` are only annotations here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lcgee.grid import Grid

if TYPE_CHECKING:
    from lcgee.params import Area, Params

__all__ = ["build_grid", "area_grid"]


def build_grid(params: Params, base: Path | None = None) -> Grid:
    """The run's one grid: the AOI at ``grid.resolution`` in ``grid.crs`` (default: UTM)."""
    return area_grid(params.aoi, params.grid.resolution, params.grid.crs, base)


def area_grid(area: Area, resolution: float, crs: str | None, base: Path | None = None) -> Grid:
    """A grid covering ``area`` (bbox in its own CRS when that is the grid CRS)."""
    if area.bbox is not None and crs is not None and area.crs.upper() == crs.upper():
        return Grid.from_bounds(area.bbox, resolution, crs)
    return Grid.from_bbox(area.lonlat_bbox(base), resolution, crs)
