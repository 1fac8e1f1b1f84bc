"""Issue 11: class priors kept by sampling, refit on all samples, block size from the data,
the plain-LightGBM baseline, and grids from real rasters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lcgee import blocks, samples, train
from lcgee.errors import DataError, ParamsError
from lcgee.grid import Grid
from lcgee.params import TrainParams

NAMES = ["f0", "f1", "f2"]


def skewed(shape=(200, 200), shares=(0.80, 0.15, 0.05), seed=0):
    """Labels 10/40/80 with the given shares (random pixels) and features that overlap."""
    rng = np.random.default_rng(seed)
    lab = rng.choice([10, 40, 80], size=shape, p=shares).astype(np.int64)
    centre = {10: 0.0, 40: 1.0, 80: 2.0}
    X = np.stack([np.vectorize(centre.get)(lab) + rng.normal(0, 0.9, shape)
                  for _ in NAMES]).astype(np.float32)
    return X, lab


# ---- 1. sampling keeps the class priors -----------------------------------------------------
def test_default_sampling_keeps_the_class_shares_with_a_floor():
    X, lab = skewed()
    t = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                              per_class=500, floor=120)
    shares = t["label"].value_counts(normalize=True)
    truth = pd.Series(lab.ravel()).value_counts(normalize=True)
    assert len(t) >= 1500 - 5  # the budget: per_class x classes
    # the common classes keep their ratio; the rare one (5 % = 75 samples) is floored at 120
    assert shares[10] / shares[40] == pytest.approx(truth[10] / truth[40], rel=0.03)
    assert (t["label"] == 80).sum() == 120
    assert shares[10] > 0.75
    balanced = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                                     per_class=500, balance=True)
    assert set(balanced["label"].value_counts()) == {500}


def test_allocation_is_proportional_floored_and_capped():
    sizes = samples.allocate(np.array([8000, 1500, 30]), per_class=1000, balance=False,
                             min_per_class=100)
    assert sizes.tolist() == [2518, 472, 30]  # 3000 x 8000/9530 ...; the rare class has 30
    assert samples.allocate(np.array([8000, 1500, 30]), per_class=1000, balance=True,
                            min_per_class=100).tolist() == [1000, 1000, 30]


def test_proportional_sampling_beats_balanced_on_a_skewed_landscape():
    """Balanced sampling shifts the learnt priors towards rare classes: overall accuracy on
    a new draw of the same landscape drops."""
    X, lab = skewed(seed=1)
    X2, lab2 = skewed(seed=2)
    cfg = TrainParams(num_iterations=60, early_stopping_rounds=0)
    acc = {}
    for balance in (False, True):
        t = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                                  per_class=600, balance=balance)
        bundle = train.train_lightgbm(t, NAMES, cfg, class_values=[10, 40, 80])
        pred = bundle.predict_labels(X2.reshape(3, -1).T.astype(np.float64))
        acc[balance] = float((pred == lab2.ravel()).mean())
    assert acc[False] > acc[True] + 0.02, acc


# ---- 2. refit on every sample -----------------------------------------------------------------
def test_final_model_is_refit_on_all_samples_with_the_early_stopped_rounds():
    import lightgbm as lgb

    X, lab = skewed(seed=3)
    t = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                              per_class=400)
    cfg = TrainParams(num_iterations=300, early_stopping_rounds=10, learning_rate=0.3)
    bundle = train.train_lightgbm(t, NAMES, cfg, class_values=[10, 40, 80])
    best = bundle.meta["best_iteration"]
    assert bundle.meta["refit"] and bundle.meta["train_samples"] == len(t)
    assert 1 <= best < 300 and bundle.booster.num_trees() == best * 3
    Xt = t[NAMES].to_numpy(np.float64)
    y = t["label"].map({10: 0, 40: 1, 80: 2}).to_numpy()
    reference = lgb.train(train.lightgbm_params(cfg, 3), lgb.Dataset(Xt, y), num_boost_round=best)
    np.testing.assert_allclose(bundle.booster.predict(Xt), reference.predict(Xt), rtol=1e-12)
    old = train.train_lightgbm(t, NAMES, cfg.model_copy(update={"refit": False}),
                               class_values=[10, 40, 80])
    assert old.meta["train_samples"] < len(t)


# ---- 3. block size from the data --------------------------------------------------------------
def patches(shape, size, seed=0):
    """Labels constant over ``size`` x ``size`` tiles, classes drawn at random per tile."""
    rng = np.random.default_rng(seed)
    tiles = rng.choice([10, 20, 30, 40], size=(-(-shape[0] // size), -(-shape[1] // size)))
    return np.kron(tiles, np.ones((size, size), dtype=np.int64))[:shape[0], :shape[1]]


def test_autocorrelation_range_of_patchy_labels():
    assert blocks.autocorrelation_range({"a": patches((256, 256), 8)}) == 8
    assert blocks.autocorrelation_range({"a": patches((256, 256), 24, seed=1)}) == 24


def test_auto_block_size_adapts_to_small_regions():
    small = {"half": patches((100, 50), 4)}  # a 1 km x 500 m training half at 10 m
    choice = blocks.choose_block_size(small, 10.0)
    assert choice.rule == "auto" and choice.n_blocks >= blocks.target_blocks(5, 0.2)
    assert choice.block_px <= 10 and choice.block_size_m == choice.block_px * 10.0
    big = {"a": patches((640, 640), 16), "b": patches((640, 640), 16, seed=2)}
    assert blocks.choose_block_size(big, 10.0).block_px == 16  # the range fits: kept


def test_too_few_blocks_is_a_clear_error_before_training():
    small = {"half": patches((100, 50), 4)}
    with pytest.raises(DataError, match=r"labels\.block_size to") as err:
        blocks.choose_block_size(small, 10.0, block_size=640)
    assert "fewer than the 8" in str(err.value)
    with pytest.raises(DataError, match="larger training regions"):
        blocks.choose_block_size({"tiny": np.full((2, 2), 10)}, 10.0)


# ---- 4. the baseline -------------------------------------------------------------------------
def test_baseline_is_plain_lightgbm_with_library_defaults():
    import lightgbm as lgb

    X, lab = skewed(seed=4)
    t = samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                              per_class=300)
    base = train.train_baseline(t, NAMES, class_values=[10, 40, 80])
    assert base.meta["train_samples"] == len(t) and base.booster.num_trees() == 300
    clf = lgb.LGBMClassifier(random_state=0, deterministic=True, force_row_wise=True,
                             n_jobs=1, verbose=-1)
    clf.fit(t[NAMES].to_numpy(np.float64), t["label"].to_numpy())
    Xt = t[NAMES].to_numpy(np.float64)
    np.testing.assert_allclose(base.booster.predict(Xt), clf.predict_proba(Xt), rtol=1e-9)


# ---- 7. grids from real rasters ----------------------------------------------------------------
def test_bounds_of_nearly_10_m_pixels_keep_their_shape():
    # on the 10 m lattice, pixels of 10.005 m: snapping outward would add a row and a column
    left, top = 500000.0, 4000000.0
    bounds = (left, top - 100 * 10.005, left + 101 * 10.005, top)
    grid = Grid.from_bounds(bounds, 10, "EPSG:32652")
    assert grid.shape == (100, 101) and grid.transform == (10.0, 0.0, left, 0.0, -10.0, top)
    # off the lattice (the 9.995 m raster): with its shape the grid keeps it
    left = 500003.2
    bounds = (left, top - 100 * 9.995, left + 101 * 9.995, top)
    assert Grid.from_bounds(bounds, 10, "EPSG:32652").shape == (100, 102)  # snapped outward
    kept = Grid.from_bounds(bounds, 10, "EPSG:32652", shape=(100, 101))
    assert kept.shape == (100, 101) and kept.transform[2] == left
    with pytest.raises(ParamsError, match="not within"):
        Grid.from_bounds(bounds, 10, "EPSG:32652", shape=(90, 101))
    # bounds that are not a raster keep the outward snap
    assert Grid.from_bounds((500000.0, 3999000.0, 501005.0, 4000000.0), 10, "EPSG:32652").shape \
        == (100, 101)


def test_grid_from_rasterio_and_rioxarray(tmp_path):
    import rasterio
    import rioxarray
    from rasterio.transform import from_origin

    path = tmp_path / "r.tif"
    transform = from_origin(500003.2, 4000000.0, 9.995, 9.995)
    with rasterio.open(path, "w", driver="GTiff", height=100, width=101, count=1,
                       dtype="uint8", crs="EPSG:32652", transform=transform) as dst:
        dst.write(np.ones((1, 100, 101), np.uint8))
    with rasterio.open(path) as src:
        own = Grid.from_raster(src)
        nominal = Grid.from_raster(src, 10)
    assert own.shape == (100, 101) and own.resolution == pytest.approx(9.995)
    assert nominal.shape == (100, 101) and nominal.transform[:3] == (10.0, 0.0, 500003.2)
    da = rioxarray.open_rasterio(path)
    assert Grid.from_raster(da, 10) == nominal
    plain = da.drop_vars("spatial_ref").assign_attrs(crs="EPSG:32652")
    assert Grid.from_raster(plain, 10) == nominal
    with pytest.raises(ParamsError, match="not within"):
        Grid.from_raster(src_like(tmp_path), 10)


def src_like(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "coarse.tif"
    with rasterio.open(path, "w", driver="GTiff", height=10, width=10, count=1, dtype="uint8",
                       crs="EPSG:32652", transform=from_origin(0, 100, 20, 20)) as dst:
        dst.write(np.ones((1, 10, 10), np.uint8))
    return rasterio.open(path)


# ---- 6. composite periods ----------------------------------------------------------------------
def month_stack(months=("2021-01-10", "2021-02-10", "2021-03-10", "2021-03-25", "2021-04-10",
                        "2021-06-10", "2021-12-05"), empty="2021-04-10", seed=0):
    import xarray as xr

    rng = np.random.default_rng(seed)
    data = rng.random((len(months), 4, 6, 5)).astype(np.float32)
    times = np.array(months, dtype="datetime64[ns]")
    data[list(times).index(np.datetime64(empty, "ns"))] = np.nan  # no clear view that month
    data[0, :, 0, 0] = np.nan
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": ["B02", "B03", "B04", "B08"]})


def test_two_month_and_season_periods():
    from lcgee import composite

    stack = month_stack()
    two = composite.period_median(stack, "2M")
    assert list(two["label"].values) == ["m202101p2", "m202103p2", "m202105p2", "m202111p2"]
    np.testing.assert_array_equal(two.isel(period=1).values,
                                  np.nanmedian(stack.values[2:5], axis=0))
    seasons = composite.period_median(stack, "season")
    assert list(seasons["label"].values) == ["s2021DJF", "s2021MAM", "s2021JJA", "s2022DJF"]
    monthly = composite.period_median(stack, "1M")
    np.testing.assert_array_equal(monthly.values, composite.monthly_median(stack).values)


def test_a_month_without_observations_is_filled_or_dropped_never_all_nan():
    from lcgee import composite, features
    from lcgee.errors import DataWarning

    stack = month_stack()
    filled = features.features_from_stack(stack, "monthly", index_names=["NDVI"])
    values = filled.features.values
    assert not np.isnan(values).all(axis=(1, 2)).any()  # no feature is NaN everywhere
    assert not np.isnan(values).any()  # every pixel has some valid observation
    april = [i for i, b in enumerate(filled.features["band"].values)
             if str(b).startswith("m202104_") and not str(b).endswith("NDVI")]
    np.testing.assert_array_equal(values[april], composite.median(stack).values)  # the fill
    with pytest.warns(DataWarning, match="m202104"):
        dropped = features.features_from_stack(stack, "monthly", index_names=["NDVI"],
                                               empty_period="drop")
    names = [str(b) for b in dropped.features["band"].values]
    assert not any(n.startswith("m202104_") for n in names) and "m202103_NDVI" in names


# ---- 5. bring your own stack -------------------------------------------------------------------
def own_stack(seed=0, shape=(96, 96), times=10):
    """Four bands, three classes in 8-px patches, clouds (probability 100, bright) on some
    observations; no sun angles."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    lab = patches(shape, 8, seed=seed)
    lab = np.where(lab == 40, 30, lab)  # classes 10, 20, 30
    spectra = {10: [0.03, 0.05, 0.03, 0.35], 20: [0.04, 0.07, 0.05, 0.30],
               30: [0.05, 0.06, 0.08, 0.20]}
    clean = np.zeros((times, 4, *shape), np.float32)
    for code, mean in spectra.items():
        sel = lab == code
        for b, m in enumerate(mean):
            clean[:, b][:, sel] = m + rng.normal(0, 0.008, (times, int(sel.sum())))
    prob = np.zeros((times, *shape), np.float32)
    data = clean.copy()
    for t in range(times):
        r, c = rng.integers(0, shape[0] - 30, 2)
        prob[t, r:r + 30, c:c + 30] = 100
        data[t, :, r:r + 30, c:c + 30] = 0.6  # a bright cloud
    coords = {"time": np.arange(times).astype("datetime64[D]").astype("datetime64[ns]")
              + np.timedelta64(20, "D") * np.arange(times),
              "band": ["B02", "B03", "B04", "B08"],
              "y": 4000000 - 10 * (np.arange(shape[0]) + 0.5),
              "x": 500000 + 10 * (np.arange(shape[1]) + 0.5)}
    stack = xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords)
    probability = xr.DataArray(prob, dims=("time", "y", "x"),
                               coords={k: coords[k] for k in ("time", "y", "x")})
    return stack, probability, lab


