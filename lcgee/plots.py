"""Figures the notebooks show: class maps, region layouts, true colour, masks.

matplotlib is imported lazily so the library imports fast; every function returns the figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lcgee.errors import DataError
from lcgee.grid import Grid
from lcgee.labels import WORLDCOVER

if TYPE_CHECKING:  # annotations only: matplotlib, pandas and xarray load when a figure is drawn
    import pandas as pd
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["class_map", "regions_figure", "stretch", "footprints_figure", "image_panel",
           "mask_rgba", "true_colour", "MASK_COLOURS", "acquisitions_figure",
           "composite_figure", "monthly_panel", "difference_figure", "map_pair",
           "masks_by_source_figure", "label_panels", "training_curves", "rgb_bands", "feature_rgb"]

_ROLE_COLOURS = {"train": "#ffffff", "predict": "#00ffff"}


def _class_cmap(codes: np.ndarray) -> tuple[Any, Any, list[int]]:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    present = sorted(int(c) for c in np.unique(codes) if int(c) in WORLDCOVER)
    present = present or [10]
    colours = [WORLDCOVER[c][1] for c in present]
    bounds = [present[0] - 0.5] + [(a + b) / 2 for a, b in itertools.pairwise(present)] + [
        present[-1] + 0.5]
    return ListedColormap(colours), BoundaryNorm(bounds, len(colours)), present


def class_map(ax: Axes, codes: np.ndarray, grid: Grid | None = None, *, legend: bool = True,
              title: str | None = None) -> AxesImage:
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
                   background: np.ndarray | None = None) -> Figure:
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
        x0, y0, x1, y1 = g.bounds
        colour = _ROLE_COLOURS.get(roles.get(name, ""), "#ffff00")
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2.5, ec=colour))
        ax.text(x0 + 100, y1 - 150, f"{name}\n({roles.get(name, '?')})", color=colour, va="top",
                fontsize=9, weight="bold")
    ax.set_xlabel(f"x ({grid.crs})")
    ax.set_ylabel("y")
    fig.tight_layout()
    return fig


def stretch(rgb: np.ndarray, low: float = 2, high: float = 98,
            reference: np.ndarray | None = None) -> np.ndarray:
    """Percentile stretch of an (..., 3) array to 0-1 per channel, NaN kept as NaN.

    The percentiles come from ``reference`` (e.g. the clearest scene) when given, so that
    bright clouds elsewhere do not darken everything.
    """
    out = np.empty_like(rgb, dtype="float32")
    ref = rgb if reference is None else reference
    for i in range(rgb.shape[-1]):
        band = rgb[..., i]
        finite = ref[..., i][np.isfinite(ref[..., i])]
        if finite.size == 0:
            out[..., i] = np.nan
            continue
        lo, hi = np.percentile(finite, [low, high])
        out[..., i] = np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)
    return out


def footprints_figure(footprints: list[tuple[str, Any]], aoi_bbox: tuple[float, ...],
                      title: str = "Scene footprints") -> Figure:
    """Scene footprints (lon/lat) over the AOI's bounding box."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(6.5, 6))
    for _, geom in footprints:
        polys = getattr(geom, "geoms", [geom])
        for poly in polys:
            x, y = poly.exterior.xy
            ax.fill(x, y, alpha=0.08, color="tab:blue")
            ax.plot(x, y, lw=0.8, color="tab:blue")
    w, s, e, n = aoi_bbox
    ax.add_patch(Rectangle((w, s), e - w, n - s, fill=False, lw=2, ec="red", label="AOI"))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"{title} ({len(footprints)} scenes)")
    ax.legend(loc="lower right")
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig


