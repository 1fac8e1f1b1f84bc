"""The train stage (notebook 05, ``lcgee evaluate``): train, evaluate two ways, write metrics.

Thin glue over :mod:`lcgee.train` and :mod:`lcgee.evaluate`, returning frozen result objects
so the notebook is one call per step and the CLI can rerun the evaluation of a finished run:

- :func:`load_training_data` reads the samples of notebook 04;
- :func:`fit_model` trains lcgee's model and saves it to ``model/``;
- :func:`block_cv` scores spatial block cross-validation inside the training regions;
- :func:`holdout` scores the held-out region(s) against the labels (and, on the demo world,
  the synthetic truth), next to a plain-LightGBM baseline;
- :class:`Evaluation` assembles ``metrics.json``; :func:`evaluate_run` does all of it for a
  finished run directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import lcgee
from lcgee import evaluate, train
from lcgee.demo.world import WorldSpec, build_world
from lcgee.errors import StageError
from lcgee.features import read_features
from lcgee.files import write_json
from lcgee.labels import class_names
from lcgee.layout import RunLayout, Window, region_windows
from lcgee.params import Params, load_params
from lcgee.predict import predict_map
from lcgee.raster import read_cog
from lcgee.stage import build_grid
from lcgee.train import ModelBundle

__all__ = ["TrainingData", "BlockCV", "RegionMaps", "Holdout", "Evaluation",
           "load_training_data", "fit_model", "fit_baseline", "describe_fit", "block_cv",
           "holdout", "evaluation", "training_record", "evaluate_run", "write_metrics"]


@dataclass(frozen=True)
class TrainingData:
    """The samples of the training regions and what the stage needs to know about them."""

    table: pd.DataFrame
    feature_names: list[str]
    classes: list[int]
    sampling: dict[str, Any]  #: ``samples.json`` (empty when absent)

    @property
    def block_size_m(self) -> float | None:
        return self.sampling.get("blocks", {}).get("block_size_m")


def load_training_data(layout: RunLayout) -> TrainingData:
    """``samples.parquet``, the feature names of ``features.tif`` and ``samples.json``."""
    table = pd.read_parquet(layout.samples)
    names = [str(b) for b in read_features(layout.root)["band"].values]
    classes = sorted(int(c) for c in table["label"].unique())
    sampling = json.loads(layout.sampling.read_text()) if layout.sampling.is_file() else {}
    return TrainingData(table, names, classes, sampling)


def fit_model(params: Params, data: TrainingData, layout: RunLayout) -> ModelBundle:
    """lcgee's LightGBM model (early stopping on held-out blocks, refit), saved to ``model/``."""
    bundle = train.train_lightgbm(data.table, data.feature_names, params.train,
                                  class_values=data.classes, meta={
        "params_digest": params.digest(), "training_regions": sorted(params.regions_with("train")),
        "resolution": params.grid.resolution, "harmonized": params.load.harmonize,
        "composite_method": params.composite.method, "lcgee_version": lcgee.__version__})
    train.save_bundle(bundle, layout.model)
    return bundle


def fit_baseline(data: TrainingData) -> ModelBundle:
    """Plain LightGBM (library defaults, every sample, no early stopping) on the same samples."""
    return train.train_baseline(data.table, data.feature_names, class_values=data.classes)


def describe_fit(bundle: ModelBundle, data: TrainingData) -> str:
    """One sentence on what training chose."""
    m = bundle.meta
    return (f"{m['num_trees']} trees ({m['best_iteration']} iterations x {len(data.classes)} "
            f"classes, chosen by early stopping on {m['validation_samples']} samples of held-out "
            f"blocks), fitted on {m['train_samples']} samples; block size {data.block_size_m} m")


@dataclass(frozen=True)
class BlockCV:
    """Spatial block cross-validation inside the training regions."""

    metrics: dict[str, Any]  #: lcgee's model, with indicative area-adjusted figures
    baseline_metrics: dict[str, Any]  #: the plain-LightGBM baseline

    def describe(self) -> str:
        return (f"block CV overall accuracy {self.metrics['overall_accuracy']:.3f}, "
                f"macro-F1 {self.metrics['macro_f1']:.3f} (vs WorldCover labels)")


