"""The one-pass median composite (lcgee.onepass), the exact disk dilation (lcgee.morphology)
and the windowed computes (lcgee.stream) give exactly what the code they replace gave."""

from __future__ import annotations

import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from lcgee import clouds, composite, features, load, masks, onepass
from lcgee.morphology import dilate_disk
from lcgee.params import load_params
from lcgee.stream import compute_each


def _reference(dn: np.ndarray, mask: np.ndarray, offset: np.ndarray):
    """The former path: reflectance stack, NaN under the mask, composite.median + valid_count."""
    n_band = dn.shape[0]
    ds = xr.Dataset({f"B{b}": (("time", "y", "x"), dn[b]) for b in range(n_band)},
                    coords={"offset": ("time", offset)})
    stack = load.reflectance(ds, [f"B{b}" for b in range(n_band)])
    stack = clouds.apply_mask(stack, xr.DataArray(mask, dims=("time", "y", "x")))
    return composite.median(stack).values, composite.valid_count(stack).values


@pytest.mark.parametrize("n_time", [1, 2, 7, 8, 9, 24, 70])
def test_median_from_dn_equals_the_masked_reflectance_median(n_time):
    """Bit for bit, on odd and even counts, all-invalid pixels, DN 0, DN below the offset,
    every mask code, and time axes that are not a multiple of 8 (the valid-time bits)."""
    rng = np.random.default_rng(n_time)
    n_band, h, w = 3, 19, 23
    dn = rng.integers(0, 12000, (n_band, n_time, h, w)).astype(np.uint16)
    dn[rng.random(dn.shape) < 0.1] = 0
    dn[rng.random(dn.shape) < 0.05] = 900  # below the +1000 offset: clipped to 0
    dn[:, :, 0, 0] = 0  # never valid
    mask = rng.choice(np.array([0, 0, 0, 1, 2, 255], np.uint8), (n_time, h, w))
    offset = rng.random(n_time) < 0.5
    expected, expected_count = _reference(dn, mask, offset)
    lazy = [da.from_array(dn[b], chunks=(-1, 8, 10)) for b in range(n_band)]
    got, count = onepass.median_from_dn(lazy, da.from_array(mask, chunks=(-1, 8, 10)), offset)
    got, count = dask.compute(got, count)
    assert got.dtype == np.float32 and count.dtype == np.uint16
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(count, expected_count)
    assert np.isnan(got[:, 0, 0]).all() and count[0, 0] == 0


def test_build_composite_equals_the_reflectance_path(small_search, small_world, tmp_path):
    """On the small demo world, all scenes (some in another UTM zone, read through odc-stac),
    an uneven tiling: features and count equal those of the masked reflectance stack."""
    client, items = small_search
    grid = small_world.grid.window(0, 0, 300, 260)
    params = load_params("params/demo.yaml", {"load.chunk": 128, "clouds.source": "local"})
    got = masks.scene_masks(items, grid, params.clouds, client=client, chunk=128)
    masks.write_masks(got, grid, tmp_path / "masks", key="k", progress=False)
    result = features.build_composite(items, _table(items), grid, params, client=client,
                                      masks_dir=tmp_path / "masks")
    assert any(str(k).startswith("lcgee-onepass-") for k in result.features.data.dask.layers)
    ds = load.load_stack(items, grid, list(params.features.bands), chunk=128, time_chunk=-1)
    stack = load.reflectance(ds, list(params.features.bands))
    mask = masks.read_masks(tmp_path / "masks", [it.id for it in items], chunk=128)
    mask = mask.assign_coords(time=stack["time"].values, y=stack["y"], x=stack["x"])
    ref = features.features_from_stack(clouds.apply_mask(stack, mask), "median",
                                       index_names=params.features.indices)
    assert list(result.features["band"].values) == list(ref.features["band"].values)
    np.testing.assert_array_equal(result.features.values.view(np.uint32),
                                  ref.features.values.view(np.uint32))
    np.testing.assert_array_equal(result.count.values, ref.count.values)
    np.testing.assert_array_equal(result.features["x"].values, ref.features["x"].values)


def test_a_missing_mask_is_named(small_search, small_world, tmp_path):
    from lcgee.errors import DataError

    client, items = small_search
    params = load_params("params/demo.yaml", {"load.chunk": 128})
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"no cloud mask for .* run the 02_clouds stage"):
        features.build_composite(items[:2], _table(items[:2]), small_world.grid, params,
                                 client=client, masks_dir=tmp_path / "masks")


def _table(items):
    from lcgee.scenes import scene_table

    return scene_table(items)


@pytest.mark.parametrize("radius", [0.5, 1, 1.5, 2, 2.5, 5, 2 ** 0.5, 7.5])
def test_dilate_disk_equals_the_distance_transform(radius):
    rng = np.random.default_rng(int(radius * 10))
    for _ in range(60):
        h, w = rng.integers(1, 45, 2)
        image = rng.random((h, w)) < rng.choice([0.002, 0.02, 0.2, 0.8])
        if not image.any() or image.all():
            continue
        expected = ndimage.distance_transform_edt(~image) <= radius + 1e-9
        np.testing.assert_array_equal(dilate_disk(image, radius, 1e-9), expected)


def test_compute_each_bounds_what_runs_and_consumes_in_the_calling_thread():
    running, peak, lock = [0], [0], threading.Lock()

    def slow(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return np.full(2, i)

    pieces = [[da.from_delayed(dask.delayed(slow)(i), (2,), int)] for i in range(7)]
    got, threads = {}, set()

    def consume(i, values):
        threads.add(threading.get_ident())
        got[i] = values[0]

    compute_each(pieces, consume, window=2)
    assert sorted(got) == list(range(7))
    assert all((got[i] == i).all() for i in got)
    assert threads == {threading.get_ident()}
    assert 2 <= peak[0] <= 2 * 2  # two pieces at once (each on the threaded scheduler)


def test_compute_each_raises_a_failing_piece():
    def boom():
        raise ValueError("tile 3 failed")

    pieces = [[da.from_delayed(dask.delayed(boom)(), (1,), int)]]
    with pytest.raises(ValueError, match="tile 3 failed"):
        compute_each(pieces, lambda i, v: None)


def test_compute_each_on_a_distributed_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster):
        pieces = [[da.arange(10, chunks=3) * i, da.ones(4, chunks=2) + i] for i in range(5)]
        got = {}
        compute_each(pieces, lambda i, v: got.__setitem__(i, v), window=2)
    assert sorted(got) == list(range(5))
    for i, (a, b) in got.items():
        np.testing.assert_array_equal(a, np.arange(10) * i)
        np.testing.assert_array_equal(b, np.ones(4) + i)
