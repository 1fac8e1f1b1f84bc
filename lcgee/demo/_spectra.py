"""Surface reflectance of the demo world: endmember spectra, phenology and terrain illumination.

Every pixel is a linear mix of eight endmembers (green vegetation, dry vegetation, soil, clear
water, turbid water, impervious surface, sand, rock; the remainder is shade). The mix depends on
the pixel's sub-class and the day of year (a per-sub-class phenology table), shifted per field
by a phase and scaled by static textures, so the texture of a pixel is stable over time.
"""

from __future__ import annotations

import math

import numpy as np

from lcgee.demo._common import S2_BANDS, SUBCLASSES

__all__ = [
    "BANDS",
    "CLOUD_SPECTRUM",
    "ENDMEMBERS",
    "HAZE_SPECTRUM",
    "SHADOW_EXPONENT",
    "band_reflectance",
    "phenology_table",
    "surface_weights",
    "terrain_gain",
]

BANDS = tuple(S2_BANDS)

#                      B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B11    B12
ENDMEMBERS = np.array([
    [0.025, 0.035, 0.070, 0.035, 0.110, 0.300, 0.380, 0.420, 0.440, 0.430, 0.220, 0.110],  # green veg
    [0.060, 0.075, 0.105, 0.140, 0.180, 0.220, 0.250, 0.280, 0.290, 0.290, 0.380, 0.300],  # dry veg
    [0.060, 0.075, 0.100, 0.135, 0.160, 0.185, 0.200, 0.215, 0.225, 0.230, 0.300, 0.250],  # soil
    [0.050, 0.045, 0.045, 0.025, 0.018, 0.010, 0.008, 0.007, 0.006, 0.005, 0.003, 0.002],  # water
    [0.070, 0.075, 0.095, 0.080, 0.060, 0.035, 0.030, 0.028, 0.024, 0.020, 0.008, 0.005],  # turbid
    [0.110, 0.120, 0.135, 0.150, 0.165, 0.180, 0.190, 0.200, 0.205, 0.205, 0.230, 0.210],  # urban
    [0.130, 0.160, 0.210, 0.260, 0.290, 0.310, 0.320, 0.330, 0.340, 0.340, 0.420, 0.360],  # sand
    [0.160, 0.190, 0.220, 0.240, 0.255, 0.265, 0.275, 0.285, 0.290, 0.290, 0.330, 0.290],  # rock
], dtype=np.float32)

#: Thick-cloud reflectance (bright in all bands, still bright in SWIR).
CLOUD_SPECTRUM = np.array([0.55, 0.56, 0.57, 0.57, 0.58, 0.58, 0.58, 0.58, 0.58, 0.45, 0.40, 0.28],
                          dtype=np.float32)
#: Thin-haze reflectance (mostly scattering in the blue).
HAZE_SPECTRUM = np.array([0.24, 0.21, 0.18, 0.15, 0.14, 0.13, 0.12, 0.12, 0.11, 0.08, 0.06, 0.04],
                         dtype=np.float32)
#: Shadows multiply by ``k ** exponent``: diffuse skylight keeps blue shadows a little brighter.
SHADOW_EXPONENT = np.array([0.75, 0.78, 0.85, 0.9, 0.92, 0.95, 0.95, 0.95, 0.95, 0.95, 1.0, 1.0],
                           dtype=np.float32)

_KEYS = ("gv", "npv", "soil", "water", "urban", "sand", "rock")


def _k(doy: int, **fractions: float) -> tuple[int, list[float]]:
    return doy, [fractions.get(key, 0.0) for key in _KEYS]


_FLAT = {
    51: [_k(1, gv=0.05, soil=0.03, urban=0.8)],
    53: [_k(1, gv=0.08, soil=0.05, urban=0.7)],
    61: [_k(1, sand=0.95)],
    62: [_k(1, rock=0.85, soil=0.1)],
    81: [_k(1, water=1.0)],
    82: [_k(1, water=0.95)],
}

