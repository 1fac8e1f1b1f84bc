"""Benchmark: lcgee's training defaults vs its previous defaults vs plain LightGBM.

Run as ``python bench/training_defaults.py RUN_DIR`` on a finished demo run (stages 01-04
done: ``features.tif``, ``labels.tif``, ``params.yaml``). From the same features and labels
it builds three models and scores each on the held-out region against the labels and, on
the demo world, against the synthetic truth (overall accuracy over every pixel, and
macro-F1):

* ``previous``: lcgee before decision 0009: balanced sampling (up to 2,000 per class and
  region), 640 m blocks, early stopping on 20 % of the blocks and no refit;
* ``defaults``: today's defaults (proportional sampling with a floor, block size from the
  labels, early stopping then refit on every sample);
* ``baseline``: plain LightGBM (library defaults, 100 rounds, all samples of the defaults'
  table, no early stopping), as in ``metrics.json``;
* ``balanced_refit``: balanced sampling with today's other defaults (the sampling's effect);
* ``no_refit``: today's defaults without the refit (the refit's effect);
* ``blocks_640m``: today's defaults with the previous fixed 640 m blocks (the block rule's).

The last printed line is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lcgee import blocks, evaluate, features, samples, train  # noqa: E402
from lcgee.params import TrainParams, load_params  # noqa: E402
from lcgee.raster import read_cog  # noqa: E402
from lcgee.stage import area_grid, build_grid  # noqa: E402


def main(run_dir: Path) -> dict:
    p = load_params(run_dir / "params.yaml")
    grid = build_grid(p)
    feats = features.read_features(run_dir)
    names = [str(b) for b in feats["band"].values]
    wc = read_cog(run_dir / "labels.tif", chunks=None).values[0]
    truth = None
    if p.is_demo:
        from lcgee.demo.world import WorldSpec, build_world

        truth = build_world(WorldSpec(seed=p.demo.seed, size=p.demo.size)).truth_landcover()
    regions = {k: area_grid(r, p.grid.resolution, p.grid.crs) for k, r in p.regions.items()}
    train_regions = {k: g for k, g in regions.items() if p.regions[k].role == "train"}
    region_labels = {}
    for name, rg in train_regions.items():
        (r0, c0), (h, w) = rg.offset_in(grid), rg.shape
        region_labels[name] = wc[r0:r0 + h, c0:c0 + w]
    auto = blocks.choose_block_size(region_labels, p.grid.resolution)
    tables = {
        "previous": samples.collect(feats, wc, train_regions, grid, block_px=64, per_class=2000,
                                    seed=0, balance=True),
        "defaults": samples.collect(feats, wc, train_regions, grid, block_px=auto.block_px,
                                    per_class=2000, seed=0, balance=False, floor=100),
        "balanced": samples.collect(feats, wc, train_regions, grid, block_px=auto.block_px,
                                    per_class=2000, seed=0, balance=True),
        "blocks_640m": samples.collect(feats, wc, train_regions, grid, block_px=64,
                                       per_class=2000, seed=0, balance=False, floor=100),
    }
    cfg = TrainParams(num_iterations=p.train.num_iterations)
    classes = sorted(int(c) for c in np.unique(wc[wc > 0]))
    models = {}
    t0 = time.perf_counter()
    models["previous"] = train.train_lightgbm(tables["previous"], names,
                                              cfg.model_copy(update={"refit": False}),
                                              class_values=classes)
    models["defaults"] = train.train_lightgbm(tables["defaults"], names, cfg,
                                              class_values=classes)
    models["baseline"] = train.train_baseline(tables["defaults"], names, class_values=classes)
    models["balanced_refit"] = train.train_lightgbm(tables["balanced"], names, cfg,
                                                    class_values=classes)
    models["no_refit"] = train.train_lightgbm(tables["defaults"], names,
                                              cfg.model_copy(update={"refit": False}),
                                              class_values=classes)
    models["blocks_640m"] = train.train_lightgbm(tables["blocks_640m"], names, cfg,
                                                 class_values=classes)
    seconds = time.perf_counter() - t0
    scores: dict = {}
    for name, rg in regions.items():
        if p.regions[name].role != "predict":
            continue
        (r0, c0), (h, w) = rg.offset_in(grid), rg.shape
        X = np.asarray(feats[:, r0:r0 + h, c0:c0 + w].values, dtype=np.float64)
        valid = np.all(np.isfinite(X), axis=0)
        refs = {"labels": wc[r0:r0 + h, c0:c0 + w]}
        if truth is not None:
            refs["truth"] = truth[r0:r0 + h, c0:c0 + w]
        for model_name, bundle in models.items():
            pred = np.zeros((h, w), np.int64)
            pred[valid] = bundle.predict_labels(X[:, valid].T)
            for ref_name, ref in refs.items():
                ok = (pred > 0) & (ref > 0)
                present = sorted(set(classes) | {int(c) for c in np.unique(ref[ok])})
                m = evaluate.metrics(ref[ok], pred[ok], present)
                scores.setdefault(model_name, {})[f"{name}_vs_{ref_name}"] = {
                    "overall_accuracy": round(m["overall_accuracy"], 4),
                    "macro_f1": round(m["macro_f1"], 4)}
    for model_name, bundle in models.items():
        scores[model_name]["iterations"] = bundle.meta.get("best_iteration",
                                                           bundle.meta.get("num_iterations"))
        scores[model_name]["train_samples"] = bundle.meta["train_samples"]
    scores["block_choice"] = auto.to_dict()
    scores["train_seconds_all_models"] = round(seconds, 1)
    return scores


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    for key, value in result.items():
        print(key, value)
    print(json.dumps(result))
