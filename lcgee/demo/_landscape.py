"""The demo world's land: elevation, land-cover truth (sub-classes) and static surface textures.

Large structures (coast, hills, rivers, the city) are laid out in coordinates normalised to the
grid size, so every world size shows the same geography; fine structures (fields, river width,
roads, ponds) are in pixels. North is up: Hakata Bay fills the north, hills rise to the south,
west and east, three rivers run north to the sea, the city sits on the coast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lcgee.demo._noise import (
    fractal_1d,
    fractal_noise,
    rasterize_polyline,
    smooth_noise,
    smoothstep,
    to_uniform,
)

__all__ = ["STATIC_NAMES", "Landscape", "build_landscape"]

STATIC_NAMES = ("elevation", "subclass", "brightness", "vigor", "turbidity", "phase")

# rivers: mouth x, source (y, x), half-width (px) at mouth and source, valley width, depth
_RIVERS: dict[str, dict] = {
    "main": {"x_mouth": 0.33, "source": (1.02, 0.56), "hw": (3.6, 1.2), "valley": 0.11,
             "depth": 0.97},
    "trib": {"join_y": 0.80, "source": (1.02, 0.76), "hw": (1.6, 0.7), "valley": 0.06,
             "depth": 0.9},
    "west": {"x_mouth": 0.15, "source": (0.70, 0.09), "hw": (2.4, 0.8), "valley": 0.045,
             "depth": 0.85},
    "east": {"x_mouth": 0.79, "source": (0.72, 0.93), "hw": (2.6, 0.8), "valley": 0.05,
             "depth": 0.88},
}


@dataclass(frozen=True)
class Landscape:
    """Static per-pixel layers of the world (10 m grid).

    Attributes:
        elevation: metres above sea level (float32).
        subclass: truth sub-class codes (see ``SUBCLASSES``; uint8).
        brightness: per-pixel reflectance multiplier, stable over time (float32).
        vigor: per-pixel multiplier of the green-vegetation fraction (float32).
        turbidity: share of turbid water in the water fraction, 0-1 (float32).
        phase: per-pixel phenology shift in days (int16), per field for crops.
    """

    elevation: np.ndarray
    subclass: np.ndarray
    brightness: np.ndarray
    vigor: np.ndarray
    turbidity: np.ndarray
    phase: np.ndarray

    @property
    def landcover(self) -> np.ndarray:
        """WorldCover class codes of the truth (uint8)."""
        return (self.subclass // 10 * 10).astype(np.uint8)

    def save(self, folder: Path) -> None:
        """Write every layer as ``<name>.npy`` (plain .npy files are byte-reproducible)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in STATIC_NAMES:
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> Landscape:
        """Read the layers written by :meth:`save`."""
        return cls(**{n: np.load(folder / f"{n}.npy", allow_pickle=False) for n in STATIC_NAMES})