def test_own_stack_with_four_bands_and_no_sun_angles():
    from lcgee import own_stack as own
    from lcgee.errors import DataWarning

    stack, probability, lab = own_stack()
    with pytest.warns(DataWarning) as record:
        out = own.run_own_stack(stack, lab, cloud_probability=probability,
                                train_params=TrainParams(num_iterations=30))
    text = " ".join(str(w.message) for w in record)
    assert "shadow step skipped (no sun azimuths)" in text
    assert "MNDWI (needs B11)" in text and "NDBI (needs B11)" in text
    assert "NDWI (needs B11)" in text  # lcgee's NDWI is Gao's (B08, B11)
    assert [str(b) for b in out.features["band"].values] == ["B02", "B03", "B04", "B08", "NDVI"]
    # the clouds are masked: the composite is close to the median of the clear observations
    clean = stack.where(probability < 50).median("time")
    np.testing.assert_allclose(out.features.sel(band="B04").values, clean.sel(band="B04").values,
                               atol=0.03)
    m = out.metrics
    assert m["holdout_vs_labels"]["overall_accuracy"] > 0.95
    assert "holdout_vs_labels" in m["baseline"] and "block_cv" in m["baseline"]
    assert out.landcover.shape == lab.shape and set(np.unique(out.landcover)) <= {0, 10, 20, 30}
    assert out.model.meta["train_samples"] == len(out.samples)
    assert out.blocks.n_blocks >= 8


def test_own_stack_without_nir_masks_clouds_but_not_shadows():
    from lcgee import own_stack as own
    from lcgee.errors import DataWarning

    stack, probability, _ = own_stack(shape=(48, 48), times=3)
    with pytest.warns(DataWarning, match=r"shadow step skipped \(no B08 band\)"):
        masked = own.mask_own_stack(stack.drop_sel(band="B08"), cloud_probability=probability,
                                    sun_azimuth=[150.0] * 3, resolution=10.0)
    cloudy = (probability > 50).values
    assert np.isnan(masked.values[:, 0][cloudy]).all()
    assert np.isfinite(masked.values[:, 0]).any()
