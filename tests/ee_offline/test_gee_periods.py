"""The Earth Engine counterpart of the local composite's periods (``composite.period``: 1M..12M,
``season``) and empty periods (``composite.empty_period``: fill / drop): the graphs of
lcgee.gee.composite and lcgee.gee.chain, evaluated offline by lcgee.gee.offline, against the
local feature stack (lcgee.features.features_from_stack) on the same scenes."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("ee")

from toys import masked_stack  # tests/toys.py

from lcgee import clouds, composite, ee_stage
from lcgee.errors import DataWarning, ParamsError
from lcgee.features import features_from_stack
from lcgee.gee import chain, offline, reader, session
from lcgee.gee import composite as gee_composite
from lcgee.gee.trees import EEClassifierSpec
from lcgee.params import load_params

BANDS = ["B02", "B04", "B08", "B11"]
ALL_PERIODS = ["1M", "2M", "3M", "4M", "6M", "12M", "season"]


@pytest.fixture(scope="module", autouse=True)
def _offline_session():
    session.init_offline()


def _stack_at(times: list[str]) -> xr.DataArray:
    """A 1-band, 1-pixel stack at ``times`` (only the time coordinate matters here)."""
    return xr.DataArray(np.ones((len(times), 1, 1, 1), np.float32),
                        dims=("time", "band", "y", "x"),
                        coords={"time": np.array(times, dtype="datetime64[ns]"),
                                "band": ["B04"]})


# ----------------------------------------------------------------------------- calendar


@pytest.mark.parametrize("period", ALL_PERIODS)
def test_period_windows_are_the_local_periods(period):
    """Labels, first days and ends of the server's periods equal the local composite's, across
    a year boundary, for the scenes' times (periods without a scene are absent on both sides)."""
    times = ["2020-11-30T23:59:59", "2020-12-01T00:00:00", "2021-01-15", "2021-02-28T12:00",
             "2021-05-02", "2021-08-31T23:00", "2021-12-24", "2022-03-01"]
    local = composite.period_median(_stack_at(times), period)
    windows = gee_composite.period_windows(None, None, period,
                                           times=[np.datetime64(t) for t in times])
    assert [w[0] for w in windows] == [str(v) for v in local["label"].values]
    firsts = [str(v)[:10] for v in local["period"].values]
    assert [w[1] for w in windows] == firsts
    # each window ends where the next period of the calendar starts (end exclusive)
    months = 3 if period == "season" else int(period.removesuffix("M"))
    for _, first, after in windows:
        start = np.datetime64(first, "M")
        assert np.datetime64(after, "M") == start + np.timedelta64(months, "M")
    # every time falls in exactly the window that carries its local period's label
    for t in times:
        inside = [w[0] for w in windows if w[1] <= t[:10] < w[2]]
        assert len(inside) == 1


def test_period_windows_over_dates_cover_every_period_touched():
    got = gee_composite.period_windows(dt.date(2021, 11, 15), dt.date(2022, 6, 1), "season")
    assert got == [("s2021SON", "2021-09-01", "2021-12-01"),  # 15 November is autumn
                   ("s2022DJF", "2021-12-01", "2022-03-01"),
                   ("s2022MAM", "2022-03-01", "2022-06-01"),
                   ("s2022JJA", "2022-06-01", "2022-09-01")]
    got = gee_composite.period_windows(dt.date(2021, 1, 1), dt.date(2021, 12, 31), "4M")
    assert [w[0] for w in got] == ["m202101p4", "m202105p4", "m202109p4"]
    # aware datetimes count in UTC (Earth Engine's system:time_start is UTC)
    tokyo = dt.timezone(dt.timedelta(hours=9))
    got = gee_composite.period_windows(None, None, "1M",
                                       times=[dt.datetime(2021, 5, 1, 3, tzinfo=tokyo)])
    assert got == [("m202104", "2021-04-01", "2021-05-01")]


def test_unknown_periods_are_refused_by_name():
    with pytest.raises(ParamsError, match="5M") as info:
        gee_composite.period_windows(dt.date(2021, 1, 1), dt.date(2021, 3, 1), "5M")
    assert "composite.period" in str(info.value)


# ----------------------------------------------------------------------------- demo scenes


@pytest.fixture(scope="module")
def scenes(small_search, small_world):
    client, found = small_search
    items = found[:8]
    grid = small_world.grid
    cfg, masked = masked_stack(client, items, grid, BANDS)
    return client, items, grid, cfg, masked.compute()


