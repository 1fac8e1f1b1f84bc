"""Cloud and cloud-shadow masks on the pixel grid.

Every source returns the same kind of mask: a ``uint8`` array (``(y, x)`` for one scene, an
xarray ``DataArray`` ``(time, y, x)`` for a series) holding :class:`MaskCode` values
``CLEAR = 0``, ``CLOUD = 1``, ``SHADOW = 2``, ``NODATA = 255``.

Sources:

* :func:`s2cloudless_mask` / :func:`local_masks` -- the Earth Engine community tutorial
  "Sentinel-2 Cloud Masking with s2cloudless" reproduced on numpy (cloud probability from
  ``COPERNICUS/S2_CLOUD_PROBABILITY``, NIR and SCL from L2A).
* :func:`scl_mask` / :func:`scl_masks` -- Sen2Cor's scene classification.

How the tutorial's Earth Engine steps are emulated (one scene, grid north-up, rows south):

* Earth Engine evaluates the shadow projection at 100 m and the morphology at 20 m because the
  tutorial calls ``reproject(crs, scale=...)``. Those grids have pixel edges at
  ``anchor + k * scale``: :func:`local_masks` anchors them at the corner of the grid the
  masks are computed on, as the Earth Engine graph does with an explicit ``crsTransform``
  (:mod:`lcgee.gee.cloudmask`); the tutorial anchors them at the scene's own origin.
  Moving to a coarser grid takes the input pixel under each coarse pixel
  centre (nearest neighbour, Earth Engine's default resampling; a centre falling exactly on a
  pixel edge takes the pixel to the east/south); moving back takes the coarse pixel under each
  input pixel centre. Earth Engine may instead read an asset's mean pyramid when asked for a
  coarse scale; that difference is not emulated (UNCONFIRMED, see
  docs/earth-engine-semantics.md).
* ``directionalDistanceTransform(90 - azimuth, CLD_PRJ_DIST * 10)`` at 100 m: the angle is
  counter-clockwise from east, so it points towards the sun. A 100 m pixel is "projected cloud"
  when a cloud pixel lies at one of the offsets ``round(k * (cos a, sin a))``,
  ``k = 0 .. CLD_PRJ_DIST * 10`` (north = up = negative row offset).
* ``focalMin(2)`` then ``focalMax(BUFFER * 2 / 20)`` at 20 m with ``ee.Kernel.circle``
  kernels: a pixel belongs to a circle of radius ``r`` pixels when its centre is at distance
  ``<= r`` (Earth Engine's documented ``circle(3)`` weights have exactly that footprint). They
  are computed exactly with Euclidean distance transforms. Pixels off the image or without data
  are ignored by both (as masked pixels are in Earth Engine). The tutorial's radius
  ``BUFFER * 2 / 20`` pixels is about 2 x BUFFER metres (a quirk kept by default);
  ``exact_buffer=True`` uses ``BUFFER / 20`` pixels (BUFFER metres). Either way a large object
  grows by the dilation radius minus the 40 m erosion radius.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from lcgee.errors import DataError, ParamsError
from lcgee.morphology import dilate_disk

__all__ = [
    "AGGRESSIVE",
    "CLEAR",
    "CLOUD",
    "EROSION_RADIUS",
    "MORPHOLOGY_SCALE",
    "NODATA",
    "PRESETS",
    "CloudMaskParams",
    "PROJECTION_SCALE",
    "SHADOW",
    "TUTORIAL",
    "MaskCode",
    "apply_mask",
    "dilation_radius",
    "local_masks",
    "mask_quality",
    "s2cloudless_mask",
    "scl_mask",
    "scl_masks",
]


class MaskCode(IntEnum):
    """Values of every cloud mask lcgee produces."""

    CLEAR = 0
    CLOUD = 1
    SHADOW = 2
    NODATA = 255


CLEAR, CLOUD, SHADOW, NODATA = (int(c) for c in MaskCode)

#: The tutorial's exploration parameters (``cloud_filter``: max scene cloud %, for searching).
TUTORIAL: Mapping[str, float] = MappingProxyType({
    "cloud_filter": 60, "cld_prb_thresh": 50, "nir_drk_thresh": 0.15, "cld_prj_dist": 1,
    "buffer": 50,
})
#: The tutorial's "more aggressive" parameters used for its composite.
AGGRESSIVE: Mapping[str, float] = MappingProxyType({
    "cloud_filter": 60, "cld_prb_thresh": 40, "nir_drk_thresh": 0.15, "cld_prj_dist": 2,
    "buffer": 100,
})

#: The presets by the names the params file uses.
PRESETS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"tutorial": TUTORIAL, "aggressive": AGGRESSIVE})



@dataclass(frozen=True)
class CloudMaskParams:
    """The parameters of the s2cloudless + shadow mask, the same locally and in Earth Engine.

    Values are kept as given (``50`` stays an int), so :meth:`as_kwargs` hashes and serializes
    as the preset dictionaries do. Checked on creation.
    """

    cld_prb_thresh: float = 50
    """Cloud probability (0-100) above which a pixel is cloud."""

    nir_drk_thresh: float = 0.15
    """NIR (B8) reflectance below which a non-water pixel is dark (a shadow candidate)."""

    cld_prj_dist: float = 1
    """Distance in km clouds are projected along the sun azimuth to find their shadows."""

    buffer: float = 50
    """Metres by which clouds and shadows are dilated."""

    exact_buffer: bool = False
    """Dilate by exactly ``buffer`` metres (``buffer / 20`` px) instead of the tutorial's
    ``buffer * 2 / 20`` px."""

    def __post_init__(self) -> None:
        _check_params(0.0, 1.0, self.cld_prb_thresh, self.nir_drk_thresh, self.cld_prj_dist,
                      self.buffer)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CloudMaskParams:
        """From a preset (:data:`PRESETS`) or any mapping: its mask parameters; other keys
        (a preset's ``cloud_filter``, which only the scene search uses) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def as_kwargs(self) -> dict[str, Any]:
        """The parameters as keyword arguments of :func:`s2cloudless_mask` /
        :func:`local_masks` (and for hashing)."""
        return dataclasses.asdict(self)


PROJECTION_SCALE = 100.0  #: metres; scale of the shadow projection in the tutorial
MORPHOLOGY_SCALE = 20.0  #: metres; scale of focalMin / focalMax in the tutorial
EROSION_RADIUS = 2.0  #: pixels at MORPHOLOGY_SCALE (``focalMin(2)``)
_SCL_WATER = 6
_EPS = 1e-9

Origin = tuple[float, float]


# ---- grid sampling -------------------------------------------------------------------------
class _Sampler:
    """Nearest-neighbour moves between a fine grid and a coarser grid (``scale`` metres)."""

    def __init__(self, shape: tuple[int, int], resolution: float, scale: float,
                 origin: Origin | None, anchor: Origin | None = None) -> None:
        factor = scale / resolution
        col_off, row_off = _coarse_offsets(resolution, scale, origin, anchor)
        self.rows, self.row_ok, self.back_rows = _axis_maps(shape[0], row_off, factor)
        self.cols, self.col_ok, self.back_cols = _axis_maps(shape[1], col_off, factor)

    def down(self, fine: np.ndarray, outside: bool) -> np.ndarray:
        """Sample a boolean fine image onto the coarse grid (``outside`` off the image)."""
        coarse = fine[np.ix_(self.rows, self.cols)]
        off = ~(self.row_ok[:, None] & self.col_ok[None, :])
        coarse[off] = outside
        return coarse

    def up(self, coarse: np.ndarray) -> np.ndarray:
        """Bring a coarse image back onto the fine grid."""
        return coarse[np.ix_(self.back_rows, self.back_cols)]


def _coarse_offsets(resolution: float, scale: float, origin: Origin | None,
                    anchor: Origin | None = None) -> tuple[float, float]:
    """Coarse grid's top-left corner in fine pixels east and south of the image corner (<= 0).

    The coarse cells have edges at ``anchor + k * scale`` (``anchor`` None: the CRS origin)."""
    if origin is None:
        return 0.0, 0.0
    left, top = origin
    ax, ay = anchor if anchor is not None else (0.0, 0.0)
    coarse_left = ax + math.floor((left - ax) / scale + _EPS) * scale
    coarse_top = ay + math.ceil((top - ay) / scale - _EPS) * scale
    return round((coarse_left - left) / resolution, 6), round((top - coarse_top) / resolution, 6)


def _axis_maps(n: int, offset: float, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis: fine index under each coarse centre, its validity, coarse index of each fine pixel."""
    n_coarse = max(1, math.ceil((n - offset) / factor - _EPS))
    centres = offset + (np.arange(n_coarse) + 0.5) * factor
    src = np.floor(centres + _EPS).astype(np.int64)
    ok = (src >= 0) & (src < n)
    back = np.floor((np.arange(n) + 0.5 - offset) / factor + _EPS).astype(np.int64)
    return np.clip(src, 0, n - 1), ok, np.clip(back, 0, n_coarse - 1)


# ---- morphology ----------------------------------------------------------------------------
def _dilate(image: np.ndarray, radius: float) -> np.ndarray:
    """Dilation by a disk of pixel centres within ``radius`` (exact, via a distance transform)."""
    if not image.any():
        return np.zeros_like(image)
    if image.all() or radius <= 0:
        return image.copy()
    return dilate_disk(image, radius, _EPS)  # == distance_transform_edt(~image) <= radius + eps


def _erode(image: np.ndarray, radius: float) -> np.ndarray:
    """Erosion by the same disk; pixels off the image count as set (they are ignored)."""
    return ~_dilate(~image, radius)


def _open_and_buffer(image: np.ndarray, ignore: np.ndarray, dilate_px: float) -> np.ndarray:
    """``focalMin(2)`` then ``focalMax(dilate_px)``, with ``ignore`` pixels left out of both."""
    eroded = _erode(image | ignore, EROSION_RADIUS) & ~ignore
    return _dilate(eroded, dilate_px)


def dilation_radius(buffer: float, *, exact_buffer: bool = False) -> float:
    """Radius of ``focalMax`` in 20 m pixels: ``buffer * 2 / 20`` (tutorial) or ``buffer / 20``."""
    return buffer / MORPHOLOGY_SCALE if exact_buffer else buffer * 2 / MORPHOLOGY_SCALE


# ---- shadow projection ---------------------------------------------------------------------
def _march_offsets(sun_azimuth: float, steps: int) -> list[tuple[int, int]]:
    """Distinct ``(row, col)`` offsets towards the sun, one coarse pixel per step."""
    angle = math.radians(90.0 - sun_azimuth)
    east, north = math.cos(angle), math.sin(angle)
    offsets = {(-int(np.rint(k * north)), int(np.rint(k * east))) for k in range(steps + 1)}
    return sorted(offsets, key=lambda o: abs(o[0]) + abs(o[1]))


def _or_shifted(target: np.ndarray, source: np.ndarray, drow: int, dcol: int) -> None:
    """``target[r, c] |= source[r + drow, c + dcol]`` where that source pixel exists."""
    h, w = source.shape
    if abs(drow) >= h or abs(dcol) >= w:
        return
    t_rows = slice(max(0, -drow), h - max(0, drow))
    t_cols = slice(max(0, -dcol), w - max(0, dcol))
    s_rows = slice(max(0, drow), h - max(0, -drow))
    s_cols = slice(max(0, dcol), w - max(0, -dcol))
    target[t_rows, t_cols] |= source[s_rows, s_cols]


def _project_clouds(clouds: np.ndarray, sun_azimuth: float, cld_prj_dist: float,
                    resolution: float, origin: Origin | None,
                    anchor: Origin | None = None) -> np.ndarray:
    """Pixels with a cloud within ``cld_prj_dist`` km towards the sun, evaluated at 100 m."""
    sampler = _Sampler(clouds.shape, resolution, PROJECTION_SCALE, origin, anchor)
    coarse = sampler.down(clouds, outside=False)
    steps = round(cld_prj_dist * 1000.0 / PROJECTION_SCALE)
    projected = np.zeros_like(coarse)
    for drow, dcol in _march_offsets(sun_azimuth, steps):
        _or_shifted(projected, coarse, drow, dcol)
    return sampler.up(projected)


# ---- the s2cloudless tutorial --------------------------------------------------------------
def s2cloudless_mask(
    probability: np.ndarray,
    nir: np.ndarray,
    scl: np.ndarray | None,
    *,
    sun_azimuth: float,
    resolution: float,
    cld_prb_thresh: float = 50,
    nir_drk_thresh: float = 0.15,
    cld_prj_dist: float = 1.0,
    buffer: float = 50,
    exact_buffer: bool = False,
    cloud_filter: float | None = None,
    origin: Origin | None = None,
    anchor: Origin | None = None,
) -> np.ndarray:
    """The tutorial's cloud + shadow mask of one scene, split into CLOUD and SHADOW codes.

    Args:
        probability: s2cloudless cloud probability 0-100 (``COPERNICUS/S2_CLOUD_PROBABILITY``);
            NaN or values outside 0-100 (e.g. a 255 fill) are nodata.
        nir: B8 as reflectance (``S2_SR_HARMONIZED`` DN / 10000, harmonized); NaN is nodata.
        scl: Sen2Cor SCL codes (water = 6 is never dark), or None to skip that test.
        sun_azimuth: mean solar azimuth, degrees clockwise from north.
        resolution: pixel size in metres of all three arrays (UTM, north-up, rows south).
        cld_prb_thresh: CLD_PRB_THRESH, probability above which a pixel is cloud.
        nir_drk_thresh: NIR_DRK_THRESH, NIR reflectance below which a pixel may be shadow.
        cld_prj_dist: CLD_PRJ_DIST, km searched towards the sun for a casting cloud.
        buffer: BUFFER in metres (see ``exact_buffer``).
        exact_buffer: False keeps the tutorial's dilation radius ``BUFFER * 2 / 20`` 20 m pixels
            (~2 x BUFFER m); True uses ``BUFFER / 20`` pixels (BUFFER m).
        cloud_filter: CLOUD_FILTER; used for scene selection, accepted (and ignored) here so
            the presets :data:`TUTORIAL` / :data:`AGGRESSIVE` can be passed with ``**``.
        origin: ``(left, top)`` CRS coordinates of the image's top-left corner; with it the
            100 m and 20 m working grids have edges at ``anchor + k * scale``. None aligns
            them to the image corner.
        anchor: ``(x, y)`` the working grids are anchored at: the corner of the grid the
            masks are computed on (what :func:`lcgee.gee.cloudmask.mask_codes` pins with an
            explicit ``crsTransform``); None: the CRS origin (Earth Engine's
            ``reproject(crs, scale)`` of a projection without transform).

    Returns:
        ``uint8`` codes: CLOUD = ``dilate(erode(clouds))`` except raw shadow pixels, SHADOW =
        the rest of ``dilate(erode(clouds | shadows))`` (so CLOUD | SHADOW is the tutorial's
        mask), NODATA
        where NIR or probability is missing, CLEAR elsewhere.
    """
    prob, nir, scl = _check_scene(probability, nir, scl)
    _check_params(sun_azimuth, resolution, cld_prb_thresh, nir_drk_thresh, cld_prj_dist, buffer)
    nodata = np.isnan(nir) | ~((prob >= 0) & (prob <= 100))
    clouds = (prob > cld_prb_thresh) & ~nodata
    dark = (nir < nir_drk_thresh) & ~nodata
    if scl is not None:
        dark &= scl != _SCL_WATER
    shadows = _project_clouds(clouds, sun_azimuth, cld_prj_dist, resolution, origin,
                              anchor) & dark
    sampler = _Sampler(clouds.shape, resolution, MORPHOLOGY_SCALE, origin, anchor)
    ignore = sampler.down(nodata, outside=True)
    radius = dilation_radius(buffer, exact_buffer=exact_buffer)
    cloud_final = _open_and_buffer(sampler.down(clouds, outside=False), ignore, radius)
    union = _open_and_buffer(sampler.down(clouds | shadows, outside=False), ignore, radius)
    out = np.full(clouds.shape, CLEAR, dtype=np.uint8)
    out[sampler.up(union)] = SHADOW
    # Dark projected pixels keep the shadow code even inside a cloud's buffer.
    out[sampler.up(cloud_final) & ~(shadows & ~clouds)] = CLOUD
    out[nodata] = NODATA
    return out


def _check_scene(probability: Any, nir: Any, scl: Any) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray | None]:
    prob = np.asarray(probability, dtype=np.float32)
    nir = np.asarray(nir, dtype=np.float32)
    scl = None if scl is None else np.asarray(scl)
    shapes = {"probability": prob.shape, "nir": nir.shape}
    if scl is not None:
        shapes["scl"] = scl.shape
    if nir.ndim != 2 or len(set(shapes.values())) != 1:
        raise DataError(f"expected 2-D arrays of one shape, got {shapes}", where="s2cloudless_mask",
                        fix="pass one scene, all arrays on the same grid")
    sample = nir[:: max(1, nir.shape[0] // 64), :: max(1, nir.shape[1] // 64)]
    if np.any(np.isfinite(sample)) and np.nanmedian(sample) > 2.0:
        raise DataError("nir looks like digital numbers, not reflectance",
                        where="s2cloudless_mask",
                        fix="pass harmonized B8 divided by 10000 (NaN for nodata)")
    return prob, nir, scl


def _check_params(sun_azimuth: float, resolution: float, cld_prb_thresh: float,
                  nir_drk_thresh: float, cld_prj_dist: float, buffer: float) -> None:
    checks = [
        ("sun_azimuth", sun_azimuth, math.isfinite(sun_azimuth), "a finite angle in degrees"),
        ("resolution", resolution, resolution > 0, "positive metres"),
        ("cld_prb_thresh", cld_prb_thresh, 0 <= cld_prb_thresh <= 100, "within 0-100"),
        ("nir_drk_thresh", nir_drk_thresh, nir_drk_thresh > 0, "a positive reflectance"),
        ("cld_prj_dist", cld_prj_dist, cld_prj_dist >= 0, "kilometres >= 0"),
        ("buffer", buffer, buffer >= 0, "metres >= 0"),
    ]
    for name, value, ok, allowed in checks:
        if not ok:
            raise ParamsError(f"{name}={value!r} is out of range", where="clouds",
                              fix=f"use {allowed}")


# ---- Sen2Cor SCL ---------------------------------------------------------------------------
def scl_mask(scl: ArrayLike) -> np.ndarray:
    """Mask codes from Sen2Cor SCL classes (already on the grid).

    CLOUD for 8, 9 (cloud medium / high probability) and 10 (thin cirrus); SHADOW for 3;
    NODATA for 0 (no data), 1 (saturated or defective) and NaN; CLEAR for the rest.
    """
    scl = np.asarray(scl)
    out = np.full(scl.shape, CLEAR, dtype=np.uint8)
    out[np.isin(scl, (8, 9, 10))] = CLOUD
    out[scl == 3] = SHADOW
    nodata = np.isin(scl, (0, 1))
    if np.issubdtype(scl.dtype, np.floating):
        nodata |= np.isnan(scl)
    out[nodata] = NODATA
    return out


# ---- time series wrappers ------------------------------------------------------------------
_MASK_ATTRS = {"flag_values": [CLEAR, CLOUD, SHADOW, NODATA],
               "flag_meanings": "clear cloud shadow nodata"}
_DIMS = ("time", "y", "x")


def local_masks(
    probability: xr.DataArray,
    nir: xr.DataArray,
    scl: xr.DataArray | None = None,
    *,
    sun_azimuth: Sequence[float] | np.ndarray | xr.DataArray,
    resolution: float,
    tile: int | None = None,
    **params: Any,
) -> xr.DataArray:
    """:func:`s2cloudless_mask` over a ``(time, y, x)`` series; lazy when inputs are Dask.

    With ``tile`` (px) and Dask inputs, each scene is processed in ``tile`` x ``tile`` blocks
    with a halo wide enough for the shadow projection and the morphology
    (:func:`halo_pixels`), so memory is bounded by the tile, not by the scene; results equal
    whole-scene processing. Without ``tile``:

    Each scene is one task: the inputs are rechunked to ``time=1`` and whole ``y``/``x``
    (the projection and morphology need neighbours up to ``cld_prj_dist`` + 2 x ``buffer``
    away), so memory is bounded by one scene, not by the length of the series. The working
    grids are anchored at the arrays' top-left corner (``anchor``; pass ``anchor=`` to
    choose another, e.g. ``None`` for the CRS origin) when ``x``/``y`` coordinates are pixel
    centres spaced by ``resolution``; otherwise to the image corner. ``params`` are the keyword arguments of
    :func:`s2cloudless_mask` (e.g. ``**AGGRESSIVE``).
    """
    arrays = [_as_series(a, name) for a, name in ((probability, "probability"), (nir, "nir"),
                                                  (scl, "scl")) if a is not None]
    try:
        xr.align(*arrays, join="exact")
    except ValueError as exc:
        raise DataError(f"probability, nir and scl are not on the same grid and dates ({exc})",
                        where="local_masks",
                        fix="load them on one Grid and select the same scenes, in order") from exc
    azimuth = _azimuth_series(sun_azimuth, arrays[1])
    origin = _origin(arrays[1], resolution)
    params = {"anchor": origin, **params}  # working grids anchored at the arrays' corner
    if tile is not None and origin is not None and any(a.chunks is not None for a in arrays):
        mask = _tiled_masks(arrays, azimuth, tile=tile, origin=origin, resolution=resolution,
                            has_scl=scl is not None, params=params)
    else:
        if any(a.chunks is not None for a in arrays):
            arrays = [a.chunk({"time": 1, "y": -1, "x": -1}) for a in arrays]
            azimuth = azimuth.chunk({"time": 1})
        func = partial(_series_block, has_scl=scl is not None, resolution=resolution,
                       origin=origin, **params)
        mask = xr.apply_ufunc(
            func, *arrays, azimuth,
            input_core_dims=[["y", "x"]] * len(arrays) + [[]],
            output_core_dims=[["y", "x"]],
            dask="parallelized", output_dtypes=[np.uint8],
        )
    attrs = {**_MASK_ATTRS, "source": "s2cloudless", "resolution": resolution,
             **{k: v for k, v in params.items() if v is not None}}
    return mask.transpose(*_DIMS).rename("cloud_mask").assign_attrs(attrs)


def halo_pixels(resolution: float, *, cld_prj_dist: float = 1.0, buffer: float = 50,
                exact_buffer: bool = False, **_: Any) -> int:
    """Pixels of context a tile needs so that tiled masks equal whole-scene masks.

    The shadow search reaches ``cld_prj_dist`` km plus one 100 m pixel; erosion and dilation
    reach their radii in 20 m pixels, plus one 20 m pixel of sampling slack each.
    """
    reach = (cld_prj_dist * 1000 + 2 * PROJECTION_SCALE
             + (EROSION_RADIUS + dilation_radius(buffer, exact_buffer=exact_buffer) + 2)
             * MORPHOLOGY_SCALE * 2)
    return int(math.ceil(reach / resolution))


def _tiled_masks(arrays: list[xr.DataArray], azimuth: xr.DataArray, *, tile: int,
                 origin: Origin, resolution: float, has_scl: bool,
                 params: dict[str, Any]) -> xr.DataArray:
    import dask.array as dsa

    like = arrays[1]
    az = np.asarray(azimuth.values, dtype=np.float64)
    halo = halo_pixels(resolution, **params)
    chunks_y = _tile_chunks(like.sizes["y"], tile, halo)
    chunks_x = _tile_chunks(like.sizes["x"], tile, halo)
    data = [a.chunk({"time": 1, "y": chunks_y, "x": chunks_x}).data for a in arrays]
    halo = min(halo, min(chunks_y), min(chunks_x))  # one-tile axes need no halo
    starts_y = np.concatenate([[0], np.cumsum(chunks_y)[:-1]])
    starts_x = np.concatenate([[0], np.cumsum(chunks_x)[:-1]])

    def block(*blocks: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        it, iy, ix = block_info[0]["chunk-location"]
        row0 = max(0, starts_y[iy] - halo)
        col0 = max(0, starts_x[ix] - halo)
        tile_origin = (origin[0] + col0 * resolution, origin[1] - row0 * resolution)
        return _series_block(*blocks, az[it:it + 1], has_scl=has_scl, resolution=resolution,
                             origin=tile_origin, **params)

    out = dsa.map_overlap(block, *data, depth={0: 0, 1: halo, 2: halo}, boundary="none",
                          dtype=np.uint8, trim=True, allow_rechunk=False)
    return xr.DataArray(out, dims=_DIMS, coords=like.coords)


def _tile_chunks(size: int, tile: int, halo: int) -> tuple[int, ...]:
    """Chunk sizes of about ``tile`` along an axis, none smaller than ``halo`` (if possible)."""
    tile = max(tile, halo)
    chunks = [tile] * (size // tile)
    rest = size - sum(chunks)
    if rest:
        if chunks and rest < halo:
            chunks[-1] += rest
        else:
            chunks.append(rest)
    return tuple(chunks)


def _series_block(*arrays: np.ndarray, has_scl: bool, **kwargs: Any) -> np.ndarray:
    """Apply :func:`s2cloudless_mask` to each scene of a ``(t, y, x)`` block."""
    azimuth = np.atleast_1d(arrays[-1])
    prob, nir = arrays[0], arrays[1]
    scl = arrays[2] if has_scl else None
    out = np.empty(nir.shape, dtype=np.uint8)
    for t in range(nir.shape[0]):
        out[t] = s2cloudless_mask(prob[t], nir[t], None if scl is None else scl[t],
                                  sun_azimuth=float(azimuth[t]), **kwargs)
    return out


def _as_series(array: xr.DataArray, name: str) -> xr.DataArray:
    if not isinstance(array, xr.DataArray) or set(array.dims) != set(_DIMS):
        dims = getattr(array, "dims", type(array).__name__)
        raise DataError(f"{name} must be a DataArray with dims {_DIMS}, got {dims}",
                        where="local_masks")
    return array.transpose(*_DIMS)


def _azimuth_series(sun_azimuth: Any, like: xr.DataArray) -> xr.DataArray:
    values = np.asarray(getattr(sun_azimuth, "values", sun_azimuth), dtype=np.float64).ravel()
    if values.size != like.sizes["time"] or not np.all(np.isfinite(values)):
        raise ParamsError(f"sun_azimuth needs one finite value per scene "
                          f"({like.sizes['time']}), got {values.size}", where="local_masks",
                          fix="pass the scenes' mean solar azimuth (s2:mean_solar_azimuth)")
    return xr.DataArray(values, dims=["time"], coords={"time": like["time"]}
                        if "time" in like.coords else None)


def _origin(array: xr.DataArray, resolution: float) -> Origin | None:
    """Top-left corner from pixel-centre coordinates, if they match ``resolution``."""
    if "x" not in array.coords or "y" not in array.coords or min(array.shape[1:]) < 2:
        return None
    xs, ys = np.asarray(array["x"], dtype=float), np.asarray(array["y"], dtype=float)
    dx, dy = np.diff(xs), np.diff(ys)
    tol = 1e-6 * resolution
    if np.allclose(dx, resolution, atol=tol) and np.allclose(dy, -resolution, atol=tol):
        return float(xs[0] - resolution / 2), float(ys[0] + resolution / 2)
    return None


def scl_masks(scl: xr.DataArray) -> xr.DataArray:
    """:func:`scl_mask` over a DataArray (any dims, lazy when Dask-backed)."""
    mask = xr.apply_ufunc(scl_mask, scl, dask="parallelized", output_dtypes=[np.uint8])
    return mask.rename("cloud_mask").assign_attrs({**_MASK_ATTRS, "source": "scl"})


def apply_mask(stack: xr.DataArray, mask: xr.DataArray) -> xr.DataArray:
    """``stack`` (e.g. ``(time, band, y, x)``) with NaN wherever ``mask`` is not CLEAR."""
    missing = set(mask.dims) - set(stack.dims)
    if missing:
        raise DataError(f"mask dims {mask.dims} are not all in the stack's {stack.dims}",
                        where="apply_mask", fix="build the mask on the stack's grid and dates")
    return stack.where(mask == CLEAR)


# ---- evaluation ----------------------------------------------------------------------------
def mask_quality(mask: ArrayLike, truth_cloud: ArrayLike, truth_shadow: ArrayLike,
                 valid: ArrayLike | None = None) -> dict[str, dict[str, float]]:
    """Precision, recall, balanced accuracy of a mask against boolean truths.

    Pixels that are NODATA in ``mask`` or False in ``valid`` are left out. Each of ``cloud``,
    ``shadow`` and ``cloud_or_shadow`` is scored as its own binary problem (a true cloud called
    SHADOW is a cloud miss and a shadow false alarm, but a hit for ``cloud_or_shadow``).
    Ratios with an empty denominator are NaN.
    """
    mask = np.asarray(mask)
    cloud, shadow = np.asarray(truth_cloud, bool), np.asarray(truth_shadow, bool)
    if not mask.shape == cloud.shape == shadow.shape:
        raise DataError(f"shapes differ: mask {mask.shape}, truth {cloud.shape}/{shadow.shape}",
                        where="mask_quality")
    keep = mask != NODATA
    if valid is not None:
        keep &= np.asarray(valid, bool)
    pairs = {
        "cloud": (mask == CLOUD, cloud),
        "shadow": (mask == SHADOW, shadow),
        "cloud_or_shadow": ((mask == CLOUD) | (mask == SHADOW), cloud | shadow),
    }
    return {name: _binary_scores(pred[keep], truth[keep]) for name, (pred, truth) in pairs.items()}


def _binary_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    tn = int(np.count_nonzero(~pred & ~truth))
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": tp + fp + fn + tn,
        "precision": _ratio(tp, tp + fp), "recall": recall, "specificity": specificity,
        "balanced_accuracy": (recall + specificity) / 2,
    }


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan
