"""Tests for lcgee.composite against NumPy and straightforward loop references."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from lcgee import composite as lc
from lcgee.errors import DataError, ParamsError

# ---- helpers --------------------------------------------------------------------------------


def np_nanmedian(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice encountered"
        return np.nanmedian(a, axis=0)


def assert_identical(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, same NaN positions, and the same bits everywhere else (incl. sign of zero)."""
    assert got.dtype == want.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok].view(np.uint32), want[ok].view(np.uint32))


def kernel_data(seed: int, n_time: int, n_cols: int = 3000) -> np.ndarray:
    """(T, n_cols) float32 mixing regimes; column j has j % (T + 1) NaNs (every count, all-NaN)."""
    rng = np.random.default_rng(seed)
    regimes = [
        rng.random((n_time, n_cols)),  # reflectance-like
        rng.integers(-3, 4, (n_time, n_cols)) / 2,  # many ties, signed zeros below
        rng.standard_normal((n_time, n_cols)) * 10.0 ** rng.integers(-30, 38, (n_time, n_cols)),
    ]
    a = np.choose(rng.integers(0, 3, n_cols), regimes).astype(np.float32)
    a[rng.random(a.shape) < 0.02] = -0.0
    specials = np.array([np.inf, -np.inf, 3e38, -3e38], np.float32)
    hit = rng.random(a.shape) < 0.01
    a[hit] = rng.choice(specials, hit.sum())
    for j in range(n_cols):
        a[rng.permutation(n_time)[: j % (n_time + 1)], j] = np.nan
    return a


TIMES = np.array(
    [  # unsorted on purpose; March has no scene, June has only invalid pixels at (0, 0)
        "2023-01-03",
        "2023-01-20",
        "2023-02-02",
        "2023-02-14",
        "2023-02-27",
        "2023-04-01",
        "2023-01-28",
        "2023-04-21",
        "2023-05-30",
        "2023-05-02",
        "2023-06-15",
    ],
    dtype="datetime64[ns]",
)


@pytest.fixture
def stack() -> xr.DataArray:
    """(11, 3, 6, 7) float32 with cloud masks, single-band NaNs and one all-NaN pixel."""
    rng = np.random.default_rng(7)
    n_time, n_band, n_y, n_x = TIMES.size, 3, 6, 7
    v = rng.random((n_time, n_band, n_y, n_x), dtype=np.float32)
    v[np.broadcast_to(rng.random((n_time, 1, n_y, n_x)) < 0.35, v.shape)] = np.nan  # clouds
    v[rng.random(v.shape) < 0.05] = np.nan  # single-band gaps
    v[:, :, 0, 0] = np.nan  # never valid
    v[-1, :, 1, 1] = np.nan
    coords = {
        "time": TIMES,
        "band": ["B02", "B03", "B04"],
        "y": 100.0 - 10 * np.arange(n_y),
        "x": 10.0 * np.arange(n_x),
        "spatial_ref": 0,
        "eo:cloud_cover": ("time", np.arange(n_time, dtype=float)),
    }
    return xr.DataArray(v, dims=lc.DIMS, coords=coords, name="refl", attrs={"crs": "EPSG:32633"})


@pytest.fixture
def score(stack: xr.DataArray) -> xr.DataArray:
    rng = np.random.default_rng(8)
    s = rng.integers(0, 4, (stack.sizes["time"], stack.sizes["y"], stack.sizes["x"]))
    s = s.astype(np.float32)  # few distinct values: ties are common
    s[rng.random(s.shape) < 0.1] = np.nan
    return xr.DataArray(
        s, dims=("time", "y", "x"), coords={k: stack[k] for k in ("time", "y", "x")}
    )


def chunked(stack: xr.DataArray) -> xr.DataArray:
    return stack.chunk({"time": 4, "band": 2, "y": 4, "x": 3})


# ---- loop references ------------------------------------------------------------------------


def ref_median(v: np.ndarray) -> np.ndarray:
    out = np.full(v.shape[1:], np.nan, np.float32)
    for idx in np.ndindex(*v.shape[1:]):
        series = v[(slice(None),) + idx]
        vals = np.sort(series[~np.isnan(series)])
        n = vals.size
        if n % 2:
            out[idx] = vals[n // 2]
        elif n:
            out[idx] = (vals[n // 2 - 1] + vals[n // 2]) / np.float32(2)
    return out


def ref_valid(v: np.ndarray) -> np.ndarray:
    return np.array(
        [
            [
                [not np.isnan(v[t, :, y, x]).any() for x in range(v.shape[3])]
                for y in range(v.shape[2])
            ]
            for t in range(v.shape[0])
        ]
    )


def ref_best(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    valid = ref_valid(v)
    out = np.full(v.shape[1:], np.nan, np.float32)
    for y in range(v.shape[2]):
        for x in range(v.shape[3]):
            cands = [
                (s[t, y, x], t)
                for t in range(v.shape[0])
                if valid[t, y, x] and not np.isnan(s[t, y, x])
            ]
            if cands:
                out[:, y, x] = v[min(cands)[1], :, y, x]  # min over (score, time): earliest on ties
    return out


def ref_months(times: np.ndarray) -> dict[str, list[int]]:
    months: dict[str, list[int]] = {}
    for t, value in enumerate(times):
        months.setdefault(str(value)[:7], []).append(t)
    return dict(sorted(months.items()))


# ---- the kernel -----------------------------------------------------------------------------


@pytest.mark.parametrize("n_time", [1, 2, 3, 4, 7, 8, 24, 33, 64, 100])
@pytest.mark.parametrize("seed", range(4))
def test_kernel_identical_to_numpy_nanmedian(seed: int, n_time: int) -> None:
    a = kernel_data(seed, n_time)
    want = np_nanmedian(a)
    assert np.isnan(want).any() and not np.isnan(want).all()
    assert_identical(lc.nanmedian_time(a), want)
    assert_identical(lc.nanmedian_time(a, parallel=False), want)


def test_kernel_follows_numpy_float32_arithmetic() -> None:
    nan = np.nan
    a = np.array(
        [
            [3e38, 3e38, -0.0, -0.0, 1.0, -np.inf, 1.0, nan],
            [nan, 3e38, nan, -0.0, 2.0, np.inf, 2.0, nan],
            [nan, nan, nan, nan, nan, nan, 4.0, nan],
        ],
        np.float32,
    )
    got = lc.nanmedian_time(a)
    # float32 (x + x) / 2 overflows like numpy; numpy's sum starts at +0.0 so -0.0 becomes +0.0
    assert_identical(got, np_nanmedian(a))
    assert got[0] == got[1] == np.inf
    assert not np.signbit(got[2]) and not np.signbit(got[3])
    assert got[4] == 1.5 and np.isnan(got[5]) and got[6] == 2.0 and np.isnan(got[7])


def test_kernel_shapes_and_empty_time() -> None:
    a = kernel_data(0, 5, 60).reshape(5, 3, 4, 5)
    assert_identical(lc.nanmedian_time(a), np_nanmedian(a))
    empty = lc.nanmedian_time(np.empty((0, 2, 3), np.float32))
    assert empty.shape == (2, 3) and np.isnan(empty).all()


# ---- median, count, best, monthly vs references ---------------------------------------------


@pytest.mark.parametrize("lazy", [False, True])
def test_median_matches_reference(stack: xr.DataArray, lazy: bool) -> None:
    out = lc.median(chunked(stack) if lazy else stack)
    assert out.dims == ("band", "y", "x") and out.dtype == np.float32
    assert_identical(out.values, ref_median(stack.values))
    assert_identical(out.values, stack.median("time").values)
    assert np.isnan(out.values[:, 0, 0]).all()


@pytest.mark.parametrize("lazy", [False, True])
def test_valid_count_matches_reference(stack: xr.DataArray, lazy: bool) -> None:
    count = lc.valid_count(chunked(stack) if lazy else stack)
    assert count.dims == ("y", "x") and count.dtype == np.uint16
    want = ref_valid(stack.values).sum(axis=0)
    np.testing.assert_array_equal(count.values, want)
    assert count.values[0, 0] == 0
    # a single NaN band makes the observation invalid: fewer than "any band valid" somewhere
    any_band = (~np.isnan(stack.values)).any(axis=1).sum(axis=0)
    assert (count.values < any_band).any()


@pytest.mark.parametrize("lazy", [False, True])
def test_best_pixel_matches_reference(stack: xr.DataArray, score: xr.DataArray, lazy: bool) -> None:
    out = lc.best_pixel(chunked(stack) if lazy else stack, score.chunk({"y": 2}) if lazy else score)
    assert out.dims == ("band", "y", "x") and out.dtype == np.float32
    assert_identical(out.values, ref_best(stack.values, score.values))
    assert np.isnan(out.values[:, 0, 0]).all()


def test_best_pixel_picks_lowest_score_among_valid_only() -> None:
    nan = np.nan
    # pixel 0: t0 has the lowest score but a NaN band, t1 has a NaN score, t2 and t3 tie -> t2
    # pixel 1: every time has a NaN band or a NaN score -> NaN
    v = np.array(
        [
            [[1.0, 1.0], [nan, nan]],
            [[2.0, 2.0], [2.0, nan]],
            [[3.0, nan], [3.0, 3.0]],
            [[4.0, 4.0], [4.0, 4.0]],
        ],
        np.float32,
    )[:, :, None, :]
    s = np.array([[0.1, 0.0], [nan, 0.0], [0.5, 0.0], [0.5, nan]], np.float32)[:, None, :]
    times = np.arange("2023-01-01", "2023-01-05", dtype="datetime64[D]").astype("datetime64[ns]")
    st = xr.DataArray(v, dims=lc.DIMS, coords={"time": times})
    sc = xr.DataArray(s, dims=("time", "y", "x"), coords={"time": times})
    for stack_, score_ in ((st, sc), (st.chunk({"time": 1}), sc.chunk({"time": 1}))):
        out = lc.best_pixel(stack_, score_).values[:, 0, :]
        np.testing.assert_array_equal(out[:, 0], [3.0, 3.0])
        assert np.isnan(out[:, 1]).all()


@pytest.mark.parametrize("lazy", [False, True])
def test_monthly_median_matches_reference(stack: xr.DataArray, lazy: bool) -> None:
    out = lc.monthly_median(chunked(stack) if lazy else stack)
    months = ref_months(stack["time"].values)
    assert list(months) == ["2023-01", "2023-02", "2023-04", "2023-05", "2023-06"]
    assert out.dims == ("month", "band", "y", "x") and out.dtype == np.float32
    np.testing.assert_array_equal(
        out["month"].values, np.array([m + "-01" for m in months], "datetime64[ns]")
    )
    for i, idx in enumerate(months.values()):
        assert_identical(out.values[i], ref_median(stack.values[idx]))
    assert np.isnan(out.values[:, :, 0, 0]).all()
    assert np.isnan(out.values[-1, :, 1, 1]).all()  # June: its only scene is NaN there


@pytest.mark.parametrize("lazy", [False, True])
def test_composite_monthly_count(stack: xr.DataArray, lazy: bool) -> None:
    ds = lc.composite(chunked(stack) if lazy else stack, "monthly")
    assert ds["count"].dims == ("month", "y", "x") and ds["count"].dtype == np.uint16
    valid = ref_valid(stack.values)
    for i, idx in enumerate(ref_months(stack["time"].values).values()):
        np.testing.assert_array_equal(ds["count"].values[i], valid[idx].sum(axis=0))


# ---- Dask behaviour, metadata, errors -------------------------------------------------------


def test_dask_input_stays_lazy_and_rechunks_time(stack: xr.DataArray, score: xr.DataArray) -> None:
    lazy = chunked(stack)
    assert len(lazy.chunks[0]) > 1
    for out in (
        lc.median(lazy),
        lc.best_pixel(lazy, score),
        lc.monthly_median(lazy),
        lc.valid_count(lazy),
    ):
        assert isinstance(out.data, da.Array)
    med = lc.median(lazy)
    assert med.chunks == lazy.chunks[1:]  # band and spatial tiles kept
    with_numpy = lc.composite(stack, "best", score=score)
    with_dask = lc.composite(lazy, "best", score=score).compute()
    xr.testing.assert_identical(with_dask, with_numpy)


def test_composite_keeps_coords_and_attrs(stack: xr.DataArray, score: xr.DataArray) -> None:
    for method in lc.METHODS:
        ds = lc.composite(stack, method, score=score)  # type: ignore[arg-type]
        assert set(ds.data_vars) == {"composite", "count"}
        img = ds["composite"]
        assert img.attrs["crs"] == "EPSG:32633" and ds.attrs["composite_method"] == method
        assert list(img["band"].values) == ["B02", "B03", "B04"]
        np.testing.assert_array_equal(img["y"].values, stack["y"].values)
        assert "spatial_ref" in img.coords and "eo:cloud_cover" not in img.coords
        assert "time" not in img.dims


def test_transposed_and_float64_input_accepted(stack: xr.DataArray) -> None:
    out = lc.median(stack.astype(np.float64).transpose("band", "x", "time", "y"))
    assert out.dims == ("band", "y", "x") and out.dtype == np.float32
    assert_identical(out.values, ref_median(stack.values))


def test_unknown_method_names_allowed_methods(stack: xr.DataArray) -> None:
    with pytest.raises(ParamsError) as info:
        lc.composite(stack, "mean")  # type: ignore[arg-type]
    message = str(info.value)
    assert "'mean'" in message
    for method in ("median", "best", "monthly"):
        assert repr(method) in message
    assert info.value.where and info.value.fix


def test_best_without_score_is_a_params_error(stack: xr.DataArray) -> None:
    with pytest.raises(ParamsError, match="score"):
        lc.composite(stack, "best")


def test_bad_inputs_are_data_errors(stack: xr.DataArray, score: xr.DataArray) -> None:
    with pytest.raises(DataError, match="dims"):
        lc.median(stack.isel(band=0))
    with pytest.raises(DataError, match="NaN"):
        lc.median(stack.fillna(0).astype(np.uint16))
    with pytest.raises(DataError, match="score"):
        lc.best_pixel(stack, score.assign_coords(x=score["x"] + 1))