_SEASONAL = {
    11: [_k(15, gv=0.72, npv=0.08, soil=0.02), _k(120, gv=0.8, npv=0.06, soil=0.02),
         _k(200, gv=0.82, npv=0.05, soil=0.02), _k(300, gv=0.78, npv=0.07, soil=0.02)],
    12: [_k(15, gv=0.35, npv=0.42, soil=0.05), _k(90, gv=0.38, npv=0.4, soil=0.05),
         _k(125, gv=0.75, npv=0.08, soil=0.03), _k(200, gv=0.85, npv=0.05, soil=0.02),
         _k(290, gv=0.78, npv=0.1, soil=0.02), _k(330, gv=0.5, npv=0.32, soil=0.04)],
    21: [_k(15, gv=0.4, npv=0.32, soil=0.15), _k(120, gv=0.62, npv=0.15, soil=0.1),
         _k(220, gv=0.72, npv=0.1, soil=0.08), _k(320, gv=0.55, npv=0.22, soil=0.12)],
    31: [_k(15, gv=0.22, npv=0.55, soil=0.15), _k(90, gv=0.3, npv=0.45, soil=0.15),
         _k(150, gv=0.65, npv=0.15, soil=0.1), _k(230, gv=0.75, npv=0.1, soil=0.08),
         _k(300, gv=0.5, npv=0.3, soil=0.12), _k(340, gv=0.3, npv=0.5, soil=0.15)],
    32: [_k(15, gv=0.45, npv=0.35, soil=0.1), _k(120, gv=0.75, npv=0.1, soil=0.08),
         _k(230, gv=0.82, npv=0.05, soil=0.05), _k(320, gv=0.65, npv=0.2, soil=0.1)],
    # rice: fallow, flooded mid-May to June (water-like), green in summer, harvest in October
    41: [_k(1, gv=0.05, npv=0.35, soil=0.55), _k(100, gv=0.15, npv=0.2, soil=0.6),
         _k(125, gv=0.05, npv=0.1, soil=0.7), _k(132, gv=0.02, soil=0.1, water=0.85),
         _k(160, gv=0.12, soil=0.05, water=0.8), _k(180, gv=0.45, water=0.45),
         _k(205, gv=0.8, water=0.1), _k(250, gv=0.88, npv=0.04), _k(268, gv=0.5, npv=0.4),
         _k(282, gv=0.1, npv=0.5, soil=0.4), _k(320, gv=0.05, npv=0.4, soil=0.55)],
    # dry fields: winter barley/wheat (harvest late May), bare soil, summer soybean, harvest
    42: [_k(1, gv=0.35, npv=0.1, soil=0.5), _k(60, gv=0.55, npv=0.05, soil=0.35),
         _k(100, gv=0.85, npv=0.05, soil=0.1), _k(130, gv=0.55, npv=0.35, soil=0.1),
         _k(145, gv=0.15, npv=0.6, soil=0.25), _k(152, gv=0.05, npv=0.3, soil=0.65),
         _k(190, gv=0.05, npv=0.1, soil=0.85), _k(205, gv=0.25, soil=0.65),
         _k(235, gv=0.75, soil=0.2), _k(265, gv=0.8, soil=0.15), _k(290, gv=0.45, npv=0.4, soil=0.15),
         _k(300, gv=0.05, npv=0.25, soil=0.7), _k(320, gv=0.05, npv=0.1, soil=0.85),
         _k(345, gv=0.2, soil=0.75)],
    52: [_k(30, gv=0.2, soil=0.1, urban=0.55), _k(210, gv=0.3, soil=0.08, urban=0.55)],
    83: [_k(30, gv=0.03, water=0.9), _k(210, gv=0.1, water=0.85)],
    91: [_k(15, gv=0.15, npv=0.5, water=0.3), _k(120, gv=0.45, npv=0.25, water=0.3),
         _k(200, gv=0.7, npv=0.1, water=0.2), _k(300, gv=0.45, npv=0.3, water=0.25)],
}


def phenology_table() -> tuple[np.ndarray, np.ndarray]:
    """``(table, index)``: fractions per (sub-class row, day 0-364, endmember key) and code->row."""
    codes = sorted(SUBCLASSES)
    index = np.zeros(256, np.int16)
    table = np.zeros((len(codes), 365, len(_KEYS)), np.float32)
    days = np.arange(365) + 1.0
    for row, code in enumerate(codes):
        index[code] = row
        keys = _SEASONAL.get(code) or _FLAT[code]
        kd = np.array([d for d, _ in keys], float)
        kf = np.array([f for _, f in keys], float)
        # wrap around the year so December joins January smoothly
        kd = np.concatenate([kd - 365, kd, kd + 365])
        kf = np.concatenate([kf, kf, kf])
        for j in range(len(_KEYS)):
            table[row, :, j] = np.interp(days, kd, kf[:, j])
    return table, index


_TABLE, _INDEX = phenology_table()


def surface_weights(subclass: np.ndarray, phase: np.ndarray, vigor: np.ndarray,
                    turbidity: np.ndarray, doy: int) -> np.ndarray:
    """Per-pixel endmember weights ``(N, 8)`` for day of year ``doy`` (1-366)."""
    rows = _INDEX[subclass.ravel()]
    day = (doy - 1 + phase.ravel().astype(np.int32)) % 365
    f = _TABLE[rows, day]
    water = f[:, 3]
    turb = turbidity.ravel()
    weights = np.empty((f.shape[0], 8), np.float32)
    weights[:, 0] = np.minimum(f[:, 0] * vigor.ravel(), 0.95)
    weights[:, 1] = f[:, 1]
    weights[:, 2] = f[:, 2]
    weights[:, 3] = water * (1.0 - turb)
    weights[:, 4] = water * turb
    weights[:, 5:] = f[:, 4:]
    return weights


def band_reflectance(weights: np.ndarray, gain: np.ndarray, band: int,
                     shape: tuple[int, int]) -> np.ndarray:
    """Clean 10 m reflectance of band number ``band`` (index into :data:`BANDS`)."""
    refl = weights @ ENDMEMBERS[:, band]
    refl *= gain
    return refl.reshape(shape)


def terrain_gain(elevation: np.ndarray, brightness: np.ndarray, res: float,
                 sun_azimuth: float, sun_zenith: float) -> np.ndarray:
    """Static brightness times a damped cos(i)/cos(z) terrain illumination factor, flattened."""
    d_row, d_col = np.gradient(elevation.astype(np.float32), res)
    nx, ny = -d_col, d_row  # east and north components of the (unnormalised) surface normal
    norm = np.sqrt(nx * nx + ny * ny + 1.0)
    z, a = math.radians(sun_zenith), math.radians(sun_azimuth)
    cos_i = (math.cos(z) + math.sin(z) * (nx * math.sin(a) + ny * math.cos(a))) / norm
    factor = np.clip(1.0 + 0.4 * (cos_i / math.cos(z) - 1.0), 0.3, 1.6)
    return (factor * brightness).astype(np.float32).ravel()
