"""The train stage (notebook 05, ``lcgee evaluate``) against the notebook's former inline code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lcgee import evaluate, features, predict, samples, train
from lcgee import train_stage as ts
from lcgee.layout import RunLayout, region_grid, region_windows
from lcgee.params import load_params
from lcgee.raster import CogSpec, read_cog, write_cogs
from lcgee.stage import build_grid

NAMES = ["B02", "B04", "B08", "NDVI"]

PARAMS = """\
name: tiny
aoi: {bbox: [620000, 3724160, 621600, 3725360], crs: EPSG:32652}
regions:
  top: {bbox: [620000, 3724760, 621600, 3725360], crs: EPSG:32652, role: train}
  bottom: {bbox: [620000, 3724160, 621600, 3724760], crs: EPSG:32652, role: predict}
dates: {start: 2021-04-01, end: 2021-09-30}
stac: {url: "https://stac.example.com/api"}
grid: {resolution: 10, crs: EPSG:32652}
train: {num_iterations: 30, num_leaves: 7, min_data_in_leaf: 5, early_stopping_rounds: 5,
        cv_folds: 3}
"""


def synthetic(seed, shape):
    """The toy features of the training tests (three classes by column, NaN holes)."""
    from toys import synthetic as toy  # tests/toys.py

    return toy(seed, shape)


@pytest.fixture()
def run(tmp_path):
    """A finished notebook 04 on a tiny synthetic area: features, labels, samples."""
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    layout.params.write_text(PARAMS)
    params = load_params(layout.params)
    grid = build_grid(params, layout.root)
    X, lab = synthetic(seed=3, shape=grid.shape)
    write_cogs([CogSpec(layout.features, X, np.nan, NAMES),
                CogSpec(layout.labels, lab.astype(np.uint8), 0, ["worldcover"])], grid)
    table = samples.collect(features.read_features(layout.root), lab,
                            {"top": region_grid(params, grid, "top")}, grid, block_px=15,
                            per_class=300, seed=0)
    table.to_parquet(layout.samples, index=False)
    layout.sampling.write_text(json.dumps({"sampling": "proportional",
                                           "blocks": {"block_size_m": 150}}))
    truth = np.where(lab > 0, lab, 10).astype(np.uint8)
    return params, grid, layout, truth


def _notebook_05_before(params, grid, layout, truth):
    """Notebook 05's evaluation as it was written inline before the train stage existed."""
    p = params
    table = pd.read_parquet(layout.samples)
    names = [str(b) for b in features.read_features(layout.root)["band"].values]
    classes = sorted(int(c) for c in table["label"].unique())
    bundle = train.load_bundle(layout.model)
    sampling = json.loads(layout.sampling.read_text())
    baseline = train.train_baseline(table, names, class_values=classes)
    splits = evaluate.block_cv_splits(table["block"].to_numpy(), n_splits=p.train.cv_folds,
                                      seed=p.train.seed)
    oof = train.cross_validate(table, names, p.train, splits, class_values=classes)
    results = {"block_cv": evaluate.metrics(oof["label"], oof["predicted"], classes)}
    oof_base = train.cross_validate(table, names, p.train, splits, class_values=classes,
                                    baseline=True)
    baseline_results = {"block_cv": evaluate.metrics(oof_base["label"], oof_base["predicted"],
                                                     classes)}
    mapped = {}
    for name in p.regions_with("train"):
        rg = region_grid(p, grid, name, layout.root)
        (r0, c0), (h, w) = rg.offset_in(grid), rg.shape
        region_map = predict.predict_map(features.read_features(layout.root)[:, r0:r0 + h,
                                                                            c0:c0 + w], bundle)
        codes, counts = np.unique(region_map.values, return_counts=True)
        for c, n in zip(codes, counts):
            if c:
                mapped[int(c)] = mapped.get(int(c), 0) + int(n)
    results["block_cv"]["area_adjusted"] = evaluate.area_adjusted(
        oof["label"].to_numpy(), oof["predicted"].to_numpy(), mapped, classes,
        pixel_area_m2=p.grid.resolution ** 2)
    results["block_cv"]["area_adjusted"]["note"] = (
        "samples stratified by label, not by map class: indicative only")
    wc = read_cog(layout.labels, chunks=None).values[0]
    feats = features.read_features(layout.root)
    for name in p.regions_with("predict"):
        rg = region_grid(p, grid, name, layout.root)
        (r0, c0), (h, w) = rg.offset_in(grid), rg.shape
        X = np.asarray(feats[:, r0:r0 + h, c0:c0 + w].values, dtype=np.float64)
        valid = np.all(np.isfinite(X), axis=0)
        pred = np.zeros((h, w), np.uint8)
        pred[valid] = bundle.predict_labels(X[:, valid].T)
        pred_base = np.zeros((h, w), np.uint8)
        pred_base[valid] = baseline.predict_labels(X[:, valid].T)
        refs = {"labels": wc[r0:r0 + h, c0:c0 + w]}
        if truth is not None:
            refs["truth"] = truth[r0:r0 + h, c0:c0 + w]
        for ref_name, ref in refs.items():
            results[f"holdout_{name}_vs_{ref_name}"] = evaluate.evaluate_map(
                pred, ref, classes, seed=p.train.seed, pixel_area_m2=p.grid.resolution ** 2)
            baseline_results[f"holdout_{name}_vs_{ref_name}"] = evaluate.metrics(
                ref[(pred_base > 0) & (ref > 0)], pred_base[(pred_base > 0) & (ref > 0)],
                sorted(set(classes) | {int(c) for c in np.unique(ref[ref > 0])}))
    baseline_results["model"] = {k: baseline.meta[k] for k in ("num_iterations", "train_samples")}
    results["baseline"] = baseline_results
    results["training"] = {"block_size_m": sampling.get("blocks", {}).get("block_size_m"),
                           "blocks": sampling.get("blocks"), "sampling": p.labels.sampling,
                           "best_iteration": bundle.meta["best_iteration"],
                           "refit": bundle.meta["refit"], "train_samples": len(table)}
    return evaluate.to_json_ready(results)


