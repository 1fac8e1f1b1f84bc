"""LightGBM training with a spatial validation split, and the saved model bundle.

Models are trained so Earth Engine can reproduce them: numeric features only, no NaN in the
data and ``use_missing=False`` (Earth Engine's trees have no default direction), depth capped
(node ids double per level). The bundle in ``model/`` holds ``model.txt`` (LightGBM's text
format) and ``model.json`` (feature names in order, class values, provenance).

Early stopping only picks the number of boosting rounds: with ``train.refit`` (the default)
the final model is trained again on *every* sample for that many rounds, so the blocks held
out for early stopping are not lost to it. :func:`train_baseline` is plain LightGBM (library
defaults, all samples, no early stopping), scored next to lcgee's model in ``metrics.json``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcgee.errors import DataError, ModelError
from lcgee.files import atomic_path, write_json
from lcgee.params import TrainParams

__all__ = ["ModelBundle", "train_lightgbm", "lightgbm_params", "save_bundle", "load_bundle",
           "validation_blocks", "cross_validate", "train_baseline", "BASELINE_PARAMS"]

#: Plain LightGBM: the library's defaults (100 rounds, learning rate 0.1, 31 leaves, no depth
#: limit, 20 samples per leaf), made deterministic; only what multiclass needs is set.
BASELINE_PARAMS: dict[str, Any] = {"objective": "multiclass", "num_threads": 1,
                                   "deterministic": True, "force_row_wise": True,
                                   "verbose": -1, "seed": 0}
BASELINE_ROUNDS = 100


@dataclass
class ModelBundle:
    """A trained booster with what it needs to be applied elsewhere."""

    booster: Any
    feature_names: list[str]
    class_values: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    def predict_index(self, X: np.ndarray) -> np.ndarray:
        """Class index per row with LightGBM's own predictor (the reference)."""
        return np.argmax(self.booster.predict(X), axis=1)

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.class_values)[self.predict_index(X)]


def lightgbm_params(cfg: TrainParams, num_class: int) -> dict[str, Any]:
    """LightGBM parameters: multiclass, deterministic, Earth Engine compatible.

    One thread: training tables are small (tens of thousands of rows), and on a busy machine
    OpenMP's spin-waiting made two threads ~50x slower than one (0.45 s vs 22 s for 100
    rounds on 4,600 rows at load 11; docs/decisions/0009).
    """
    return {
        "objective": "multiclass", "num_class": num_class, "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves, "max_depth": cfg.max_depth,
        "min_data_in_leaf": cfg.min_data_in_leaf, "use_missing": False,
        "zero_as_missing": False, "seed": cfg.seed, "deterministic": True,
        "force_row_wise": True, "num_threads": 1, "verbose": -1,
    }


