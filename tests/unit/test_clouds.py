"""Tests of lcgee.clouds on synthetic scenes with known cloud/sun geometry (10 m pixels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from lcgee import clouds
from lcgee.clouds import AGGRESSIVE, CLEAR, CLOUD, NODATA, SHADOW, TUTORIAL, MaskCode
from lcgee.errors import DataError, ParamsError

RES = 10.0
BRIGHT, DARK = 0.30, 0.05


def blank(n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clear, bright, land scene: probability, nir, scl."""
    return (np.zeros((n, n), np.float32), np.full((n, n), BRIGHT, np.float32),
            np.full((n, n), 4, np.uint8))


def square(a: np.ndarray, row: int, col: int, size: int, value: float) -> None:
    a[row:row + size, col:col + size] = value


def run(prob, nir, scl, azimuth, **kw):
    return clouds.s2cloudless_mask(prob, nir, scl, sun_azimuth=azimuth, resolution=RES, **kw)


# ---- geometry ------------------------------------------------------------------------------
def test_geometric_shadow_found_on_anti_solar_side_only():
    # Cloud 1000 m high, sun at zenith 30 deg in the south-east: the shadow falls
    # 1000 * tan(30 deg) = 577 m to the north-west, i.e. 40.8 px up and 40.8 px left.
    prob, nir, scl = blank(320)
    square(prob, 200, 200, 30, 90)
    shift = round(1000 * math.tan(math.radians(30)) / math.sqrt(2) / RES)
    square(nir, 200 - shift, 200 - shift, 30, DARK)  # the real shadow
    square(nir, 200 + shift, 200 + shift, 30, DARK)  # a dark field on the sun side
    mask = run(prob, nir, scl, 135.0)
    shadow = mask[200 - shift:230 - shift, 200 - shift:230 - shift]
    assert np.all(shadow[5:25, 5:25] == SHADOW)
    assert np.mean(shadow == SHADOW) > 0.9
    assert np.all(mask[205:225, 205:225] == CLOUD)
    assert np.all(mask[200 + shift + 10:230 + shift, 200 + shift + 10:230 + shift] == CLEAR)
    # SHADOW only around the real shadow (which the buffer widens by at most 100 m)
    rows, cols = np.nonzero(mask == SHADOW)
    lo, hi = 200 - shift - 10, 230 - shift + 10
    assert rows.min() >= lo and rows.max() < hi and cols.min() >= lo and cols.max() < hi


@pytest.mark.parametrize(
    ("azimuth", "shadow_at", "sunny_at"),
    [
        (135.0, (90, 90), (194, 194)),    # sun south-east: shadow north-west
        (45.0, (194, 90), (90, 194)),     # sun north-east: shadow south-west
        (225.0, (90, 194), (194, 90)),    # sun south-west: shadow north-east
        (180.0, (90, 142), (194, 142)),   # sun south: shadow north
        (90.0, (142, 90), (142, 194)),    # sun east: shadow west
    ],
)
def test_azimuth_convention_hard_coded(azimuth, shadow_at, sunny_at):
    prob, nir, scl = blank()
    square(prob, 140, 140, 20, 100)  # cloud centre (150, 150)
    square(nir, *shadow_at, 16, DARK)
    square(nir, *sunny_at, 16, DARK)
    mask = run(prob, nir, scl, azimuth)
    assert mask[shadow_at[0] + 8, shadow_at[1] + 8] == SHADOW
    assert np.all(mask[sunny_at[0]:sunny_at[0] + 16, sunny_at[1]:sunny_at[1] + 16] == CLEAR)


@pytest.mark.parametrize("azimuth", [20.0, 100.0, 160.0, 250.0, 300.0, 340.0])
def test_azimuth_convention_any_angle(azimuth):
    prob, nir, scl = blank()
    square(prob, 140, 140, 20, 100)
    east, north = math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))
    dist = 50  # px, 500 m
    anti = (round(150 + dist * north) - 8, round(150 - dist * east) - 8)   # rows go south
    sunny = (round(150 - dist * north) - 8, round(150 + dist * east) - 8)
    square(nir, *anti, 16, DARK)
    square(nir, *sunny, 16, DARK)
    mask = run(prob, nir, scl, azimuth)
    assert mask[anti[0] + 8, anti[1] + 8] == SHADOW
    assert np.all(mask[sunny[0]:sunny[0] + 16, sunny[1]:sunny[1] + 16] == CLEAR)


