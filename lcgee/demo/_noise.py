"""Random fields and small raster helpers for the demo world (all deterministic given an rng)."""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage, special

__all__ = [
    "block_all",
    "block_mean",
    "fractal_1d",
    "fractal_noise",
    "rasterize_polyline",
    "select_fraction",
    "smooth_noise",
    "smoothstep",
    "to_uniform",
    "upsample_bilinear",
]


def _radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    fy = fft.fftfreq(shape[0])[:, None]
    fx = fft.rfftfreq(shape[1])[None, :]
    return np.sqrt(fy * fy + fx * fx)


def _filtered(rng: np.random.Generator, shape: tuple[int, int], transfer: np.ndarray) -> np.ndarray:
    white = rng.standard_normal(shape, dtype=np.float32)
    field = fft.irfft2(fft.rfft2(white) * transfer, s=shape).astype(np.float32)
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float,
                  *, cutoff_px: float = 0.0) -> np.ndarray:
    """Standardised power-law noise (power spectrum ``f**-beta``), optionally low-passed.

    ``cutoff_px`` removes detail finer than about that many pixels (Gaussian roll-off).
    """
    f = _radial_frequency(shape)
    f[0, 0] = 1.0 / max(shape)
    transfer = f ** (-beta / 2.0)
    transfer[0, 0] = 0.0
    if cutoff_px > 0:
        transfer *= np.exp(-0.5 * (f * cutoff_px * 2.0) ** 2)
    return _filtered(rng, shape, transfer)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Standardised Gaussian-smoothed white noise with correlation length ``scale_px``."""
    f = _radial_frequency(shape)
    transfer = np.exp(-2.0 * (np.pi * f * scale_px) ** 2)
    return _filtered(rng, shape, transfer)


def fractal_1d(rng: np.random.Generator, n: int, beta: float = 2.0) -> np.ndarray:
    """Standardised 1-D power-law noise of length ``n``."""
    f = np.fft.rfftfreq(n)
    f[0] = 1.0 / n
    spec = np.fft.rfft(rng.standard_normal(n)) * f ** (-beta / 2.0)
    spec[0] = 0.0
    out = np.fft.irfft(spec, n=n)
    return (out - out.mean()) / (out.std() or 1.0)


def to_uniform(x: np.ndarray) -> np.ndarray:
    """Map a standard-normal field to (0, 1) with the normal CDF."""
    return special.ndtr(x).astype(np.float32)


def smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``lo`` to 1 at ``hi``."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over ``f x f`` blocks (shape must be divisible by ``f``), float32."""
    if f == 1:
        return a.astype(np.float32, copy=False)
    h, w = a.shape
    return a.reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32)


def block_all(a: np.ndarray, f: int) -> np.ndarray:
    """True where every pixel of an ``f x f`` block is true."""
    if f == 1:
        return a.astype(bool, copy=False)
    h, w = a.shape
    if a.all():
        return np.ones((h // f, w // f), bool)
    return a.reshape(h // f, f, w // f, f).all(axis=(1, 3))


def upsample_bilinear(a: np.ndarray, f: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor, pixel-area aligned."""
    return ndimage.zoom(a.astype(np.float32), f, order=1, mode="nearest", grid_mode=True)


def select_fraction(mask: np.ndarray, score: np.ndarray, fraction: float,
                    *, lowest: bool = True) -> np.ndarray:
    """Boolean mask of ``round(fraction * mask.sum())`` pixels of ``mask`` with the lowest score.

    Ties are broken by position, so the result is deterministic.
    """
    out = np.zeros(mask.shape, bool)
    idx = np.flatnonzero(mask)
    n = round(fraction * idx.size)
    if n <= 0:
        return out
    values = score.ravel()[idx]
    order = np.argsort(values if lowest else -values, kind="stable")
    out.ravel()[idx[order[:n]]] = True
    return out


def rasterize_polyline(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray,
                       half_width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (px) to a densely sampled polyline and the half-width of its nearest point.

    Returns ``(distance, half_width_of_nearest_point)``; pixels with
    ``distance <= half_width`` lie on the line.
    """
    h, w = shape
    r = np.rint(rows).astype(np.int64)
    c = np.rint(cols).astype(np.int64)
    keep = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    hw = np.zeros(shape, np.float32)
    centre = np.zeros(shape, bool)
    if not keep.any():
        return np.full(shape, np.inf, np.float32), hw
    np.maximum.at(hw, (r[keep], c[keep]), half_width[keep].astype(np.float32))
    centre[r[keep], c[keep]] = True
    dist, (ir, ic) = ndimage.distance_transform_edt(~centre, return_indices=True)
    return dist.astype(np.float32), hw[ir, ic]
