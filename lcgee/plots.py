"""Figures the notebooks show: class maps, region layouts, true colour, masks.

matplotlib is imported lazily so the library imports fast; every function returns the figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lcgee.grid import Grid
from lcgee.labels import WORLDCOVER

__all__ = ["class_map", "regions_figure", "stretch"]

_ROLE_COLOURS = {"train": "#ffffff", "predict": "#00ffff"}


def _class_cmap(codes: np.ndarray) -> tuple[Any, Any, list[int]]:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    present = sorted(int(c) for c in np.unique(codes) if int(c) in WORLDCOVER)
    present = present or [10]
    colours = [WORLDCOVER[c][1] for c in present]
    bounds = [present[0] - 0.5] + [(a + b) / 2 for a, b in zip(present, present[1:])] + [
        present[-1] + 0.5]
    return ListedColormap(colours), BoundaryNorm(bounds, len(colours)), present


def class_map(ax: Any, codes: np.ndarray, grid: Grid | None = None, *, legend: bool = True,
              title: str | None = None) -> Any:
    """Draw a WorldCover-coded array with the official colours."""
    cmap, norm, present = _class_cmap(codes)
    extent = None
    if grid is not None:
        left, bottom, right, top = grid.bounds
        extent = (left, right, bottom, top)
    im = ax.imshow(np.ma.masked_equal(codes, 0), cmap=cmap, norm=norm, extent=extent,
                   interpolation="nearest")
    if legend:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=WORLDCOVER[c][1], label=f"{c} {WORLDCOVER[c][0]}")
                           for c in present], loc="upper left", bbox_to_anchor=(1.01, 1),
                  fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return im


def regions_figure(grid: Grid, regions: Mapping[str, Grid], roles: Mapping[str, str],
                   background: np.ndarray | None = None) -> Any:
    """The AOI with each named region outlined and labelled with its role."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(8, 6.5))
    left, bottom, right, top = grid.bounds
    if background is not None:
        class_map(ax, background, grid, title="Regions over the label map")
    else:
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_title("Regions in the AOI")
    for name, g in regions.items():
        l, b, r, t = g.bounds
        colour = _ROLE_COLOURS.get(roles.get(name, ""), "#ffff00")
        ax.add_patch(Rectangle((l, b), r - l, t - b, fill=False, lw=2.5, ec=colour))
        ax.text(l + 100, t - 150, f"{name}\n({roles.get(name, '?')})", color=colour, va="top",
                fontsize=9, weight="bold")
    ax.set_xlabel(f"x ({grid.crs})")
    ax.set_ylabel("y")
    fig.tight_layout()
    return fig


def stretch(rgb: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Percentile stretch of an (..., 3) array to 0-1 per channel, NaN kept as NaN."""
    out = np.empty_like(rgb, dtype="float32")
    for i in range(rgb.shape[-1]):
        band = rgb[..., i]
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            out[..., i] = np.nan
            continue
        lo, hi = np.percentile(finite, [low, high])
        out[..., i] = np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)
    return out
