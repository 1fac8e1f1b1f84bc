"""Acquisitions, sun geometry, clouds, haze, cloud shadows and the s2cloudless-like probability."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from scipy import fft, ndimage

from lcgee.demo._common import BASELINE_CHANGE, PROBABILITY_NODATA
from lcgee.demo._noise import (
    block_mean,
    fractal_noise,
    smooth_noise,
    to_uniform,
    upsample_bilinear,
)

__all__ = [
    "Sky",
    "acquisition_plan",
    "cloud_probability",
    "render_sky",
    "scene_rng",
    "solar_position",
    "valid_mask",
]

_ANCHOR = date(2021, 6, 15)  # a Sentinel-2A pass over the tile (relative orbit 46)
_ORBIT_ANCHOR = {"A": 31234, "B": 22377}  # absolute orbits at the anchor / anchor + 5 days
_PROB_BLOCK = 16  # s2cloudless works at 160 m
_MIN_HEIGHT_HM, _MAX_HEIGHT_HM = 5, 25  # heights of shadow-casting (boundary-layer) clouds, 0.5-2.5 km


def scene_rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    """The random generator of one purpose of one acquisition."""
    return np.random.default_rng(np.random.SeedSequence([seed, 2, index, purpose]))


def solar_position(when: datetime, lat: float, lon: float) -> tuple[float, float]:
    """``(azimuth, zenith)`` in degrees (azimuth clockwise from north), NOAA's simple formulas."""
    doy = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365 * (doy - 1 + (hour - 12) / 24)
    eqt = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                    - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g)
            - 0.006758 * math.cos(2 * g) + 0.000907 * math.sin(2 * g)
            - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    ha = math.radians((hour * 60 + eqt + 4 * lon) / 4 - 180)
    la = math.radians(lat)
    zen = math.acos(math.sin(la) * math.sin(decl) + math.cos(la) * math.cos(decl) * math.cos(ha))
    az = math.degrees(math.atan2(math.sin(ha),
                                 math.cos(ha) * math.sin(la) - math.tan(decl) * math.cos(la)))
    return (az + 180.0) % 360.0, math.degrees(zen)


def _pick_steps(rng: np.random.Generator, n: int, start: date, end: date) -> list[int]:
    """``n`` distinct 5-day steps from the anchor, spread evenly over ``[start, end]``."""
    k0 = math.ceil((start - _ANCHOR).days / 5)
    k1 = math.floor((end - _ANCHOR).days / 5)
    if k1 - k0 + 1 < n:
        raise ValueError(f"only {k1 - k0 + 1} revisits between {start} and {end}, {n} asked")
    base = np.rint(np.linspace(k0, k1, n)).astype(int)
    steps: list[int] = []
    for i, k in enumerate(base):
        jitter = int(rng.integers(-1, 2)) if 0 < i < n - 1 else 0
        k = max(k + jitter, steps[-1] + 1 if steps else k0)
        steps.append(int(min(k, k1 - (n - 1 - i))))
    return steps