def test_no_shadow_beyond_projection_distance():
    prob, nir, scl = blank(320)
    square(prob, 240, 240, 20, 100)
    square(nir, 136, 136, 16, DARK)  # >= 1.24 km north-west of every cloud pixel
    patch = (slice(136, 152), slice(136, 152))
    assert np.all(run(prob, nir, scl, 135.0, cld_prj_dist=1)[patch] == CLEAR)
    assert run(prob, nir, scl, 135.0, cld_prj_dist=2)[144, 144] == SHADOW
    assert run(prob, nir, scl, 135.0, **AGGRESSIVE)[144, 144] == SHADOW


def test_water_is_never_dark():
    prob, nir, scl = blank()
    square(prob, 140, 140, 20, 100)
    square(nir, 90, 90, 16, DARK)
    assert run(prob, nir, scl, 135.0)[98, 98] == SHADOW
    assert run(prob, nir, None, 135.0)[98, 98] == SHADOW
    square(scl, 90, 90, 16, 6)
    assert np.all(run(prob, nir, scl, 135.0)[90:106, 90:106] == CLEAR)


def test_bright_pixels_are_never_shadow():
    prob, nir, scl = blank()
    square(prob, 140, 140, 20, 100)
    assert np.count_nonzero(run(prob, nir, scl, 135.0) == SHADOW) == 0


# ---- morphology ----------------------------------------------------------------------------
def test_erosion_removes_isolated_cloud_pixels():
    prob, nir, scl = blank()
    for r in range(10, 290, 30):
        for c in range(10, 290, 30):
            prob[r, c] = 100
    square(prob, 50, 200, 3, 100)  # a 3 x 3 speck (60 m) is still too small
    assert np.all(run(prob, nir, scl, 135.0) == CLEAR)
    square(prob, 150, 150, 30, 100)
    assert np.count_nonzero(run(prob, nir, scl, 135.0) == CLOUD) > 900


def measured_dilation_m(**kw) -> float:
    """Dilation radius from the growth of a 400 m square: growth + the 40 m erosion."""
    prob, nir, scl = blank()
    square(prob, 100, 100, 40, 100)
    mask = run(prob, nir, scl, 135.0, **kw)
    width_px = np.count_nonzero(mask[120] == CLOUD)
    height_px = np.count_nonzero(mask[:, 120] == CLOUD)
    assert width_px == height_px
    return (width_px - 40) / 2 * RES + 40.0


@pytest.mark.parametrize(
    ("buffer", "exact", "expected_m"),
    [(50, False, 100.0), (100, False, 200.0), (100, True, 100.0), (60, True, 60.0)],
)
def test_dilation_radius(buffer, exact, expected_m):
    assert measured_dilation_m(buffer=buffer, exact_buffer=exact) == expected_m
    assert clouds.dilation_radius(buffer, exact_buffer=exact) * 20 == expected_m


# ---- equivalence with a straightforward reference ------------------------------------------
def disk(radius: float) -> np.ndarray:
    r = math.floor(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy ** 2 + xx ** 2 <= radius ** 2 + 1e-9


def reference_masks(prob, nir, scl, azimuth, *, thr=50, drk=0.15, dist_km=1.0, buffer=50):
    """The tutorial step by step, for a scene whose corner lies on the 100 m grid."""
    cloud = prob > thr
    dark = (nir < drk) & (scl != 6)
    c100 = cloud[5::10, 5::10]  # pixel under each 100 m centre (centres on edges: east/south)
    a = math.radians(90 - azimuth)
    proj100 = np.zeros_like(c100)
    for i in range(c100.shape[0]):
        for j in range(c100.shape[1]):
            for k in range(int(dist_km * 10) + 1):
                r, c = i - int(np.rint(k * math.sin(a))), j + int(np.rint(k * math.cos(a)))
                if 0 <= r < c100.shape[0] and 0 <= c < c100.shape[1] and c100[r, c]:
                    proj100[i, j] = True
    proj = np.repeat(np.repeat(proj100, 10, 0), 10, 1)
    shadows = proj & dark

    def morph(x):
        x20 = x[1::2, 1::2]
        x20 = ndimage.binary_erosion(x20, disk(2), border_value=1)
        x20 = ndimage.binary_dilation(x20, disk(buffer * 2 / 20))
        return np.repeat(np.repeat(x20, 2, 0), 2, 1)

    # Raw shadow pixels keep the shadow code inside a cloud's buffer.
    return morph(cloud) & ~(shadows & ~cloud), morph(cloud | shadows)


def random_scene(n=200, seed=0):
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((n, n)), 6)
    prob = (prob - prob.min()) / np.ptp(prob) * 100
    nir = ndimage.gaussian_filter(rng.random((n, n)), 3)
    nir = (0.05 + 0.2 * (nir - nir.min()) / np.ptp(nir)).astype(np.float32)
    scl = np.where(rng.random((n, n)) < 0.05, 6, 4).astype(np.uint8)
    return prob.astype(np.float32), nir, scl


