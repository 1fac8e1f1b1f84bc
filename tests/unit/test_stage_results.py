"""The result objects behind notebooks 02, 07 and 09 (one library call per step): mask source
comparison and quality, the optional geemap viewer, the water label correction and the live
water step without Earth Engine, and the figures they draw."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from lcgee import clouds, ee_stage, masks, plots, water
from lcgee import water_stage as ws
from lcgee.errors import EarthEngineError, MissingDependencyError
from lcgee.grid import Grid
from lcgee.layout import Window
from lcgee.params import CloudParams, Params, WaterParams

pytest.importorskip("matplotlib")
GRID = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (4, 4))


# ----------------------------------------------------------------------------- 02 clouds


def _mask(cells):
    return np.array(cells, np.uint8)


def test_source_comparison_counts_equal_earth_engine_masks():
    a, b = _mask([[0, 1], [2, 0]]), _mask([[0, 1], [0, 0]])
    cmp = masks.SourceComparison({"scl": {"x": b, "y": b}, "local": {"x": a, "y": a},
                                  "gee": {"x": a.copy(), "y": b}})
    assert cmp.gee_equal_local == (1, 2)
    assert cmp.summary == "Earth Engine masks equal to the local ones: 1 of 2 scenes"
    no_gee = masks.SourceComparison({"scl": {"x": b}, "local": {"x": a}})
    assert no_gee.gee_equal_local is None
    assert "no Earth Engine masks" in no_gee.summary


class _World:
    """Truth of one scene: cloud in the top-left 2 x 2 block, shadow in the bottom row."""

    grid = GRID

    def truth_cloud(self, item_id):
        t = np.zeros((4, 4), bool)
        t[:2, :2] = True
        return t

    def truth_shadow(self, item_id):
        t = np.zeros((4, 4), bool)
        t[3] = True
        return t


def test_quality_against_truth_scores_the_sources_and_writes_the_records(tmp_path):
    local = np.zeros((4, 4), np.uint8)
    local[0] = clouds.CLOUD  # 4 px called cloud, 2 of them truly cloud; 2 of 4 cloud px found
    local[3, :2] = clouds.SHADOW  # 2 of 4 shadow px found, no false shadow
    scl = np.zeros((4, 4), np.uint8)
    scl[:2, :2] = clouds.CLOUD  # every cloud, no shadow
    have = [("s1", "local", xr.DataArray(local, dims=("y", "x"))),
            ("s1", "scl", xr.DataArray(scl, dims=("y", "x")))]
    out = tmp_path / "q" / "quality.json"
    q = masks.quality_against_truth(_World(), [SimpleNamespace(id="s1")], GRID, CloudParams(),
                                    client=None, out=out, have=have)
    rows = q.table.set_index(["source", "kind"])
    assert rows.loc[("local", "cloud"), "precision"] == pytest.approx(0.5)
    assert rows.loc[("local", "cloud"), "recall"] == pytest.approx(0.5)
    assert rows.loc[("local", "shadow"), "precision"] == pytest.approx(1.0)
    assert rows.loc[("local", "shadow"), "recall"] == pytest.approx(0.5)
    assert rows.loc[("scl", "cloud"), "recall"] == pytest.approx(1.0)
    assert rows.loc[("scl", "shadow"), "recall"] == pytest.approx(0.0)
    pd.testing.assert_frame_equal(pd.DataFrame(json.loads(out.read_text())), q.table)
    ba = q.balanced_accuracy
    assert list(ba.columns) == ["local", "scl"] and set(ba.index) == {"cloud", "shadow",
                                                                     "cloud_or_shadow"}
    assert ba.loc["cloud", "scl"] == pytest.approx(1.0)
    assert "quality.json" in q.message


def test_quality_without_truth_writes_nothing(tmp_path):
    out = tmp_path / "quality.json"
    q = masks.quality_against_truth(None, [], GRID, CloudParams(), client=None, out=out)
    assert not out.exists() and q.table.empty and q.balanced_accuracy.empty
    assert "no truth on real data" in q.message


def test_masks_by_source_figure_one_row_per_scene_one_column_per_source():
    rgb = {"x": np.zeros((4, 4, 3)), "y": np.ones((4, 4, 3))}
    by_source = {"scl": {"x": _mask(np.zeros((4, 4))), "y": _mask(np.zeros((4, 4)))},
                 "local": {"x": _mask(np.ones((4, 4))), "y": _mask(np.ones((4, 4)))}}
    fig = plots.masks_by_source_figure(rgb, {"x": "2024-05-01", "y": "2024-06-01"}, by_source,
                                       {"scl": "Sen2Cor SCL"})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["2024-05-01 · Sen2Cor SCL", "2024-05-01 · local",
                      "2024-06-01 · Sen2Cor SCL", "2024-06-01 · local"]
    # the local mask (all cloud) is overlaid in the second panel, none in the first
    assert len(fig.axes[1].images) == 2
    assert fig.axes[1].images[1].get_array()[0, 0, 3] == pytest.approx(plots.MASK_COLOURS[1][3])
    assert fig.axes[0].images[1].get_array()[0, 0, 3] == 0


# ----------------------------------------------------------------------------- 07 Earth Engine


def test_map_pair_draws_both_maps_or_nothing():
    left, right = np.full((3, 3), 10, np.uint8), np.full((3, 3), 80, np.uint8)
    assert plots.map_pair(left, None) is None
    fig = plots.map_pair(left, right, titles=("local", "live"))
    assert [ax.get_title() for ax in fig.axes] == ["local", "live"]
    assert fig.axes[1].get_legend() is not None and fig.axes[0].get_legend() is None


def test_interactive_map_handles_a_skipped_step_and_a_missing_geemap(monkeypatch):
    skipped = ee_stage.interactive_map(None, GRID)
    assert skipped.widget is None and "did not run" in skipped.message

    def no_geemap(image, grid):
        raise MissingDependencyError("the optional dependency 'geemap' is not installed",
                                     fix="pip install 'lcgee[maps]'")

    monkeypatch.setattr(ee_stage.live, "ee_map", no_geemap)
    missing = ee_stage.interactive_map(object(), GRID)
    assert missing.widget is None and "lcgee[maps]" in missing.message

    widget = object()
    monkeypatch.setattr(ee_stage.live, "ee_map", lambda image, grid: (image, grid, widget))
    image = object()
    shown = ee_stage.interactive_map(image, GRID)
    assert shown.widget == (image, GRID, widget)


# ----------------------------------------------------------------------------- 09 water


def _water_scene(seed=0, shape=(40, 60)):
    """Two bands separating water (a pond) from land, noisy labels with wrong blocks."""
    rng = np.random.default_rng(seed)
    truth = np.full(shape, 10, np.uint8)
    truth[10:25, 5:30] = water.WATER_CODE
    truth[15:30, 40:55] = water.WATER_CODE
    is_water = truth == water.WATER_CODE
    feats = np.stack([np.where(is_water, 0.05, 0.3), np.where(is_water, -0.4, 0.5)])
    feats = (feats + rng.normal(0, 0.02, feats.shape)).astype(np.float32)
    noisy = is_water.astype(np.uint8)
    noisy[0:4, 0:6] = 1  # false water on land, left half
    noisy[12:15, 8:12] = 0  # missed water, left half
    noisy[0:4, 40:46] = 1  # and in the right half (outside the training window)
    return feats, noisy, truth


def test_correct_in_regions_touches_only_the_training_windows():
    feats, noisy, truth = _water_scene()
    cfg = WaterParams(correction_iterations=2)
    left = Window("left", 0, 0, 40, 32)
    got = ws.correct_in_regions(feats, noisy, [left], cfg, truth)

    outside = np.ones(noisy.shape, bool)
    outside[:, :32] = False
    assert np.array_equal(got.labels[outside], noisy[outside])  # the held-out side untouched
    fixed, history = water.correct_labels(left.cut(feats), left.cut(noisy), iterations=2,
                                          confidence=cfg.correction_confidence, seed=cfg.seed)
    assert np.array_equal(left.cut(got.labels), fixed) and got.history == {"left": history}
    tw = left.cut(truth) == water.WATER_CODE
    # against the truth the correction fixed the wrong blocks of the left window
    assert np.array_equal(left.cut(got.labels).astype(bool), tw)
    noise = got.noise.set_index("labels")
    assert noise.loc["noisy", "disagreement"] == pytest.approx(
        water.label_noise(left.cut(noisy), tw)["disagreement"])
    assert noise.loc["noisy", "disagreement"] > 0 and noise.loc["corrected", "disagreement"] == 0
    assert list(got.noise["region"]) == ["left", "left"]
    assert noisy[0, 0] == 1 and noisy[12, 8] == 0  # the input is not modified


def test_correct_in_regions_without_truth_has_no_noise_table():
    feats, noisy, _ = _water_scene()
    got = ws.correct_in_regions(feats, noisy, [Window("all", 0, 0, 40, 60)], WaterParams())
    assert got.noise.empty and got.noise_summary == "no truth outside the demo world"
    assert ws.truth_water(None, Window("all", 0, 0, 40, 60)) is None


def test_truth_water_cuts_the_window():
    _, _, truth = _water_scene()
    win = Window("w", 8, 3, 5, 4)
    got = ws.truth_water(truth, win)
    assert got.dtype == np.uint8 and got.shape == (5, 4)
    assert np.array_equal(got, (truth[8:13, 3:7] == 80).astype(np.uint8))


def test_label_panels_leave_out_missing_layers():
    panels = {"noisy": np.array([[1, 0], [255, 1]], np.uint8), "truth": None}
    fig = plots.label_panels(panels, "r1")
    assert [ax.get_title() for ax in fig.axes] == ["noisy (r1)"]
    drawn = np.ma.masked_invalid(fig.axes[0].images[0].get_array())
    assert drawn.mask.tolist() == [[False, False], [True, False]]  # 255: no label, not drawn


def test_training_curves_one_pair_of_lines_per_run():
    hist = [{"epoch": 1, "train_loss": 0.9, "val_loss": 1.0},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7}]
    fig = plots.training_curves({"noisy": hist, "corrected": hist[:1]})
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["noisy: train", "noisy: validation",
                                                "corrected: train", "corrected: validation"]
    assert list(lines[1].get_ydata()) == [1.0, 0.7]


def _params(**ee):
    return Params.model_validate({"name": "t", "aoi": {"bbox": [127.0, 33.0, 127.1, 33.1]},
                                  "dates": {"start": "2024-01-01", "end": "2024-12-31"},
                                  "ee": ee})


def test_live_water_without_a_project_sends_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(ws.session, "init_live", lambda project: calls.append(project))
    got = ws.water_in_earth_engine(_params(), GRID, model=None)
    assert calls == [] and got.landcover is None and got.export_table is None
    assert "no ee.project" in got.message


def test_live_water_with_refused_credentials_says_why(monkeypatch):
    def refuse(project):
        raise EarthEngineError("no credentials found", fix="run earthengine authenticate")

    monkeypatch.setattr(ws.session, "init_live", refuse)
    got = ws.water_in_earth_engine(_params(project="my-project"), GRID, model=None)
    assert got.landcover is None and got.message.startswith("Live Earth Engine step skipped.")
    assert "no credentials found" in got.message


def test_water_scores_without_truth_keep_the_dry_run_only():
    scores = ws.WaterScores({"region": "r"}, {}, "no truth")
    assert scores.f1_table.empty
    assert isinstance(scores.f1_table, pd.DataFrame)
