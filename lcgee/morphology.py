"""Exact binary dilation by a disk of pixel centres, without a distance transform.

:func:`dilate_disk` sets every pixel within ``radius`` (Euclidean, between pixel centres) of a
set pixel of the image -- what ``distance_transform_edt(~image) <= radius + eps`` gives, with
the same float64 ``sqrt`` test per offset, so the results are identical -- but as a handful of
1-D running maxima along rows (one per distinct half-width of the disk's rows) ORed at their
row offsets. The s2cloudless masks dilate and erode with small disks (2 and 5 px at 20 m),
where this is several times faster than the distance transform.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["disk_half_widths", "dilate_disk"]


def disk_half_widths(radius: float, eps: float) -> dict[int, int]:
    """``{row offset: half-width}`` of the disk: ``(dy, dx)`` is in it when
    ``sqrt(dy**2 + dx**2) <= radius + eps`` (float64, as the distance transform compares)."""
    reach = int(np.floor(radius + eps)) + 1
    out = {}
    for dy in range(-reach, reach + 1):
        dx = np.arange(reach + 1, dtype=np.float64)
        inside = np.sqrt(float(dy * dy) + dx * dx) <= radius + eps
        if inside[0]:
            out[dy] = int(np.flatnonzero(inside).max())
    return out


def dilate_disk(image: np.ndarray, radius: float, eps: float) -> np.ndarray:
    """``image`` (2-D bool) dilated by the disk of :func:`disk_half_widths`; pixels off the
    image are unset."""
    image = np.asarray(image, dtype=bool)
    height = image.shape[0]
    out = np.zeros_like(image)
    rows: dict[int, np.ndarray] = {}
    src = image.view(np.uint8)
    for dy, half in disk_half_widths(radius, eps).items():
        if abs(dy) >= height:
            continue
        if half not in rows:
            rows[half] = (src if half == 0 else ndimage.maximum_filter1d(
                src, size=2 * half + 1, axis=1, mode="constant", cval=0)).view(bool)
        spread = rows[half]
        # out[r] |= spread[r + dy] where row r + dy exists
        if dy >= 0:
            out[:height - dy] |= spread[dy:]
        else:
            out[-dy:] |= spread[:height + dy]
    return out