@pytest.mark.parametrize(("azimuth", "seed"), [(135.0, 0), (160.0, 1), (250.0, 2)])
def test_union_equals_tutorial_mask(azimuth, seed):
    prob, nir, scl = random_scene(seed=seed)
    mask = run(prob, nir, scl, azimuth, origin=(500000.0, 4000000.0))
    ref_cloud, ref_union = reference_masks(prob, nir, scl, azimuth)
    assert ref_union.any() and (ref_union & ~ref_cloud).any() and not ref_union.all()
    np.testing.assert_array_equal((mask == CLOUD) | (mask == SHADOW), ref_union)
    np.testing.assert_array_equal(mask == CLOUD, ref_cloud)


def test_origin_alignment():
    prob, nir, scl = random_scene(seed=3)
    plain = run(prob, nir, scl, 150.0)
    assert np.array_equal(plain, run(prob, nir, scl, 150.0, origin=(300000.0, 5000000.0)))
    shifted = run(prob, nir, scl, 150.0, origin=(300030.0, 5000020.0))
    assert not np.array_equal(plain, shifted)  # other 100 m / 20 m grids
    assert np.mean(plain == shifted) > 0.8


def test_nodata():
    prob, nir, scl = blank()
    nir[:10] = np.nan
    prob[:, :5] = 255  # a fill value
    mask = run(prob, nir, scl, 135.0)
    assert np.all(mask[:10] == NODATA) and np.all(mask[:, :5] == NODATA)
    assert np.all(mask[10:, 5:] == CLEAR)


def test_bad_inputs():
    prob, nir, scl = blank(50)
    with pytest.raises(DataError, match="reflectance"):
        run(prob, nir * 10000, scl, 135.0)
    with pytest.raises(DataError, match="shape"):
        run(prob[:40], nir, scl, 135.0)
    with pytest.raises(ParamsError, match="cld_prb_thresh"):
        run(prob, nir, scl, 135.0, cld_prb_thresh=150)
    with pytest.raises(ParamsError, match="sun_azimuth"):
        run(prob, nir, scl, math.nan)


def test_presets():
    assert dict(TUTORIAL) == {"cloud_filter": 60, "cld_prb_thresh": 50, "nir_drk_thresh": 0.15,
                              "cld_prj_dist": 1, "buffer": 50}
    assert dict(AGGRESSIVE) == {"cloud_filter": 60, "cld_prb_thresh": 40,
                                "nir_drk_thresh": 0.15, "cld_prj_dist": 2, "buffer": 100}
    assert clouds.PRESETS["tutorial"] is TUTORIAL and clouds.PRESETS["aggressive"] is AGGRESSIVE
    assert [int(c) for c in MaskCode] == [CLEAR, CLOUD, SHADOW, NODATA] == [0, 1, 2, 255]


# ---- SCL, quality, wrappers ----------------------------------------------------------------
def test_scl_mask_codes():
    scl = np.arange(12, dtype=np.uint8)
    expected = [NODATA, NODATA, CLEAR, SHADOW, CLEAR, CLEAR, CLEAR, CLEAR,
                CLOUD, CLOUD, CLOUD, CLEAR]
    assert clouds.scl_mask(scl).tolist() == expected
    assert clouds.scl_mask(np.array([np.nan, 3.0])).tolist() == [NODATA, SHADOW]
    assert clouds.scl_mask(scl).dtype == np.uint8


def test_mask_quality_by_hand():
    mask = np.array([CLOUD, CLOUD, SHADOW, CLEAR, CLEAR, SHADOW, NODATA, CLOUD], np.uint8)
    cloud = np.array([1, 0, 1, 0, 1, 0, 1, 1], bool)
    shadow = np.array([0, 0, 0, 1, 0, 1, 0, 0], bool)
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    q = clouds.mask_quality(mask, cloud, shadow, valid)
    # kept: pixels 0-5. cloud: pred 1 1 0 0 0 0, truth 1 0 1 0 1 0
    c = q["cloud"]
    assert (c["tp"], c["fp"], c["fn"], c["tn"], c["n"]) == (1, 1, 2, 2, 6)
    assert c["precision"] == 0.5 and c["recall"] == pytest.approx(1 / 3)
    assert c["balanced_accuracy"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    # shadow: pred 0 0 1 0 0 1, truth 0 0 0 1 0 1
    s = q["shadow"]
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 1, 3)
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 0.75) / 2)
    # either: pred 1 1 1 0 0 1, truth 1 0 1 1 1 1
    e = q["cloud_or_shadow"]
    assert (e["tp"], e["fp"], e["fn"], e["tn"]) == (3, 1, 2, 0)
    assert math.isnan(e["specificity"]) is False and e["specificity"] == 0.0
    assert math.isnan(clouds.mask_quality(mask[:1], cloud[:1], shadow[:1])["shadow"]["recall"])