def block_cv(params: Params, data: TrainingData, bundle: ModelBundle, features: xr.DataArray,
             train_windows: Sequence[Window]) -> BlockCV:
    """Out-of-fold scores over whole spatial blocks, for lcgee's model and the baseline.

    Area-adjusted figures use the final model's map of the training regions as strata; the
    samples were stratified by label, not by map class, so they are indicative only.
    """
    table, names, classes = data.table, data.feature_names, data.classes
    splits = evaluate.block_cv_splits(table["block"].to_numpy(), n_splits=params.train.cv_folds,
                                      seed=params.train.seed)
    oof = train.cross_validate(table, names, params.train, splits, class_values=classes)
    scores = evaluate.metrics(oof["label"], oof["predicted"], classes)
    oof_base = train.cross_validate(table, names, params.train, splits, class_values=classes,
                                    baseline=True)
    base_scores = evaluate.metrics(oof_base["label"], oof_base["predicted"], classes)
    mapped = _mapped_pixels(features, bundle, train_windows)
    scores["area_adjusted"] = evaluate.area_adjusted(
        oof["label"].to_numpy(), oof["predicted"].to_numpy(), mapped, classes,
        pixel_area_m2=params.grid.resolution ** 2)
    scores["area_adjusted"]["note"] = "samples stratified by label, not by map class: indicative only"
    return BlockCV(scores, base_scores)


def _mapped_pixels(features: xr.DataArray, bundle: ModelBundle, windows: Sequence[Window]
                   ) -> dict[int, int]:
    """Pixels per mapped class over ``windows`` (nodata 0 left out), in first-seen order."""
    mapped: dict[int, int] = {}
    for win in windows:
        codes, counts = np.unique(predict_map(win.cut(features), bundle).values, return_counts=True)
        for c, n in zip(codes, counts):
            if c:
                mapped[int(c)] = mapped.get(int(c), 0) + int(n)
    return mapped


@dataclass(frozen=True)
class RegionMaps:
    """The maps of one held-out region (run-grid window) and its references."""

    window: Window
    predicted: np.ndarray  #: lcgee's model (0: no valid features)
    baseline: np.ndarray  #: the plain-LightGBM baseline
    references: Mapping[str, np.ndarray]  #: ``labels`` and, on the demo world, ``truth``


@dataclass(frozen=True)
class Holdout:
    """Scores on the held-out region(s), keyed ``holdout_<region>_vs_<reference>``."""

    metrics: dict[str, dict[str, Any]]
    baseline_metrics: dict[str, dict[str, Any]]
    maps: list[RegionMaps]


def holdout(params: Params, data: TrainingData, bundle: ModelBundle, baseline: ModelBundle,
            features: xr.DataArray, labels: np.ndarray, predict_windows: Sequence[Window],
            truth: np.ndarray | None = None) -> Holdout:
    """Both models on every held-out window against the labels (and the truth, if given)."""
    scores: dict[str, dict[str, Any]] = {}
    base_scores: dict[str, dict[str, Any]] = {}
    maps = []
    for win in predict_windows:
        X = np.asarray(win.cut(features).values, dtype=np.float64)
        valid = np.all(np.isfinite(X), axis=0)
        pred, pred_base = (_labels_where(m, X, valid) for m in (bundle, baseline))
        refs = {"labels": win.cut(labels)}
        if truth is not None:
            refs["truth"] = win.cut(truth)
        for ref_name, ref in refs.items():
            key = f"holdout_{win.name}_vs_{ref_name}"
            scores[key] = evaluate.evaluate_map(pred, ref, data.classes, seed=params.train.seed,
                                                pixel_area_m2=params.grid.resolution ** 2)
            both = (pred_base > 0) & (ref > 0)
            base_scores[key] = evaluate.metrics(
                ref[both], pred_base[both],
                sorted(set(data.classes) | {int(c) for c in np.unique(ref[ref > 0])}))
        maps.append(RegionMaps(win, pred, pred_base, refs))
    return Holdout(scores, base_scores, maps)