def image_panel(images: list[np.ndarray], titles: list[str], *, ncols: int = 6,
                size: float = 2.4, suptitle: str | None = None,
                overlays: list[np.ndarray] | None = None) -> Figure:
    """A grid of RGB images (already 0-1), optionally with mask overlays (codes 1, 2)."""
    import matplotlib.pyplot as plt

    n = max(1, len(images))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, min(ncols, n), figsize=(size * min(ncols, n), size * nrows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (img, title) in enumerate(zip(images, titles)):
        ax = axes.ravel()[i]
        ax.imshow(np.nan_to_num(img, nan=0.0), interpolation="nearest")
        if overlays is not None:
            ax.imshow(mask_rgba(overlays[i]), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


#: Overlay colours of mask codes: cloud, shadow, nodata.
MASK_COLOURS = {1: (1.0, 0.9, 0.0, 0.55), 2: (0.9, 0.0, 0.9, 0.6), 255: (0.3, 0.3, 0.3, 0.6)}


def mask_rgba(mask: np.ndarray) -> np.ndarray:
    """An RGBA overlay of a cloud mask: clouds yellow, shadows magenta, nodata grey."""
    out = np.zeros(mask.shape + (4,), dtype="float32")
    for code, colour in MASK_COLOURS.items():
        out[mask == code] = colour
    return out


def true_colour(stack: xr.DataArray, reference: int | None = None) -> np.ndarray:
    """``(..., band, y, x)`` reflectance with B04, B03, B02 -> a 2-98 % stretched RGB array.

    With a ``(time, band, y, x)`` stack, ``reference`` picks the time step whose percentiles
    stretch all of them (use the clearest scene).
    """
    rgb = np.moveaxis(np.asarray(stack.sel(band=["B04", "B03", "B02"]).values), -3, -1)
    return stretch(rgb, reference=None if reference is None else rgb[reference])


def acquisitions_figure(table: pd.DataFrame) -> Figure:
    """Scene cloud cover over time, coloured by processing baseline."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    for offset, colour, label in ((False, "tab:blue", "baseline < 04.00"),
                                  (True, "tab:orange", "baseline >= 04.00 (+1000 DN)")):
        sel = table[table["offset"] == offset]
        ax.bar(sel["datetime"], sel["cloud_cover"], width=3, color=colour, label=label)
    ax.set_ylabel("eo:cloud_cover (%)")
    ax.set_title("Acquisitions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rgb_bands(names: Iterable[object]) -> list[str]:
    """The true-colour bands of a feature stack: ``B04, B03, B02``, or for a ``monthly`` stack
    (``<period>_B04`` ...) those of its middle period that has all three."""
    names = [str(n) for n in names]
    if all(b in names for b in ("B04", "B03", "B02")):
        return ["B04", "B03", "B02"]
    prefixes = [n.removesuffix("B04") for n in names if n.endswith("_B04")]
    prefixes = [p for p in prefixes if f"{p}B03" in names and f"{p}B02" in names]
    if not prefixes:
        raise DataError(f"no true-colour bands (B04, B03, B02) among {names[:6]}...",
                        where="feature stack", fix="include B02, B03 and B04 in features.bands")
    prefix = prefixes[len(prefixes) // 2]
    return [f"{prefix}B04", f"{prefix}B03", f"{prefix}B02"]


def feature_rgb(features: xr.DataArray) -> np.ndarray:
    """The stretched true colour ``(y, x, 3)`` of a ``(band, y, x)`` feature stack
    (:func:`rgb_bands`: one period's for a ``monthly`` stack)."""
    bands = rgb_bands(features["band"].values)
    return stretch(np.moveaxis(features.sel(band=bands).values, 0, -1))


def composite_figure(features: xr.DataArray, count: xr.DataArray, title: str = "Composite") -> Figure:
    """True colour, valid-observation count and NDVI (if present) side by side; for a
    ``monthly`` stack, of one period (:func:`rgb_bands`)."""
    import matplotlib.pyplot as plt

    names = [str(b) for b in features["band"].values]
    bands = rgb_bands(names)
    prefix = bands[0].removesuffix("B04")
    ndvi = f"{prefix}NDVI"
    panels = 3 if ndvi in names else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.6))
    rgb = feature_rgb(features)
    axes[0].imshow(np.nan_to_num(rgb, nan=0.0))
    axes[0].set_title(f"{title}: true colour" + (f" ({prefix.rstrip('_')})" if prefix else ""))
    im = axes[1].imshow(count.values, cmap="viridis")
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="valid observations")
    axes[1].set_title("count")
    if panels == 3:
        im = axes[2].imshow(features.sel(band=ndvi).values, cmap="RdYlGn", vmin=-0.5, vmax=1)
        fig.colorbar(im, ax=axes[2], shrink=0.8)
        axes[2].set_title(ndvi)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def monthly_panel(monthly: xr.DataArray) -> Figure:
    """One true-colour image per month of a ``(month, band, y, x)`` composite."""
    rgb = stretch(np.moveaxis(monthly.sel(band=["B04", "B03", "B02"]).values, 1, -1))
    titles = [f"{np.datetime_as_string(m, unit='M')}" for m in monthly["month"].values]
    return image_panel(list(rgb), titles, suptitle="Monthly medians (true colour)")