def series(n_time=3, n=120):
    scenes = [random_scene(n, seed=10 + t) for t in range(n_time)]
    coords = {"time": np.arange(n_time), "y": 4000000.0 - RES * (np.arange(n) + 0.5),
              "x": 500030.0 + RES * (np.arange(n) + 0.5)}
    def da(i, dtype):
        return xr.DataArray(np.stack([s[i] for s in scenes]).astype(dtype),
                            dims=("time", "y", "x"), coords=coords)
    return da(0, np.float32), da(1, np.float32), da(2, np.uint8)


def test_local_masks_dask_equals_numpy():
    prob, nir, scl = series()
    azimuths = [120.0, 150.0, 210.0]
    lazy = clouds.local_masks(prob.chunk({"time": 2, "y": 60, "x": 60}),
                              nir.chunk({"time": 1, "y": 60}), scl.chunk({"time": 3}),
                              sun_azimuth=azimuths, resolution=RES, **AGGRESSIVE)
    assert lazy.chunks is not None and lazy.chunks[0] == (1, 1, 1)
    assert lazy.dims == ("time", "y", "x") and lazy.dtype == np.uint8
    result = lazy.compute()
    for t, az in enumerate(azimuths):
        expected = clouds.s2cloudless_mask(prob.values[t], nir.values[t], scl.values[t],
                                           sun_azimuth=az, resolution=RES,
                                           origin=(500030.0, 4000000.0),
                                           anchor=(500030.0, 4000000.0), **AGGRESSIVE)
        np.testing.assert_array_equal(result.values[t], expected)
    eager = clouds.local_masks(prob, nir, None, sun_azimuth=azimuths, resolution=RES)
    assert eager.chunks is None and eager.shape == prob.shape
    with pytest.raises(DataError, match="same grid and dates"):
        clouds.local_masks(prob, nir.assign_coords(time=[0, 1, 5]), sun_azimuth=azimuths,
                           resolution=RES)
    with pytest.raises(ParamsError, match="one finite value per scene"):
        clouds.local_masks(prob, nir, scl, sun_azimuth=[1.0], resolution=RES)


def test_scl_masks_and_apply_mask():
    scl = xr.DataArray(np.array([[[0, 3], [8, 4]]], np.uint8), dims=("time", "y", "x"))
    mask = clouds.scl_masks(scl.chunk())
    assert mask.values.tolist() == [[[NODATA, SHADOW], [CLOUD, CLEAR]]]
    stack = xr.DataArray(np.ones((1, 2, 2, 2), np.float32), dims=("time", "band", "y", "x"))
    out = clouds.apply_mask(stack, mask)
    assert out.dims == stack.dims
    assert np.isnan(out.values[0, :, 0, 0]).all() and np.isnan(out.values[0, :, 1, 0]).all()
    assert (out.values[0, :, 1, 1] == 1).all() and np.isnan(out.values[0, :, 0, 1]).all()


@pytest.mark.parametrize("params", [clouds.TUTORIAL, clouds.AGGRESSIVE])
def test_tiled_masks_equal_whole_scene_masks(params):
    """Tiles with a halo give the whole-scene result, so memory is bounded by the tile."""
    scenes = [random_scene(n=600, seed=s) for s in (3, 4)]
    res = 10.0
    coords = {"time": np.array(["2021-05-01", "2021-06-01"], dtype="datetime64[ns]"),
              "y": 4000000.0 - res * (np.arange(600) + 0.5) - 30.0,
              "x": 500000.0 + res * (np.arange(600) + 0.5) + 70.0}

    def series(i):
        return xr.DataArray(np.stack([s[i] for s in scenes]), dims=("time", "y", "x"),
                            coords=coords).chunk({"time": 1, "y": 128, "x": 128})

    prob, nir, scl = series(0), series(1), series(2)
    whole = clouds.local_masks(prob, nir, scl, sun_azimuth=[140.0, 230.0], resolution=res,
                               **params).values
    tiled = clouds.local_masks(prob, nir, scl, sun_azimuth=[140.0, 230.0], resolution=res,
                               tile=128, **params)
    assert len(tiled.chunks[1]) > 1 and len(tiled.chunks[2]) > 1  # really tiled
    np.testing.assert_array_equal(tiled.values, whole)
    assert (whole == clouds.SHADOW).any() and (whole == clouds.CLOUD).any()