def _cover_targets(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    cover = np.clip(rng.beta(0.9, 1.7, n) * 0.78, 0.02, 0.72)
    clear = rng.choice(n, size=3, replace=False)
    cover[clear] = [0.0, 0.004, 0.012]
    haze = np.where(rng.random(n) < 0.35, 0.0, rng.uniform(0.05, 0.35, n))
    haze[clear] = [0.0, 0.0, 0.02]
    return cover, haze


def acquisition_plan(seed: int, n: int, start: date, end: date, centre: tuple[float, float],
                     size: int) -> list[dict]:
    """Dates, platforms, ids' timestamps, sun angles and cloud settings of every acquisition."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    steps = _pick_steps(rng, n, start, end)
    cover, haze = _cover_targets(rng, n)
    strips = set(rng.choice(np.flatnonzero(cover > 0.02), size=min(3, n), replace=False).tolist())
    plan = []
    for i, k in enumerate(steps):
        day = _ANCHOR + timedelta(days=5 * k)
        unit = "A" if k % 2 == 0 else "B"
        cycles = (k - (0 if unit == "A" else 1)) // 2
        take = datetime(day.year, day.month, day.day, 2, 4, 41, tzinfo=UTC)
        take += timedelta(seconds=int(rng.integers(0, 21)))
        strip_start = take + timedelta(seconds=int(rng.integers(300, 901)))
        generated = take + timedelta(days=1, seconds=int(rng.integers(6 * 3600, 16 * 3600)))
        az, zen = solar_position(take + timedelta(seconds=14), *centre)
        new = day >= BASELINE_CHANGE
        baseline = "04.00" if new else ("03.00" if day >= date(2021, 6, 30) else "02.14")
        plan.append({
            "index": i, "mission": f"S2{unit}", "platform": f"Sentinel-2{unit}",
            "abs_orbit": _ORBIT_ANCHOR[unit] + 143 * cycles,
            "datatake_start": take, "datastrip_start": strip_start, "generated": generated,
            "doy": day.timetuple().tm_yday, "baseline": baseline, "offset": 1000 if new else 0,
            "sun_azimuth": round(az, 6), "sun_zenith": round(zen, 6),
            "cloud_cover_target": round(float(cover[i]), 4), "haze_cover_target": round(float(haze[i]), 4),
            "shadow_k": round(float(rng.uniform(0.25, 0.42)), 4),
            "prob_false_positive": round(float(rng.uniform(0.15, 0.5)), 4),
            "nodata": _strip(rng, size) if i in strips else None,
        })
    return plan


def _strip(rng: np.random.Generator, size: int) -> dict:
    """A slanted swath-edge nodata strip on the west or east edge."""
    top, bottom = rng.uniform(0.03, 0.12, 2) * size
    return {"side": "west" if rng.random() < 0.5 else "east",
            "top_px": round(float(top), 2), "bottom_px": round(float(bottom), 2)}


def valid_mask(nodata: dict | None, size: int) -> np.ndarray:
    """True where the swath has data (10 m)."""
    if not nodata:
        return np.ones((size, size), bool)
    rows = (np.arange(size) + 0.5)[:, None] / size
    width = nodata["top_px"] + (nodata["bottom_px"] - nodata["top_px"]) * rows
    cols = (np.arange(size) + 0.5)[None, :]
    return cols >= width if nodata["side"] == "west" else cols < size - width


@dataclass(frozen=True)
class Sky:
    """The atmosphere of one acquisition on the 10 m grid.

    Attributes:
        alpha_cloud: opacity of thick clouds, 0 outside them.
        alpha_haze: opacity of thin haze (at most ~0.32), 0 outside it.
        height_hm: cloud-object height in hectometres where the cloud casts a shadow
            (opacity > 0.1), else 0.
        shadow: shadow strength 0-1 (0 = no shadow); only where the pixel is not under cloud
            is the shadow visible.
        cloud_gain: brightness texture of the cloud tops.
    """

    alpha_cloud: np.ndarray
    alpha_haze: np.ndarray
    height_hm: np.ndarray
    shadow: np.ndarray
    cloud_gain: np.ndarray

    @property
    def truth_code(self) -> np.ndarray:
        """0 clear, 1 thin haze only, 2 cloud."""
        code = np.where(self.alpha_haze > 0, 1, 0).astype(np.uint8)
        code[self.alpha_cloud > 0] = 2
        return code

    @property
    def truth_shadow(self) -> np.ndarray:
        return (self.shadow > 0) & (self.alpha_cloud == 0)


def _layer(rng: np.random.Generator, shape: tuple[int, int], cover: float, beta: float,
           soft: float, floor: float, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """Thresholded fractal noise covering about ``cover`` of ``window``, soft at the edges."""
    if cover <= 0:
        return np.zeros(shape, np.float32)
    field = fractal_noise(rng, shape, beta)
    thr = np.quantile(field[window] if window else field, 1.0 - cover)
    alpha = np.clip((field - thr) / soft, 0.0, 1.0) ** 0.6
    alpha[alpha < floor] = 0.0
    return alpha.astype(np.float32)


def _shift(a: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``a`` moved by ``dr`` rows and ``dc`` columns, zero-filled."""
    out = np.zeros_like(a)
    h, w = a.shape
    if abs(dr) >= h or abs(dc) >= w:
        return out
    out[max(dr, 0): h + min(dr, 0), max(dc, 0): w + min(dc, 0)] = \
        a[max(-dr, 0): h - max(dr, 0), max(-dc, 0): w - max(dc, 0)]
    return out


def shadow_offset(height_m: float, sun_azimuth: float, sun_zenith: float,
                  res: float) -> tuple[int, int]:
    """``(rows, cols)`` from a cloud to its shadow: height * tan(zenith) towards azimuth + 180."""
    dist = height_m * math.tan(math.radians(sun_zenith))
    toward = math.radians(sun_azimuth + 180.0)
    east, north = dist * math.sin(toward), dist * math.cos(toward)
    return round(-north / res), round(east / res)


def render_sky(rng: np.random.Generator, shape: tuple[int, int], scene: dict, res: float) -> Sky:
    """Clouds (objects 1-4 km high), haze and the shadows the clouds cast for one acquisition.

    Clouds are generated on a domain padded on the sun's side, so clouds just outside the grid
    still cast their shadows into it.
    """
    dr, dc = shadow_offset(_MAX_HEIGHT_HM * 100.0, scene["sun_azimuth"], scene["sun_zenith"], res)
    top, left = max(dr, 0), max(dc, 0)
    big = (fft.next_fast_len(shape[0] + abs(dr)), fft.next_fast_len(shape[1] + abs(dc)))
    window = (slice(top, top + shape[0]), slice(left, left + shape[1]))
    beta = float(rng.uniform(2.9, 3.6))
    alpha_big = _layer(rng, big, scene["cloud_cover_target"], beta, 0.5, 0.02, window)
    alpha_h = 0.32 * _layer(rng, shape, scene["haze_cover_target"], 3.0, 0.8, 0.03)
    labels, n = ndimage.label(alpha_big > 0, structure=np.ones((3, 3), bool))
    heights = rng.integers(_MIN_HEIGHT_HM, _MAX_HEIGHT_HM + 1, size=n + 1).astype(np.uint8)
    heights[0] = 0
    height_big = np.where(alpha_big > 0.1, heights[labels], 0).astype(np.uint8)
    shadow = np.zeros(big, np.float32)
    for h in np.unique(height_big[height_big > 0]):
        dr, dc = shadow_offset(100.0 * h, scene["sun_azimuth"], scene["sun_zenith"], res)
        np.maximum(shadow, _shift(np.where(height_big == h, alpha_big, 0.0), dr, dc), out=shadow)
    shadow = shadow[window]
    shadow = np.where(shadow > 0.1, np.clip(shadow / 0.5, 0.0, 1.0), 0.0).astype(np.float32)
    gain = (0.8 + 0.25 * to_uniform(smooth_noise(rng, shape, 6.0))).astype(np.float32)
    return Sky(np.ascontiguousarray(alpha_big[window]), alpha_h.astype(np.float32),
               np.ascontiguousarray(height_big[window]), shadow, gain)


def cloud_probability(rng: np.random.Generator, sky: Sky, landcover: np.ndarray,
                      valid: np.ndarray, scene: dict) -> np.ndarray:
    """An s2cloudless-like probability (uint8 0-100, 255 = nodata), made at 160 m, upsampled."""
    f = _PROB_BLOCK
    pc = np.clip(1.25 * np.sqrt(block_mean(sky.alpha_cloud, f)), 0.0, 1.0) * 0.97
    ph = np.clip(block_mean(sky.alpha_haze, f) / 0.25, 0.0, 1.0) * 0.55
    bright = block_mean(np.isin(landcover, (50, 60)), f)
    pf = bright * scene["prob_false_positive"]
    pb = 0.03 + 0.07 * to_uniform(smooth_noise(rng, pc.shape, 1.5))
    p = 1.0 - (1.0 - pc) * (1.0 - ph) * (1.0 - pf) * (1.0 - pb)
    p10 = upsample_bilinear(p, f) + rng.normal(0.0, 0.015, valid.shape).astype(np.float32)
    prob = np.clip(np.rint(p10 * 100.0), 0, 100).astype(np.uint8)
    prob[~valid] = PROBABILITY_NODATA
    return prob