def _dumps(doc):
    return json.dumps(doc, sort_keys=False, allow_nan=True)


def test_stage_calls_reproduce_the_former_notebook_metrics(run):
    params, grid, layout, truth = run
    data = ts.load_training_data(layout)
    bundle = ts.fit_model(params, data, layout)
    baseline = ts.fit_baseline(data)
    feats = features.read_features(layout.root)
    cv = ts.block_cv(params, data, bundle, feats, region_windows(params, grid, "train"))
    held = ts.holdout(params, data, bundle, baseline, feats,
                      read_cog(layout.labels, chunks=None).values[0],
                      region_windows(params, grid, "predict"), truth)
    result = ts.evaluation(params, data, bundle, baseline, cv, held)
    ts.write_metrics(result, layout)
    written = json.loads(layout.metrics.read_text())
    # the reference reloads the saved model, as the notebook's cells did with the fitted one
    assert _dumps(written) == _dumps(_notebook_05_before(params, grid, layout, truth))
    assert list(written) == ["block_cv", "holdout_bottom_vs_labels", "holdout_bottom_vs_truth",
                             "baseline", "training"]
    assert result.headline == "holdout_bottom_vs_truth"
    assert result.summary().loc["holdout_bottom_vs_truth", "overall_accuracy"] == \
        written["holdout_bottom_vs_truth"]["overall_accuracy"]
    assert written["holdout_bottom_vs_truth"]["overall_accuracy"] > 0.9  # separable classes
    shown = held.maps[-1]
    assert shown.window.grid_in(grid) == region_grid(params, grid, "bottom")
    with pytest.raises(AttributeError):
        result.training = {}  # frozen


def test_evaluate_run_reruns_a_finished_run_and_keeps_other_sections(run):
    params, grid, layout, _ = run
    data = ts.load_training_data(layout)
    ts.fit_model(params, data, layout)
    layout.metrics.write_text(json.dumps({"water": {"f1": 1.0}}))
    result = ts.evaluate_run(layout.root)
    written = json.loads(layout.metrics.read_text())
    assert written["water"] == {"f1": 1.0}
    reference = _notebook_05_before(params, grid, layout, None)
    assert _dumps({k: written[k] for k in reference}) == _dumps(reference)
    assert result.headline == "holdout_bottom_vs_labels"  # no truth outside the demo world


def test_cli_evaluate_prints_the_scores_and_refuses_an_unfinished_run(run, tmp_path, capsys):
    from lcgee import cli

    params, _, layout, _ = run
    ts.fit_model(params, ts.load_training_data(layout), layout)
    assert cli.main(["evaluate", str(layout.root)]) == 0
    out = capsys.readouterr().out
    written = json.loads(layout.metrics.read_text())
    assert f"block CV overall accuracy {written['block_cv']['overall_accuracy']:.3f}" in out
    assert "holdout_bottom_vs_labels" in out
    assert cli.main(["evaluate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "lcgee evaluate" in err and "params.yaml" in err and "Fix:" in err