def _evaluate(image, client, items, grid):
    graph = json.loads(image.serialize())
    loader = ee_stage.stac_loader(client, items, grid, chunk=128, bands=BANDS)
    images, props = {}, {}
    for asset_id in sorted(offline.loaded_ids(graph)):
        images[asset_id], props[asset_id] = loader(asset_id)
    return offline.evaluate_graph(graph, images=images, properties=props, grid=grid)


@pytest.mark.parametrize("period", ["1M", "2M", "season"])
def test_server_periods_with_fill_equal_the_local_feature_stack(scenes, period):
    """Same bands in the same order, same values bit for bit, same no-data, on the small
    demo world's first 8 scenes (masks computed by the server graph on one side, by lcgee's
    local s2cloudless on the other). The gaps the fill closes are counted, so the test
    cannot pass with nothing to fill."""
    from lcgee.masks import cloud_params
    from lcgee.scenes import gee_index

    client, items, grid, cfg, masked = scenes
    local = features_from_stack(masked, "monthly", index_names=["NDVI"], period=period,
                                empty_period="fill").features
    image = gee_composite.scene_composite(
        [gee_index(it) for it in items], method="monthly", bands=BANDS, cloud=cloud_params(cfg),
        crs=grid, index_names=["NDVI"], period=period, fill_empty=True,
        times=[it.datetime for it in items])
    out = _evaluate(image, client, items, grid)
    names = [str(b) for b in local["band"].values]
    assert list(out) == names
    raw = composite.period_median(masked, period).values
    whole = composite.median(masked).values
    filled = int((np.isnan(raw) & np.isfinite(whole)[None]).sum())
    assert filled > 1000  # cloudy pixels in some period, clear in another: the fill is exercised
    for k, name in enumerate(names):
        assert np.array_equal(out[name], local.values[k], equal_nan=True), name


def test_server_periods_without_fill_keep_the_gaps_like_drop(scenes):
    """``empty_period: drop``: no fill on either side; the local periods (none empty
    everywhere here) equal the server's, gaps masked on both."""
    from lcgee.masks import cloud_params
    from lcgee.scenes import gee_index

    client, items, grid, cfg, masked = scenes
    local = features_from_stack(masked, "monthly", index_names=[], period="3M",
                                empty_period="drop").features
    image = gee_composite.scene_composite(
        [gee_index(it) for it in items], method="monthly", bands=BANDS, cloud=cloud_params(cfg),
        crs=grid, period="3M", fill_empty=False, times=[it.datetime for it in items])
    out = _evaluate(image, client, items, grid)
    assert list(out) == [str(b) for b in local["band"].values]
    assert np.isnan(local.values).any()
    for k, name in enumerate(out):
        assert np.array_equal(out[name], local.values[k], equal_nan=True), name


# ----------------------------------------------------------------------------- chain


def _synthetic(seed: int = 11):
    """Six scenes in three 2-month periods; every observation of the middle period masked."""
    rng = np.random.default_rng(seed)
    bands, shape = ["B04", "B08"], (12, 10)
    times = ["2021-01-05", "2021-02-10", "2021-03-03", "2021-04-20", "2021-05-09", "2021-06-30"]
    n = len(times)
    dn = rng.integers(1, 6000, (n, 2, *shape)).astype(np.float64)
    codes = rng.choice([0, 0, 0, 1, 2], (n, *shape)).astype(np.uint8)
    codes[2:4] = 1  # March and April (period m202103p2): cloud everywhere
    refl = (dn.astype(np.float32) / np.float32(10000)).astype(np.float32)
    masked = np.where((codes == 0)[:, None], refl, np.float32(np.nan))
    stack = xr.DataArray(masked, dims=("time", "band", "y", "x"),
                         coords={"band": bands, "time": np.array(times, "datetime64[ns]")})
    images, props = {}, {}
    for i, t in enumerate(times):
        images[chain.SCENE_ID.format(i)] = {"B4": dn[i, 0], "B8": dn[i, 1]}
        images[chain.MASK_ID.format(i)] = {"cloud_mask": codes[i].astype(np.float64)}
        millis = dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC).timestamp() * 1000
        props[chain.SCENE_ID.format(i)] = {"system:time_start": millis}
    return stack, images, props, [np.datetime64(t) for t in times]


