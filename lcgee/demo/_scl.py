"""A Sen2Cor-like scene classification (SCL, 20 m) with designed, measurable errors.

Truth is compared at 20 m after aggregating the 10 m truth of each 2 x 2 block:

* ``cloud``: at least 2 of the 4 pixels are (thick) cloud;
* ``haze``: not ``cloud`` and at least 2 pixels are cloud or haze;
* ``shadow``: neither of those and at least 2 pixels are visible cloud shadow;
* ``clear``: all 4 pixels free of cloud, haze and shadow; ``water``: clear and at least
  2 pixels are WorldCover water (80).

Inside each set a fixed fraction (the ``SCL_*`` constants) is chosen by a score, so the errors
are spatially coherent and concentrated where Sen2Cor fails: the thinnest cloud edges, the
faintest haze, the darkest shadows (taken for water).
"""

from __future__ import annotations

import numpy as np

from lcgee.demo._common import (
    SCL_CLEAR_AS_CLOUD,
    SCL_CLOUD_RECALL,
    SCL_HAZE_RECALL,
    SCL_SHADOW_AS_WATER,
    SCL_SHADOW_RECALL,
    SCL_WATER_AS_SHADOW,
)
from lcgee.demo._noise import block_all, block_mean, select_fraction, smooth_noise

__all__ = ["SCL_COUNT_KEYS", "scene_classification", "truth_sets_20m"]

SCL_COUNT_KEYS = ("cloud", "cloud_detected", "haze", "haze_detected", "shadow", "shadow_as_3",
                  "shadow_as_6", "water", "water_as_3", "clear", "clear_as_cloud")


def truth_sets_20m(code: np.ndarray, shadow: np.ndarray, landcover: np.ndarray,
                   valid20: np.ndarray) -> dict[str, np.ndarray]:
    """The disjoint 20 m truth sets defined in the module docstring (valid pixels only)."""
    cloud = (block_mean(code == 2, 2) >= 0.5) & valid20
    haze = (block_mean(code >= 1, 2) >= 0.5) & ~cloud & valid20
    shade = (block_mean(shadow, 2) >= 0.5) & ~cloud & ~haze & valid20
    clear = block_all((code == 0) & ~shadow, 2) & valid20
    water = clear & (block_mean(landcover == 80, 2) >= 0.5)
    return {"cloud": cloud, "haze": haze, "shadow": shade, "clear": clear, "water": water}


def _surface_class(b2: np.ndarray, b3: np.ndarray, b4: np.ndarray, b8a: np.ndarray,
                   noise: np.ndarray) -> np.ndarray:
    """Vegetation / not vegetated / water / dark area / unclassified from observed reflectance."""
    ndvi = (b8a - b4) / (b8a + b4 + 1e-6)
    ndwi = (b3 - b8a) / (b3 + b8a + 1e-6)
    scl = np.full(b2.shape, 5, np.uint8)
    scl[ndvi > 0.4] = 4
    scl[(b8a < 0.06) & (b2 + b3 + b4 < 0.12)] = 2
    scl[(ndwi > 0.05) & (b8a < 0.08)] = 6
    scl[(np.abs(ndvi - 0.4) < 0.03) & (noise > 1.0)] = 7
    return scl


def scene_classification(rng: np.random.Generator, obs20: dict[str, np.ndarray],
                         sets: dict[str, np.ndarray], alpha_c20: np.ndarray,
                         alpha_h20: np.ndarray, valid20: np.ndarray
                         ) -> tuple[np.ndarray, dict[str, int]]:
    """SCL codes (uint8, 20 m) and the counts behind the achieved error rates.

    ``obs20`` holds the observed (cloudy) reflectance of B02, B03, B04 and B8A at 20 m.
    """
    shape = valid20.shape
    noise = smooth_noise(rng, shape, 3.0)
    b2, b3, b4, b8a = (obs20[b] for b in ("B02", "B03", "B04", "B8A"))
    scl = _surface_class(b2, b3, b4, b8a, smooth_noise(rng, shape, 2.0))

    cloud = select_fraction(sets["cloud"], alpha_c20 + 0.1 * noise, SCL_CLOUD_RECALL, lowest=False)
    scl[cloud] = np.where(alpha_c20[cloud] > 0.6, 9, 8)
    mixed = ~sets["cloud"] & ~sets["haze"] & ~sets["shadow"] & ~sets["clear"] & (alpha_c20 > 0.3)
    scl[mixed] = 8
    haze = select_fraction(sets["haze"], alpha_h20 + 0.05 * noise, SCL_HAZE_RECALL, lowest=False)
    scl[haze] = np.where(noise[haze] > -0.5, 10, 8)

    dark_score = b8a * (1.0 + 0.3 * noise)
    as_water = select_fraction(sets["shadow"], dark_score, SCL_SHADOW_AS_WATER)
    rest = sets["shadow"] & ~as_water
    frac = SCL_SHADOW_RECALL / max(1e-9, 1.0 - SCL_SHADOW_AS_WATER)
    as_shadow = select_fraction(rest, dark_score, frac)
    missed = rest & ~as_shadow
    scl[missed & (scl == 6)] = 2
    scl[as_water] = 6
    scl[as_shadow] = 3

    water3 = select_fraction(sets["water"], noise, SCL_WATER_AS_SHADOW)
    scl[water3] = 3
    bright = select_fraction(sets["clear"], -(b2 + b3 + b4) - 0.02 * noise, SCL_CLEAR_AS_CLOUD)
    scl[bright] = 8
    scl[~valid20] = 0
    return scl, _counts(scl, sets)


def _counts(scl: np.ndarray, sets: dict[str, np.ndarray]) -> dict[str, int]:
    is_cloud = np.isin(scl, (8, 9, 10))
    return {
        "cloud": int(sets["cloud"].sum()), "cloud_detected": int((sets["cloud"] & is_cloud).sum()),
        "haze": int(sets["haze"].sum()), "haze_detected": int((sets["haze"] & is_cloud).sum()),
        "shadow": int(sets["shadow"].sum()), "shadow_as_3": int((sets["shadow"] & (scl == 3)).sum()),
        "shadow_as_6": int((sets["shadow"] & (scl == 6)).sum()),
        "water": int(sets["water"].sum()), "water_as_3": int((sets["water"] & (scl == 3)).sum()),
        "clear": int(sets["clear"].sum()),
        "clear_as_cloud": int((sets["clear"] & is_cloud).sum()),
    }