def difference_figure(pred: np.ndarray, ref: np.ndarray, grid: Grid | None = None, *,
                      note: str = "", ref_name: str = "labels") -> Figure:
    """Prediction, reference and where they differ, side by side."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    class_map(axes[0], pred, grid, legend=False, title="prediction")
    class_map(axes[1], ref, grid, legend=True, title=ref_name)
    valid = (pred > 0) & (ref > 0)
    diff = np.where(~valid, 0, np.where(pred == ref, 1, 2))
    axes[2].imshow(diff, cmap=ListedColormap(["#bbbbbb", "#2ca25f", "#de2d26"]), vmin=0, vmax=2,
                   interpolation="nearest")
    agree = float((pred == ref)[valid].mean()) if valid.any() else float("nan")
    axes[2].set_title(f"agreement {agree:.1%} (green agree, red differ)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if note:
        fig.suptitle(f"Numbers from the {note}", fontsize=10)
    fig.tight_layout()
    return fig


def map_pair(left: np.ndarray, right: np.ndarray | None, grid: Grid | None = None, *,
             titles: tuple[str, str] = ("", "")) -> Figure | None:
    """Two class maps side by side (legend on the right one); None when ``right`` is None
    (nothing to compare, no figure)."""
    if right is None:
        return None
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    class_map(axes[0], left, grid, legend=False, title=titles[0])
    class_map(axes[1], right, grid, title=titles[1])
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def masks_by_source_figure(rgb: Mapping[str, np.ndarray], dates: Mapping[str, str],
                           by_source: Mapping[str, Mapping[str, np.ndarray]],
                           names: Mapping[str, str], *, size: float = 3.5,
                           suptitle: str = "cloud masks by source") -> Figure:
    """One row per scene, one column per source: the scene's true colour under each source's
    mask. ``rgb`` and ``dates`` are keyed by item id (in row order), ``by_source`` is
    ``{source: {item id: mask}}`` (:func:`lcgee.masks.masks_by_source`)."""
    panels = [(rgb[i], by_id[i], f"{dates[i]} · {names.get(source, source)}")
              for i in rgb for source, by_id in by_source.items()]
    return image_panel([p[0] for p in panels], [p[2] for p in panels],
                       ncols=max(1, len(by_source)), size=size,
                       overlays=[p[1] for p in panels], suptitle=suptitle)


def label_panels(panels: Mapping[str, np.ndarray | None], region: str) -> Figure:
    """Binary label maps (1, 0, 255 = no label) side by side in blue; None panels are left
    out (e.g. a truth layer that only the demo world has)."""
    import matplotlib.pyplot as plt

    shown = {title: img for title, img in panels.items() if img is not None}
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 6), squeeze=False)
    for ax, (title, img) in zip(axes[0], shown.items(), strict=True):
        ax.imshow(np.where(img == 255, np.nan, img), cmap="Blues", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(f"{title} ({region})")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def training_curves(histories: Mapping[str, Any], *, ylabel: str = "cross-entropy") -> Figure:
    """Training and validation loss per epoch of each named run (``history`` records with
    ``epoch``, ``train_loss``, ``val_loss``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, history in histories.items():
        epoch = [h["epoch"] for h in history]
        ax.plot(epoch, [h["train_loss"] for h in history], label=f"{kind}: train")
        ax.plot(epoch, [h["val_loss"] for h in history], "--", label=f"{kind}: validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("training curve")
    ax.legend()
    return fig
