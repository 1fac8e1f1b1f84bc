"""Rendering of one acquisition: 12 bands, SCL, cloud probability and the cloud/shadow truth.

The clean surface of a scene is computed at 10 m, clouds, haze and shadows are applied at 10 m,
then every band is block-averaged to its native resolution and gets the scene's atmospheric
residual and sensor noise. :func:`clean_band_dn` repeats exactly the same arithmetic without the
atmosphere's clouds, so clear pixels of a harmonized scene equal it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lcgee.demo._cog import write_cog
from lcgee.demo._common import BOA_ADD_OFFSET, PROBABILITY_NODATA, S2_BANDS
from lcgee.demo._landscape import Landscape
from lcgee.demo._noise import block_all, block_mean
from lcgee.demo._scl import scene_classification, truth_sets_20m
from lcgee.demo._sky import Sky, cloud_probability, render_sky, scene_rng, valid_mask
from lcgee.demo._spectra import (
    BANDS,
    CLOUD_SPECTRUM,
    HAZE_SPECTRUM,
    SHADOW_EXPONENT,
    band_reflectance,
    surface_weights,
    terrain_gain,
)
from lcgee.grid import Grid

__all__ = ["WorldContext", "clean_band_dn", "context", "native_grid", "render_scene"]

_RNG_SKY, _RNG_SCL, _RNG_PROB, _RNG_BAND = 1, 3, 4, 100
_NOISE_SIGMA = {10: 0.004, 20: 0.003, 60: 0.002}
_OFFSET_WEIGHT = np.array([1.5, 1.2, 1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3], np.float32)
_MAX_DN = 65535 - BOA_ADD_OFFSET


@dataclass(frozen=True)
class WorldContext:
    """What rendering needs that does not change between scenes."""

    seed: int
    grid: Grid
    land: Landscape
    landcover: np.ndarray
    #: the surface of the last scene asked by :func:`clean_band_dn` (one entry at most)
    last_surface: dict = field(default_factory=dict, compare=False, repr=False)


_CONTEXTS: dict[str, WorldContext] = {}


def context(static_dir: str, seed: int, grid: Grid) -> WorldContext:
    """The (per-process cached) context whose landscape is stored in ``static_dir``."""
    key = f"{static_dir}|{seed}|{grid.shape}"
    if key not in _CONTEXTS:
        land = Landscape.load(Path(static_dir))
        _CONTEXTS.clear()
        _CONTEXTS[key] = WorldContext(seed, grid, land, land.landcover)
    return _CONTEXTS[key]


def native_grid(grid: Grid, band: str) -> Grid:
    """The grid of a band (or ``"SCL"``) at its native resolution."""
    res = 20 if band == "SCL" else S2_BANDS[band]
    return grid.coarsen(res // int(grid.resolution))


def _surface(ctx: WorldContext, scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """Endmember weights and gain of a scene's clean surface (``(N, 8)`` and ``(N,)``)."""
    land = ctx.land
    weights = surface_weights(land.subclass, land.phase, land.vigor, land.turbidity, scene["doy"])
    gain = terrain_gain(land.elevation, land.brightness, ctx.grid.resolution,
                        scene["sun_azimuth"], scene["sun_zenith"])
    return weights, gain