# ---- geography -------------------------------------------------------------------------------
def _coastline(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normalised row of the shore for every column."""
    x = (np.arange(n) + 0.5) / n
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    return (0.165 + 0.03 * np.sin(2 * np.pi * 1.1 * x + p1) + 0.014 * np.sin(2 * np.pi * 2.9 * x + p2)
            + 0.01 * fractal_1d(rng, n, 2.6))


def _river_path(rng: np.random.Generator, size: int, start: tuple[float, float],
                end: tuple[float, float], hw: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Meandering polyline (rows, cols, half-widths) in pixels from mouth ``start`` to source."""
    n = int(np.hypot(end[0] - start[0], end[1] - start[1]) * size * 3) + 8
    t = np.linspace(0.0, 1.0, n)
    phase = rng.uniform(0, 2 * np.pi)
    wiggle = 0.016 * np.sin(2 * np.pi * 3.2 * t + phase) + 0.01 * fractal_1d(rng, n, 2.2)
    wiggle *= np.sin(np.pi * t)
    y = start[0] + (end[0] - start[0]) * t
    x = start[1] + (end[1] - start[1]) * t + wiggle
    half = hw[0] + (hw[1] - hw[0]) * t
    return y * size, x * size, half


def _rivers(rng: np.random.Generator, size: int, coast: np.ndarray) -> dict[str, dict]:
    """Distance fields of the rivers: ``{name: {"dist", "hw", "spec", "mouth"}}``."""
    out: dict[str, dict] = {}
    for name, spec in _RIVERS.items():
        if "join_y" in spec:  # a tributary: its mouth is a point of the main river
            rows, cols = out["main"]["path"]
            k = int(np.argmin(np.abs(rows - spec["join_y"] * size)))
            start = (rows[k] / size, cols[k] / size)
        else:
            col = min(size - 1, int(spec["x_mouth"] * size))
            start = (float(coast[col]) - 0.012, spec["x_mouth"])
        rows, cols, half = _river_path(rng, size, start, spec["source"], spec["hw"])
        dist, hw = rasterize_polyline((size, size), rows, cols, half)
        out[name] = {"dist": dist, "hw": hw, "spec": spec, "mouth": (start[0] + 0.012, start[1]),
                     "path": (rows, cols)}
    return out


def _elevation(rng: np.random.Generator, size: int, d_in: np.ndarray, xx: np.ndarray,
               rivers: dict[str, dict]) -> np.ndarray:
    """Fractal hills rising inland and to the west/east edges, carved by river valleys."""
    hills = np.clip(1.0 * d_in - 0.16, 0, None) + 0.6 * smoothstep(0.28, 0.48, np.abs(xx - 0.5))
    n = fractal_noise(rng, (size, size), 2.5)
    elev = 430.0 * np.clip(hills + 0.15 * n - 0.04, 0, None) ** 1.3
    for river in rivers.values():
        width = river["spec"]["valley"] * size
        elev *= 1.0 - river["spec"]["depth"] * np.exp(-((river["dist"] / width) ** 2))
    elev += 2.0 + 4.0 * to_uniform(smooth_noise(rng, (size, size), 25.0))
    return elev.astype(np.float32)


def _blob(shape: tuple[int, int], centre: tuple[float, float], radius: float,
          wobble: np.ndarray) -> np.ndarray:
    """Irregular disc: pixels with ``distance / radius + wobble < 1`` (wobble >= -1.5 assumed)."""
    out = np.zeros(shape, bool)
    reach = 2.5 * radius + 1
    r0, r1 = max(0, int(centre[0] - reach)), min(shape[0], int(centre[0] + reach) + 1)
    c0, c1 = max(0, int(centre[1] - reach)), min(shape[1], int(centre[1] + reach) + 1)
    if r0 >= r1 or c0 >= c1:
        return out
    yy, xx = np.ogrid[r0:r1, c0:c1]
    r = np.hypot(yy + 0.5 - centre[0], xx + 0.5 - centre[1]) / radius
    out[r0:r1, c0:c1] = (r + np.maximum(wobble[r0:r1, c0:c1], -1.5)) < 1.0
    return out


def _parcels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Field ids: rows of 6-16 px, each cut into fields 8-26 px wide."""
    pid = np.empty((size, size), np.int32)
    row, offset = 0, 0
    while row < size:
        height = int(rng.integers(6, 17))
        widths = rng.integers(8, 27, size=size // 8 + 2)
        col_id = np.searchsorted(np.cumsum(widths), np.arange(size), side="right")
        pid[row: row + height] = offset + col_id
        offset += widths.size
        row += height
    return pid


@dataclass
class _Canvas:
    """Mutable working state while the land is painted."""

    rng: np.random.Generator
    size: int
    elev: np.ndarray
    sea: np.ndarray
    sub: np.ndarray
    yy: np.ndarray
    xx: np.ndarray
    d_in: np.ndarray

    def noise(self, scale: float) -> np.ndarray:
        return smooth_noise(self.rng, (self.size, self.size), scale)

    def px(self, normalised: float) -> float:
        return normalised * self.size


def _paint_base(cv: _Canvas) -> np.ndarray:
    """Forest on hills, fringe shrub/grass, clearings; returns the forest threshold."""
    land = ~cv.sea
    thr = 30.0 + 9.0 * cv.noise(30.0)
    forest = land & (cv.elev > thr)
    decid = cv.noise(40.0) + 0.004 * (cv.elev - 150.0) > 0.45
    cv.sub[forest] = 11
    cv.sub[forest & decid] = 12
    fringe = land & (np.abs(cv.elev - thr) < 7.0) & (cv.noise(6.0) > 0.25)
    cv.sub[fringe & (cv.elev > thr)] = 21
    cv.sub[fringe & (cv.elev <= thr)] = 31
    clearing = forest & (cv.noise(10.0) > 1.9)
    cv.sub[clearing] = np.where(cv.noise(4.0)[clearing] > 0.3, 31, 21)
    return thr


def _paint_fields(cv: _Canvas, thr: np.ndarray, pid: np.ndarray) -> None:
    """Paddies and dry fields on the plains, with abandoned fields as grass or shrub."""
    plain = ~cv.sea & (cv.sub == 0)
    n = int(pid.max()) + 1
    counts = np.maximum(np.bincount(pid.ravel(), minlength=n), 1)
    mean_rel = np.bincount(pid.ravel(), weights=(cv.elev - thr).ravel(), minlength=n) / counts
    p_paddy = np.clip(0.85 + 0.02 * mean_rel, 0.25, 0.9)
    draw = cv.rng.random(n)
    kind = np.where(draw < p_paddy, 41, 42).astype(np.uint8)
    fallow = cv.rng.random(n)
    kind[fallow < 0.05] = 31
    kind[(fallow >= 0.05) & (fallow < 0.08)] = 21
    cv.sub[plain] = kind[pid[plain]]


def _paint_urban(cv: _Canvas, rivers: dict[str, dict]) -> None:
    """The coastal city, a river town in the south and villages on the plains."""
    low = ~cv.sea & (cv.elev < 45.0)
    wob = 0.35 * cv.noise(18.0)
    city = np.exp(-((cv.xx - 0.54) ** 2) / (2 * 0.15 ** 2)
                  - ((cv.d_in - 0.05) ** 2) / (2 * 0.085 ** 2)) * (1 + wob)
    rows, cols = rivers["main"]["path"]
    k = int(np.argmin(np.abs(rows - 0.75 * cv.size)))
    tc = (rows[k] / cv.size, cols[k] / cv.size + 0.035)
    town = np.exp(-((cv.yy - tc[0]) ** 2 + (cv.xx - tc[1]) ** 2) / (2 * 0.035 ** 2)) * (1 + wob)
    urban = low & ((city > 0.45) | (town > 0.5))
    dense = low & ((city > 0.85) | (town > 1.05))
    cv.sub[urban] = 52
    cv.sub[dense] = 51
    _villages(cv, urban)
    green = urban & (cv.noise(8.0) > 1.25)
    cv.sub[green] = 32
    trees = urban & ~green & (cv.noise(3.0) > 1.6)
    cv.sub[trees] = 11
    lots = urban & ~green & ~trees & (cv.noise(6.0) > 2.0)
    cv.sub[lots] = 62


def _villages(cv: _Canvas, urban: np.ndarray) -> None:
    cand = np.flatnonzero((cv.sub == 41) | (cv.sub == 42))
    n = max(4, round(16 * (cv.size / 1536) ** 2))
    if cand.size == 0:
        return
    wob = 0.3 * cv.noise(5.0)
    for idx in cv.rng.choice(cand, size=n, replace=False):
        r, c = divmod(int(idx), cv.size)
        radius = float(cv.rng.uniform(9.0, 22.0))
        blob = _blob(cv.sub.shape, (r, c), radius, wob) & ~cv.sea & (cv.elev < 60.0)
        cv.sub[blob & ~urban] = 52


def _paint_features(cv: _Canvas) -> None:
    """Golf courses, quarries, a reservoir and irrigation ponds."""
    shape = cv.sub.shape
    wob = 0.3 * cv.noise(12.0)
    for centre in ((0.46, 0.86), (0.64, 0.37)):
        blob = _blob(shape, (cv.px(centre[0]), cv.px(centre[1])), cv.px(0.024), wob) & ~cv.sea
        cv.sub[blob] = np.where(cv.noise(5.0)[blob] > -0.4, 32, 11)
    for centre in ((0.30, 0.09), (0.93, 0.58), (0.36, 0.93), (0.72, 0.20)):
        blob = _blob(shape, (cv.px(centre[0]), cv.px(centre[1])), cv.px(0.011), wob) & ~cv.sea
        cv.sub[blob] = 62
    reservoir = _blob(shape, (cv.px(0.90), cv.px(0.38)), cv.px(0.024), 1.5 * wob) & ~cv.sea
    cv.sub[reservoir] = 83
    cand = np.flatnonzero(~cv.sea.ravel() & (cv.elev.ravel() > 8) & (cv.elev.ravel() < 70))
    n = max(3, round(30 * (cv.size / 1536) ** 2))
    for idx in cv.rng.choice(cand, size=min(n, cand.size), replace=False):
        r, c = divmod(int(idx), cv.size)
        pond = _blob(shape, (r, c), float(cv.rng.uniform(3.0, 8.0)), 0.5 * wob) & ~cv.sea
        cv.sub[pond & (cv.sub != 51)] = 83


def _paint_roads(cv: _Canvas, coast: np.ndarray, rivers: dict[str, dict]) -> None:
    """A coastal road, a road up the main valley and an east-west road in the south."""
    s = cv.size
    x = np.linspace(0, s - 1, 3 * s)
    lines = [((coast[x.astype(int)] + 0.035) * s, x)]
    rows, cols = rivers["main"]["path"]
    lines.append((rows, cols + 0.02 * s))
    lines.append((np.full(3 * s, 0.66 * s) + 0.02 * s * np.sin(x / s * 7.0), x))
    for r, c in lines:
        dist, _ = rasterize_polyline(cv.sub.shape, r, c, np.full(r.shape, 0.5))
        cv.sub[(dist <= 0.5) & ~cv.sea] = 53


def _paint_coast(cv: _Canvas, rivers: dict[str, dict]) -> None:
    """Beach sand, coastal pine belts and reed marsh at the river mouths."""
    d_sea = ndimage.distance_transform_edt(~cv.sea).astype(np.float32)
    land = ~cv.sea
    soft = (cv.sub != 51) & (cv.sub != 53)
    pine = land & soft & (d_sea > 3) & (d_sea <= 12) & (cv.elev < 30) & (cv.noise(15.0) > 0.2)
    cv.sub[pine] = 11
    beach = land & soft & (d_sea <= 4.2) & (cv.noise(20.0) > -0.6)
    cv.sub[beach] = 61
    wob = 0.3 * cv.noise(8.0)
    for name, radius in (("main", 0.045), ("east", 0.02)):
        my, mx = rivers[name]["mouth"]
        marsh = _blob(cv.sub.shape, (cv.px(my) + 4, cv.px(mx)), cv.px(radius), wob)
        cv.sub[marsh & land & (cv.elev < 20)] = 91


def _paint_water(cv: _Canvas, rivers: dict[str, dict]) -> None:
    """River banks, rivers and the sea (painted last, so water wins)."""
    for river in rivers.values():
        bank = (river["dist"] <= river["hw"] + 2.0) & (cv.elev < 40) & ~cv.sea
        cv.sub[bank & (cv.sub != 53)] = 31
    for river in rivers.values():
        cv.sub[(river["dist"] <= river["hw"]) & ~cv.sea] = 82
    cv.sub[cv.sea] = 81


def _island(cv: _Canvas) -> None:
    """A forested island in the bay (like Nokonoshima)."""
    wob = 0.25 * cv.noise(10.0)
    isl = _blob(cv.sub.shape, (cv.px(0.075), cv.px(0.26)), cv.px(0.028), wob) & cv.sea
    cv.sea[isl] = False
    yy, xx = np.ogrid[: cv.size, : cv.size]
    r = np.hypot(yy + 0.5 - cv.px(0.075), xx + 0.5 - cv.px(0.26)) / cv.px(0.028)
    cv.elev[isl] = np.maximum(cv.elev[isl], (140.0 * (1.0 - r))[isl] + 5.0)


def _statics(cv: _Canvas, pid: np.ndarray, rivers: dict[str, dict]) -> dict[str, np.ndarray]:
    """Brightness, vigour, turbidity and phenology phase layers."""
    rng, shape, sub = cv.rng, cv.sub.shape, cv.sub
    n = int(pid.max()) + 1
    crop = (sub == 41) | (sub == 42)
    urban = (sub == 51) | (sub == 52) | (sub == 53)
    bright = 1.0 + 0.035 * cv.noise(0.8) + 0.05 * cv.noise(12.0)
    bright = np.where(crop, bright * rng.uniform(0.88, 1.12, n)[pid], bright)
    bright = np.where(urban, bright * (1.0 + 0.15 * cv.noise(1.5)), bright)
    vigor = 1.0 + 0.08 * cv.noise(25.0) + 0.03 * cv.noise(1.0)
    vigor = np.where(crop, vigor * rng.uniform(0.85, 1.12, n)[pid], vigor)
    vigor = np.where(urban, np.clip(1.0 + 0.8 * cv.noise(2.5), 0.05, 2.5), vigor)
    phase = np.rint(4.0 * cv.noise(60.0))
    phase = np.where(crop, np.rint(rng.normal(0.0, 7.0, n))[pid], phase)
    my, mx = rivers["main"]["mouth"]
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    d_mouth = np.hypot(yy + 0.5 - cv.px(my), xx + 0.5 - cv.px(mx)) / cv.size
    turb = 0.06 + 0.6 * np.exp(-d_mouth / 0.05) + 0.08 * to_uniform(cv.noise(30.0))
    turb = np.where(sub == 82, 0.75, np.where(sub == 83, 0.35, turb))
    turb = np.where((sub == 41) | (sub == 91), 0.65, turb)
    return {
        "brightness": np.clip(bright, 0.6, 1.5).astype(np.float32),
        "vigor": vigor.astype(np.float32),
        "turbidity": np.clip(turb, 0.0, 1.0).astype(np.float32),
        "phase": phase.astype(np.int16),
    }


def build_landscape(seed: int, size: int) -> Landscape:
    """Generate the land of a world of ``size x size`` pixels from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    coast = _coastline(rng, size)
    yy = ((np.arange(size, dtype=np.float32) + 0.5) / size)[:, None]
    xx = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]
    d_in = (yy - coast[None, :]).astype(np.float32)
    rivers = _rivers(rng, size, coast)
    elev = _elevation(rng, size, d_in, xx, rivers)
    cv = _Canvas(rng, size, elev, d_in < 0, np.zeros((size, size), np.uint8), yy, xx, d_in)
    _island(cv)
    pid = _parcels(rng, size)
    thr = _paint_base(cv)
    _paint_fields(cv, thr, pid)
    _paint_urban(cv, rivers)
    _paint_features(cv)
    _paint_roads(cv, coast, rivers)
    _paint_coast(cv, rivers)
    _paint_water(cv, rivers)
    cv.elev[cv.sea] = 0.0
    statics = _statics(cv, pid, rivers)
    return Landscape(elevation=cv.elev, subclass=cv.sub, **statics)
