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
import pandas as pd

import lcgee
from lcgee import features, files, plots
from lcgee import train_stage as ts
from lcgee.raster import read_cog

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
data = ts.load_training_data(stage.layout)
bundle = ts.fit_model(p, data, stage.layout)
baseline = ts.fit_baseline(data)
print(ts.describe_fit(bundle, data))

# %%
importance = pd.Series(bundle.booster.feature_importance("gain"), index=data.feature_names)
importance = importance.sort_values()
ax = importance.plot.barh(figsize=(6, 4), title="Feature importance (gain)")

# %% [markdown]
# ## 1. Spatial block cross-validation (training regions)
# Area-adjusted figures for the training regions use the final model's map of them as strata.
# The CV samples were stratified by label, not by map class, so these are indicative only.

# %%
feats = features.read_features(stage.run_dir)
cv = ts.block_cv(p, data, bundle, feats, stage.windows("train"))
print(cv.describe())

# %% [markdown]
# ## 2. The held-out region(s)

# %%
wc = read_cog(stage.layout.labels, chunks=None).values[0]
truth = stage.world.truth_landcover() if stage.world is not None else None
held = ts.holdout(p, data, bundle, baseline, feats, wc, stage.windows("predict"), truth)
result = ts.evaluation(p, data, bundle, baseline, cv, held)
ts.write_metrics(result, stage.layout)
result.summary().round(3)

# %% [markdown]
# Area-adjusted accuracy (Olofsson et al. 2014) on the held-out region: overall accuracy and
# class areas with 95 % confidence intervals, from a stratified sample of the map.

# %%
print(result.describe_area_adjusted())
result.areas().round(1)

# %%
fig = result.confusion_figure()
with files.atomic_path(stage.layout.confusion) as tmp:
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")

# %% [markdown]
# ## Where the model disagrees with the labels (held-out region)

# %%
shown = held.maps[-1]
fig = plots.difference_figure(shown.predicted, shown.references["labels"],
                              shown.window.grid_in(stage.grid),
                              note="synthetic demo world" if stage.world is not None else "")
with files.atomic_path(stage.layout.difference) as tmp:
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