def _cached_surface(ctx: WorldContext, scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_surface` of the last scene asked (reading several bands of one scene is cheap)."""
    key = (scene["index"], scene["doy"], scene["sun_azimuth"], scene["sun_zenith"])
    if key not in ctx.last_surface:
        ctx.last_surface.clear()
        ctx.last_surface[key] = _surface(ctx, scene)
    return ctx.last_surface[key]


def _to_dn(refl: np.ndarray, ctx: WorldContext, scene: dict, b: int, valid: np.ndarray,
           offset: int) -> np.ndarray:
    """Atmospheric residual + sensor noise, then DN = round(reflectance * 10000) (+ offset)."""
    res = S2_BANDS[BANDS[b]]
    rng = scene_rng(ctx.seed, scene["index"], _RNG_BAND + b)
    atm = rng.standard_normal(2).astype(np.float32)
    noise = rng.standard_normal(refl.shape, dtype=np.float32) * np.float32(_NOISE_SIGMA[res])
    value = refl * (np.float32(1.0) + np.float32(0.015) * atm[0])
    value += np.float32(0.003) * atm[1] * _OFFSET_WEIGHT[b] + noise
    dn = np.clip(np.rint(value * np.float32(10000.0)), 1, _MAX_DN).astype(np.uint16)
    if offset:
        dn += np.uint16(offset)
    dn[~valid] = 0
    return dn


def clean_band_dn(ctx: WorldContext, scene: dict, band: str) -> np.ndarray:
    """Harmonized DN of ``band`` at native resolution without clouds, haze or shadows."""
    b = BANDS.index(band)
    f = S2_BANDS[band] // int(ctx.grid.resolution)
    weights, gain = _cached_surface(ctx, scene)
    clean = band_reflectance(weights, gain, b, ctx.grid.shape)
    valid = block_all(valid_mask(scene["nodata"], ctx.grid.height), f)
    return _to_dn(block_mean(clean, f), ctx, scene, b, valid, 0)


class _Atmosphere:
    """The contaminated pixels of a scene and their per-pixel cloud, haze and shadow terms."""

    def __init__(self, sky: Sky, shadow_k: float) -> None:
        self.idx = np.flatnonzero((sky.alpha_cloud > 0) | (sky.alpha_haze > 0) | (sky.shadow > 0))
        self.cloud = sky.alpha_cloud.ravel()[self.idx]
        self.haze = sky.alpha_haze.ravel()[self.idx]
        self.shadow = sky.shadow.ravel()[self.idx]
        self.gain = sky.cloud_gain.ravel()[self.idx]
        self.k = np.float32(shadow_k)

    def apply(self, clean: np.ndarray, b: int) -> np.ndarray:
        out = clean.copy()
        flat = out.ravel()
        x = flat[self.idx]
        kb = self.k ** SHADOW_EXPONENT[b]
        x *= 1.0 - self.shadow * (1.0 - kb)
        x = x * (1.0 - self.haze) + self.haze * HAZE_SPECTRUM[b]
        x = x * (1.0 - self.cloud) + self.cloud * CLOUD_SPECTRUM[b] * self.gain
        flat[self.idx] = x
        return out


def _percentages(scl: np.ndarray) -> dict[str, float]:
    total = scl.size
    valid = int((scl > 0).sum())
    counts = np.bincount(scl.ravel(), minlength=12)

    def pct(*codes: int) -> float:
        return round(100.0 * float(sum(counts[c] for c in codes)) / max(valid, 1), 6)

    return {
        "nodata": round(100.0 * (total - valid) / total, 6), "saturated": pct(1), "dark": pct(2),
        "shadow": pct(3), "vegetation": pct(4), "not_vegetated": pct(5), "water": pct(6),
        "unclassified": pct(7), "medium": pct(8), "high": pct(9), "cirrus": pct(10),
        "snow": pct(11), "cloud_cover": pct(8, 9, 10),
    }


def render_scene(static_dir: str, out_dir: str, seed: int, grid_dict: dict, scene: dict) -> dict:
    """Render and write one acquisition; returns statistics for its STAC item and world.json."""
    ctx = context(static_dir, seed, Grid.from_dict(grid_dict))
    out = Path(out_dir)
    grid, shape = ctx.grid, ctx.grid.shape
    sky = render_sky(scene_rng(seed, scene["index"], _RNG_SKY), shape, scene, grid.resolution)
    atmos = _Atmosphere(sky, scene["shadow_k"])
    valid10 = valid_mask(scene["nodata"], grid.height)
    valid = {f: block_all(valid10, f) for f in (1, 2, 6)}
    weights, gain = _surface(ctx, scene)
    obs20: dict[str, np.ndarray] = {}
    folder = out / "cogs" / scene["item_id"]
    for b, band in enumerate(BANDS):
        f = S2_BANDS[band] // int(grid.resolution)
        observed = atmos.apply(band_reflectance(weights, gain, b, shape), b)
        native = block_mean(observed, f)
        if band in ("B02", "B03", "B04", "B8A"):
            obs20[band] = native if f == 2 else block_mean(observed, 2)
        dn = _to_dn(native, ctx, scene, b, valid[f], scene["offset"])
        write_cog(folder / f"{band}.tif", dn, native_grid(grid, band), nodata=0)
    del weights, gain
    valid20 = valid[2]
    code, shadow = sky.truth_code, sky.truth_shadow
    sets = truth_sets_20m(code, shadow, ctx.landcover, valid20)
    scl, counts = scene_classification(
        scene_rng(seed, scene["index"], _RNG_SCL), obs20, sets,
        block_mean(sky.alpha_cloud, 2), block_mean(sky.alpha_haze, 2), valid20)
    write_cog(folder / "SCL.tif", scl, native_grid(grid, "SCL"), nodata=0, resampling="NEAREST")
    prob = cloud_probability(scene_rng(seed, scene["index"], _RNG_PROB), sky, ctx.landcover,
                             valid10, scene)
    write_cog(out / "cogs" / scene["system_index"] / "probability.tif", prob, grid,
              nodata=PROBABILITY_NODATA)
    truth = np.stack([code, shadow.astype(np.uint8), sky.height_hm])
    write_cog(out / "truth" / "clouds" / f"{scene['item_id']}.tif", truth, grid, nodata=None,
              resampling="NEAREST", descriptions=("cloud", "shadow", "cloud_height_hm"))
    n_valid = max(int(valid10.sum()), 1)
    return {
        "index": scene["index"],
        "scl_percentages": _percentages(scl),
        "scl_counts": counts,
        "truth_cloud_fraction": round(float(((code == 2) & valid10).sum()) / n_valid, 6),
        "truth_haze_fraction": round(float(((code == 1) & valid10).sum()) / n_valid, 6),
        "truth_shadow_fraction": round(float((shadow & valid10).sum()) / n_valid, 6),
        "nodata_fraction": round(1.0 - float(valid10.mean()), 6),
    }