def validation_blocks(blocks: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of samples in a random ``fraction`` of spatial blocks (for early stopping)."""
    unique = np.array(sorted(blocks.unique()))
    if len(unique) < 2:
        raise DataError("fewer than two spatial blocks: cannot hold out a validation split",
                        where="train", fix="use larger regions or a smaller labels.block_size")
    rng = np.random.default_rng(seed)
    n = max(1, int(round(len(unique) * fraction)))
    chosen = set(rng.choice(unique, size=n, replace=False))
    return blocks.isin(chosen).to_numpy()


def train_lightgbm(samples: pd.DataFrame, feature_names: Sequence[str], cfg: TrainParams, *,
                   class_values: Sequence[int] | None = None, valid_fraction: float | None = None,
                   meta: dict[str, Any] | None = None) -> ModelBundle:
    """Train a multiclass LightGBM model, early-stopping on held-out spatial blocks.

    ``valid_fraction`` of the blocks (default ``cfg.valid_fraction``) picks the number of
    rounds; with ``cfg.refit`` the returned model is then trained on all samples.
    """
    import lightgbm as lgb

    X = samples[list(feature_names)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise DataError("training features contain NaN or inf", where="train",
                        fix="sample only pixels with a valid composite (lcgee.samples does)")
    classes = sorted(int(c) for c in (class_values or samples["label"].unique()))
    index = {c: i for i, c in enumerate(classes)}
    y = samples["label"].map(index)
    if y.isna().any():
        raise DataError(f"labels {sorted(samples.loc[y.isna(), 'label'].unique())} are not in "
                        f"class_values {classes}", where="train")
    valid_fraction = cfg.valid_fraction if valid_fraction is None else valid_fraction
    valid = validation_blocks(samples["block"], valid_fraction, cfg.seed)
    params = lightgbm_params(cfg, len(classes))
    yv = y.to_numpy()
    train_set = lgb.Dataset(X[~valid], yv[~valid], feature_name=list(feature_names),
                            free_raw_data=False)
    valid_set = lgb.Dataset(X[valid], yv[valid], reference=train_set)
    callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)] \
        if cfg.early_stopping_rounds else []
    booster = lgb.train(params, train_set, num_boost_round=cfg.num_iterations,
                        valid_sets=[valid_set], valid_names=["spatial_validation"],
                        callbacks=callbacks)
    best = booster.best_iteration or booster.current_iteration()
    info = {"best_iteration": best, "train_samples": int((~valid).sum()),
            "validation_samples": int(valid.sum()), "refit": bool(cfg.refit),
            "lightgbm_params": params}
    if cfg.refit:
        everything = lgb.Dataset(X, yv, feature_name=list(feature_names), free_raw_data=False)
        booster = lgb.train(params, everything, num_boost_round=best)
        info["train_samples"] = int(len(yv))
    elif booster.best_iteration and booster.best_iteration < booster.current_iteration():
        booster = lgb.Booster(model_str=booster.model_to_string(
            num_iteration=booster.best_iteration))
    info.update({"num_trees": booster.num_trees(),
                 "trained": dt.datetime.now(dt.UTC).isoformat(), **(meta or {})})
    return ModelBundle(booster, list(feature_names), classes, info)


def train_baseline(samples: pd.DataFrame, feature_names: Sequence[str], *,
                   class_values: Sequence[int] | None = None,
                   meta: dict[str, Any] | None = None) -> ModelBundle:
    """Plain LightGBM on every sample: :data:`BASELINE_PARAMS`, 100 rounds, no early stopping.

    The reference lcgee's defaults must not lose to. NaN features are refused as by
    :func:`train_lightgbm` (both models see the same table).
    """
    import lightgbm as lgb

    X = samples[list(feature_names)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise DataError("training features contain NaN or inf", where="baseline")
    classes = sorted(int(c) for c in (class_values or samples["label"].unique()))
    y = samples["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    params = {**BASELINE_PARAMS, "num_class": len(classes)}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(feature_names)),
                        num_boost_round=BASELINE_ROUNDS)
    info = {"baseline": True, "num_trees": booster.num_trees(), "train_samples": int(len(y)),
            "lightgbm_params": params, "num_iterations": BASELINE_ROUNDS, **(meta or {})}
    return ModelBundle(booster, list(feature_names), classes, info)


def save_bundle(bundle: ModelBundle, directory: Path) -> Path:
    """``model.txt`` and ``model.json`` in ``directory``, each written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "model.txt") as tmp:
        bundle.booster.save_model(str(tmp))
    write_json(directory / "model.json", {"feature_names": bundle.feature_names,
                                          "class_values": bundle.class_values, **bundle.meta})
    return directory


def load_bundle(directory: Path) -> ModelBundle:
    """The bundle saved by :func:`save_bundle`."""
    import lightgbm as lgb

    if not (directory / "model.txt").is_file() or not (directory / "model.json").is_file():
        raise ModelError(f"no model.txt/model.json in {directory}", where="model",
                         fix="run the 05_train stage first")
    meta = json.loads((directory / "model.json").read_text())
    booster = lgb.Booster(model_file=str(directory / "model.txt"))
    return ModelBundle(booster, meta.pop("feature_names"), meta.pop("class_values"), meta)


def cross_validate(samples: pd.DataFrame, feature_names: Sequence[str], cfg: TrainParams,
                   splits: Sequence[tuple[np.ndarray, np.ndarray]], *,
                   class_values: Sequence[int], baseline: bool = False) -> pd.DataFrame:
    """Out-of-fold predictions over spatial-block ``splits``: ``label``, ``predicted``, ``fold``.

    Each fold's model is trained exactly as the final one (early stopping on blocks of the
    fold's training part, then refit), so the score estimates what the final model does on
    new blocks. ``baseline`` trains :func:`train_baseline` instead (``cfg`` unused).
    """
    parts = []
    for fold, (train_idx, test_idx) in enumerate(splits):
        part = samples.iloc[train_idx]
        bundle = train_baseline(part, feature_names, class_values=class_values) if baseline \
            else train_lightgbm(part, feature_names, cfg, class_values=class_values)
        test = samples.iloc[test_idx]
        X = test[list(feature_names)].to_numpy(dtype=np.float64)
        parts.append(pd.DataFrame({"label": test["label"].to_numpy(),
                                   "predicted": bundle.predict_labels(X), "fold": fold,
                                   "block": test["block"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)