def _tree(feature: str, threshold: float, low: float) -> str:
    return (f"1) root 1 0 0\n2) {feature} <= {threshold} 1 0 {low} *\n"
            f"3) {feature} > {threshold} 1 0 {-low} *")


@pytest.mark.parametrize("empty_period", ["fill", "drop"])
def test_dry_run_chain_with_periods_equals_the_local_chain(empty_period):
    """The whole chain graph (DN -> masks -> 2-month medians -> fill/drop -> NDVI -> trees) on
    synthetic scenes: the local labels exactly. With ``fill`` the middle period (cloud
    everywhere) is filled from the whole-range median and its features decide the labels; with
    ``drop`` the local stack drops it (and warns) and the model's features are the others."""
    stack, images, props, times = _synthetic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats = features_from_stack(stack, "monthly", index_names=["NDVI"], period="2M",
                                    empty_period=empty_period).features
    names = [str(b) for b in feats["band"].values]
    dropped = [w for w in caught if issubclass(w.category, DataWarning)]
    if empty_period == "drop":
        assert "m202103p2_B04" not in names and len(dropped) == 1
        decisive = "m202105p2_NDVI"
    else:
        assert "m202103p2_NDVI" in names and not dropped
        decisive = "m202103p2_NDVI"
    spec = EEClassifierSpec(names, [10, 20, 30], trees=[
        [_tree(decisive, 0.0, -1.0)], [_tree("m202101p2_B04", 0.3, 0.5)],
        [_tree(names[-1], 0.1, 0.2)]])
    X = feats.values.reshape(len(names), -1).T.astype(np.float64)
    ok = np.all(np.isfinite(X), axis=1)
    local = np.zeros(X.shape[0], np.uint8)
    local[ok] = reader.classify(spec, X[ok])
    graph = chain.chain_graph(spec, len(times), method="monthly", bands=["B04", "B08"],
                              index_names=["NDVI"], period="2M",
                              fill_empty=empty_period == "fill", times=times)
    out = offline.evaluate_graph(graph, images=images, properties=props)
    ee_map = np.nan_to_num(out["landcover"]).astype(np.uint8).ravel()
    assert ok.sum() > 20 and len(set(local[ok])) >= 2
    assert np.array_equal(ee_map, local)


def test_server_period_features_equal_the_local_ones_on_a_filled_period():
    """The period features themselves (before the trees), bit for bit: the period with cloud
    everywhere is the whole-range median on both sides."""
    stack, images, props, times = _synthetic(3)
    feats = features_from_stack(stack, "monthly", index_names=["NDVI"], period="2M",
                                empty_period="fill").features
    ee = pytest.importorskip("ee")
    collection = ee.ImageCollection.fromImages([
        gee_composite.scene_reflectance(
            ee.Image(chain.SCENE_ID.format(i)).updateMask(
                ee.Image(chain.MASK_ID.format(i)).eq(clouds.CLEAR)), ["B04", "B08"])
        for i in range(len(times))])
    image = gee_composite.monthly_features(collection, None, None, ["B04", "B08"], ["NDVI"],
                                           period="2M", fill_empty=True, times=times)
    out = offline.evaluate_graph(json.loads(image.serialize()), images=images, properties=props)
    names = [str(b) for b in feats["band"].values]
    assert list(out) == names
    whole = composite.median(stack).values
    np.testing.assert_array_equal(feats.sel(band="m202103p2_B04").values, whole[0])
    for k, name in enumerate(names):
        assert np.array_equal(out[name], feats.values[k], equal_nan=True), name


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(("period", "empty", "needle"), [
    ("2M", "fill", "m202209p2_NDVI"), ("season", "fill", "s2022SON_NDVI"),
    ("season", "drop", "s2021MAM_NDVI")])
def test_composite_for_params_builds_the_runs_periods(period, empty, needle):
    from lcgee.grid import Grid

    grid = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (256, 256))

    def graph(empty_period):
        p = load_params("params/demo.yaml", ["composite.method=monthly",
                                             f"composite.period={period}",
                                             f"composite.empty_period={empty_period}"])
        return ee_stage.composite_for_params(p, grid).serialize()

    text = graph(empty)
    assert needle in text and "m202104_" not in text
    if empty == "fill":  # one unmask(whole-range median) per period, beyond the mask graph's
        windows = gee_composite.period_windows(dt.date(2021, 4, 1), dt.date(2022, 9, 30), period)
        fills = text.count('"Image.unmask"') - graph("drop").count('"Image.unmask"')
        assert fills == len(windows) > 0
