# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Train LightGBM and evaluate it honestly
# LightGBM multiclass on the training regions' samples: early stopping on held-out spatial
# blocks picks the number of rounds, then the model is refit on every sample (`train.refit`)
# and saved to `model/`. Next to it, a **baseline**: plain LightGBM (library defaults, all
# samples, no early stopping) on the same features and split, so you see whether lcgee's
# choices help. Evaluation never relies on a random pixel split:
# 1. **spatial block cross-validation** inside the training regions (whole blocks per fold);
# 2. the **held-out region**, never seen in training, against the WorldCover labels and, on the
#    demo world, against the synthetic truth, with Olofsson et al. (2014) area-adjusted
#    accuracy and class areas (95 % confidence intervals).
#
# Labels are noisy (WorldCover ~75 %): accuracy against them is bounded by their own errors.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import json

import numpy as np
import pandas as pd

import lcgee
from lcgee import evaluate, features, files, labels, plots, predict, train
from lcgee.raster import read_cog

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
table = pd.read_parquet(stage.path("samples.parquet"))
names = [str(b) for b in features.read_features(stage.run_dir)["band"].values]
classes = sorted(int(c) for c in table["label"].unique())
bundle = train.train_lightgbm(table, names, p.train, class_values=classes, meta={
    "params_digest": p.digest(), "training_regions": sorted(p.regions_with("train")),
    "resolution": p.grid.resolution, "harmonized": p.load.harmonize,
    "composite_method": p.composite.method, "lcgee_version": lcgee.__version__})
train.save_bundle(bundle, stage.folder("model"))
sampling = json.loads(stage.path("samples.json").read_text()) \
    if stage.path("samples.json").is_file() else {}
baseline = train.train_baseline(table, names, class_values=classes)
print(f"{bundle.meta['num_trees']} trees ({bundle.meta['best_iteration']} iterations x "
      f"{len(classes)} classes, chosen by early stopping on {bundle.meta['validation_samples']} "
      f"samples of held-out blocks), fitted on {bundle.meta['train_samples']} samples; "
      f"block size {sampling.get('blocks', {}).get('block_size_m')} m")

# %%
importance = pd.Series(bundle.booster.feature_importance("gain"), index=names).sort_values()
ax = importance.plot.barh(figsize=(6, 4), title="Feature importance (gain)")

# %% [markdown]
# ## 1. Spatial block cross-validation (training regions)

# %%
splits = evaluate.block_cv_splits(table["block"].to_numpy(), n_splits=p.train.cv_folds,
                                  seed=p.train.seed)
oof = train.cross_validate(table, names, p.train, splits, class_values=classes)
results = {"block_cv": evaluate.metrics(oof["label"], oof["predicted"], classes)}
oof_base = train.cross_validate(table, names, p.train, splits, class_values=classes,
                                baseline=True)
baseline_results = {"block_cv": evaluate.metrics(oof_base["label"], oof_base["predicted"],
                                                 classes)}
# Area-adjusted figures for the training regions: strata are the final model's map of them.
# The CV samples were stratified by label, not by map class, so these are indicative only.
mapped = {}
for name in p.regions_with("train"):
    rg = stage.region_grid(name)
    (r0, c0), (h, w) = rg.offset_in(stage.grid), rg.shape
    region_map = predict.predict_map(features.read_features(stage.run_dir)[:, r0:r0 + h,
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
print(f"block CV overall accuracy {results['block_cv']['overall_accuracy']:.3f}, "
      f"macro-F1 {results['block_cv']['macro_f1']:.3f} (vs WorldCover labels)")

# %% [markdown]
# ## 2. The held-out region(s)

# %%
wc = read_cog(stage.path("labels.tif"), chunks=None).values[0]
feats = features.read_features(stage.run_dir)
truth = stage.world.truth_landcover() if stage.world is not None else None
for name in p.regions_with("predict"):
    rg = stage.region_grid(name)
    (r0, c0), (h, w) = rg.offset_in(stage.grid), rg.shape
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
files.write_json(stage.path("metrics.json"), evaluate.to_json_ready(results))
scored = [k for k in results if k == "block_cv" or k.startswith("holdout")]
summary = pd.DataFrame({k: {m: results[k][m] for m in ("overall_accuracy", "kappa", "macro_f1")}
                        for k in scored}).T
summary["baseline_overall_accuracy"] = [baseline_results[k]["overall_accuracy"] for k in scored]
summary.round(3)

# %% [markdown]
# Area-adjusted accuracy (Olofsson et al. 2014) on the held-out region: overall accuracy and
# class areas with 95 % confidence intervals, from a stratified sample of the map.

# %%
key = next(k for k in results if k.startswith("holdout") and k.endswith("truth")) \
    if truth is not None else next(k for k in results if k.startswith("holdout"))
aa = results[key]["area_adjusted"]
print(f"{key}: area-adjusted overall accuracy {aa['overall_accuracy']:.3f} "
      f"± {aa['overall_accuracy_ci95']:.3f}")
areas = pd.DataFrame(aa["area_ha"]).T[["mapped", "estimate", "ci95_ha"]]
areas.index = labels.class_names(areas.index)
areas.round(1)

# %%
cm = np.array(results[key]["confusion"])
fig = evaluate.confusion_figure(cm, results[key]["classes"], title=f"{key} (rows: reference)")
with files.atomic_path(stage.path("confusion.png")) as tmp:
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")

# %% [markdown]
# ## Where the model disagrees with the labels (held-out region)

# %%
fig = plots.difference_figure(pred, refs["labels"], rg,
                              note="synthetic demo world" if stage.world is not None else "")
with files.atomic_path(stage.path("difference.png")) as tmp:
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
