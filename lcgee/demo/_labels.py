"""The published (noisy) WorldCover-like label map, derived from the land-cover truth.

Two error sources, as in real 10 m land-cover products:

1. boundary errors: the label is the arg-max of Gaussian-blurred class memberships, so thin
   features (roads, narrow rivers, hedges) vanish and edges shift;
2. thematic confusions between similar classes (grass <-> crop, shrub <-> tree,
   wetland <-> water, built-up <-> bare, ...), painted as smooth patches, more often in the
   classes real products get wrong (grass, shrub, wetland), until the overall agreement with the
   truth reaches :data:`LABEL_TARGET_AGREEMENT`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lcgee.demo._common import LABEL_TARGET_AGREEMENT
from lcgee.demo._noise import smooth_noise, to_uniform

__all__ = ["derive_labels"]

_CLASSES = (10, 20, 30, 40, 50, 60, 80, 90)
#: how readily each truth class is mislabelled (added to a 0-1 patch score)
_PROPENSITY = {10: -0.1, 20: 0.3, 30: 0.35, 40: -0.05, 50: 0.0, 60: 0.2, 80: -0.6, 90: 0.3}
#: (first choice, second choice, share of the first)
_PARTNER = {10: (20, 30, 0.65), 20: (10, 30, 0.5), 30: (40, 20, 0.55), 40: (30, 60, 0.7),
            50: (60, 30, 0.5), 60: (50, 30, 0.5), 80: (90, 90, 1.0), 90: (80, 30, 0.5)}


def _blurred_argmax(truth: np.ndarray, sigma: float, jitter: np.ndarray) -> np.ndarray:
    best = np.zeros(truth.shape, np.float32)
    label = np.zeros(truth.shape, np.uint8)
    for code in _CLASSES:
        member = ndimage.gaussian_filter((truth == code).astype(np.float32), sigma)
        member += jitter * 0.08 * (code / 90.0 - 0.5)
        better = member > best
        best[better] = member[better]
        label[better] = code
    return label


def derive_labels(truth: np.ndarray, subclass: np.ndarray, seed: int,
                  target: float = LABEL_TARGET_AGREEMENT) -> tuple[np.ndarray, dict]:
    """``(labels, stats)``: the noisy label map (uint8) and its agreement with ``truth``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    shape = truth.shape
    label = _blurred_argmax(truth, 1.6, smooth_noise(rng, shape, 3.0))
    blur_agreement = float((label == truth).mean())

    patch = to_uniform(smooth_noise(rng, shape, 5.0))
    choice = to_uniform(smooth_noise(rng, shape, 8.0))
    bias = np.zeros(256, np.float32)
    for code, value in _PROPENSITY.items():
        bias[code] = value
    score = patch + bias[truth]
    water = truth == 80
    near_shore = ndimage.distance_transform_edt(water) < 6
    score[water & near_shore] += 0.9  # only shore water becomes wetland
    score[subclass == 41] += 0.1  # paddies: crop vs wetland/grass

    need = round((blur_agreement - target) * truth.size)
    eligible = np.flatnonzero((label == truth).ravel())
    if need > 0 and eligible.size:
        order = np.argsort(-score.ravel()[eligible], kind="stable")[: min(need, eligible.size)]
        flip = eligible[order]
        src = truth.ravel()[flip]
        first = np.array([_PARTNER.get(int(c), (c, c, 1.0))[0] for c in range(256)], np.uint8)
        second = np.array([_PARTNER.get(int(c), (c, c, 1.0))[1] for c in range(256)], np.uint8)
        share = np.array([_PARTNER.get(int(c), (c, c, 1.0))[2] for c in range(256)], np.float32)
        use_first = choice.ravel()[flip] < share[src]
        label.ravel()[flip] = np.where(use_first, first[src], second[src])
    return label, _stats(label, truth, blur_agreement, target)


def _stats(label: np.ndarray, truth: np.ndarray, blur_agreement: float, target: float) -> dict:
    per_class = {}
    for code in _CLASSES:
        mask = truth == code
        if mask.any():
            per_class[str(code)] = round(float((label[mask] == code).mean()), 4)
    return {
        "agreement": round(float((label == truth).mean()), 4),
        "target": target,
        "agreement_after_blur_only": round(blur_agreement, 4),
        "per_class_agreement": per_class,
    }