def _labels_where(bundle: ModelBundle, X: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.zeros(valid.shape, np.uint8)
    out[valid] = bundle.predict_labels(X[:, valid].T)
    return out


@dataclass(frozen=True)
class Evaluation:
    """Everything ``metrics.json`` holds about the LightGBM model, and views of it."""

    block_cv: BlockCV
    holdout: Holdout
    baseline_model: dict[str, Any]  #: the baseline's rounds and sample count
    training: dict[str, Any]  #: block size, sampling, early stopping, refit

    @property
    def results(self) -> dict[str, Any]:
        """The ``metrics.json`` document (before JSON conversion), in its published order."""
        baseline = {"block_cv": self.block_cv.baseline_metrics, **self.holdout.baseline_metrics,
                    "model": self.baseline_model}
        return {"block_cv": self.block_cv.metrics, **self.holdout.metrics, "baseline": baseline,
                "training": self.training}

    @property
    def headline(self) -> str:
        """The key shown in detail: the held-out region against the truth when there is one."""
        keys = list(self.holdout.metrics)
        return next((k for k in keys if k.endswith("truth")), keys[0])

    def summary(self) -> pd.DataFrame:
        """Overall accuracy, kappa and macro-F1 per score, with the baseline's accuracy."""
        scored = {"block_cv": self.block_cv.metrics, **self.holdout.metrics}
        base = {"block_cv": self.block_cv.baseline_metrics, **self.holdout.baseline_metrics}
        table = pd.DataFrame({k: {m: v[m] for m in ("overall_accuracy", "kappa", "macro_f1")}
                              for k, v in scored.items()}).T
        table["baseline_overall_accuracy"] = [base[k]["overall_accuracy"] for k in scored]
        return table

    def describe_area_adjusted(self) -> str:
        aa = self.holdout.metrics[self.headline]["area_adjusted"]
        return (f"{self.headline}: area-adjusted overall accuracy {aa['overall_accuracy']:.3f} "
                f"± {aa['overall_accuracy_ci95']:.3f}")

    def areas(self) -> pd.DataFrame:
        """Mapped and area-adjusted class areas (ha, 95 % CI) of the headline score."""
        aa = self.holdout.metrics[self.headline]["area_adjusted"]
        areas = pd.DataFrame(aa["area_ha"]).T[["mapped", "estimate", "ci95_ha"]]
        areas.index = class_names(areas.index)
        return areas

    def confusion_figure(self) -> Any:
        m = self.holdout.metrics[self.headline]
        return evaluate.confusion_figure(np.array(m["confusion"]), m["classes"],
                                         title=f"{self.headline} (rows: reference)")


def training_record(params: Params, data: TrainingData, bundle: ModelBundle) -> dict[str, Any]:
    """The ``training`` section of ``metrics.json``."""
    return {"block_size_m": data.block_size_m, "blocks": data.sampling.get("blocks"),
            "sampling": params.labels.sampling, "best_iteration": bundle.meta["best_iteration"],
            "refit": bundle.meta["refit"], "train_samples": len(data.table)}


def evaluation(params: Params, data: TrainingData, bundle: ModelBundle, baseline: ModelBundle,
               cv: BlockCV, held: Holdout) -> Evaluation:
    """Assemble the scores of :func:`block_cv` and :func:`holdout`."""
    return Evaluation(cv, held, {k: baseline.meta[k] for k in ("num_iterations", "train_samples")},
                      training_record(params, data, bundle))


def write_metrics(result: Evaluation, layout: RunLayout, *, keep_other_sections: bool = False
                  ) -> Path:
    """``metrics.json`` (atomically). ``keep_other_sections`` keeps what other stages wrote
    there (e.g. notebook 09's ``water``), as a rerun by ``lcgee evaluate`` must."""
    doc = evaluate.to_json_ready(result.results)
    if keep_other_sections and layout.metrics.is_file():
        doc = {**json.loads(layout.metrics.read_text()), **doc}
    return write_json(layout.metrics, doc)


def evaluate_run(run_dir: str | Path, *, truth: np.ndarray | None = None,
                 write: bool = True) -> Evaluation:
    """Rerun the evaluation of a finished run with its saved model (``lcgee evaluate``).

    Reads ``params.yaml``, the samples, features, labels and ``model/`` of ``run_dir``; on a
    demo run the synthetic truth is rebuilt from the demo world unless ``truth`` is given.
    Writes ``metrics.json`` (keeping other stages' sections) unless ``write`` is false.
    """
    layout = RunLayout(Path(run_dir))
    _require_finished(layout)
    params = load_params(layout.params)
    grid = build_grid(params, layout.root)
    data = load_training_data(layout)
    bundle = train.load_bundle(layout.model)
    baseline = fit_baseline(data)
    features = read_features(layout.root)
    if truth is None and params.is_demo:
        truth = _demo_truth(params)
    cv = block_cv(params, data, bundle, features, region_windows(params, grid, "train", layout.root))
    labels = read_cog(layout.labels, chunks=None).values[0]
    held = holdout(params, data, bundle, baseline, features, labels,
                   region_windows(params, grid, "predict", layout.root), truth)
    result = evaluation(params, data, bundle, baseline, cv, held)
    if write:
        write_metrics(result, layout, keep_other_sections=True)
    return result


def _require_finished(layout: RunLayout) -> None:
    needed = [layout.params, layout.samples, layout.features, layout.labels, layout.model]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise StageError(f"{layout.root} is not a run that finished notebook 05: no {', '.join(missing)}",
                         where="lcgee evaluate",
                         fix="give the output directory of a finished `lcgee run` (e.g. outputs/demo)")


def _demo_truth(params: Params) -> np.ndarray:
    return build_world(WorldSpec(seed=params.demo.seed, size=params.demo.size)).truth_landcover()
