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
# # 09 · Surface water: a pixel CNN on noisy labels, corrected, and the same network in Earth Engine
# After Water_gee: water labels from what a user already has (WorldCover class 80, Sen2Cor SCL
# class 6 over the composite period), their noise corrected by self-learning (each class's
# spectra taken as normal), a small pixel-based CNN on 7 x 7 neighbourhoods trained on them (JAX, the
# `lcgee[water]` extra), a chunked water map, and the network rewritten as an Earth Engine
# graph that is evaluated offline and must reproduce the local probabilities.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import numpy as np
import pandas as pd

import lcgee
from lcgee import ee_stage, features, search, water
from lcgee import water_stage as ws
from lcgee.raster import read_cog

stage = lcgee.open_stage(params_file, run_dir, stac_url)
dask_client = stage.dask_client()
p = stage.params
cfg = p.water
client = search.open_client(stage.stac_url, sign=p.stac.sign)
table = pd.read_parquet(stage.layout.scenes)
items = search.fetch_items(client, p.stac.collection, table["id"])
feats_da = features.read_features(stage.run_dir, chunks=None)
feats = ws.water_features(feats_da, cfg.bands)
wc = read_cog(stage.layout.labels, chunks=None).values[0]
frac = (ws.scl_fraction(items, stage.grid, stage.layout.masks, engine=p.load.engine,
                        chunk=p.load.chunk) if cfg.label_source != "worldcover" else None)
noisy = water.noisy_labels(wc, frac, source=cfg.label_source,
                           scl_min_fraction=cfg.scl_min_fraction)
train_w, predict_w = ws.windows(stage, "train"), ws.windows(stage, "predict")
truth = stage.world.truth_landcover() if stage.world is not None else None
subclass = stage.world.truth_subclass() if stage.world is not None else None
print(f"input bands {list(cfg.bands)}; labels from {cfg.label_source}; "
      f"training regions {[w[0] for w in train_w]}, held out {[w[0] for w in predict_w]}")

# %% [markdown]
# ## 1. Noisy labels and their correction (training regions)
# Corrected only inside the training regions; the held-out region never sees its labels.

# %%
correction = ws.correct_in_regions(feats, noisy, train_w, cfg, truth)
corrected = correction.labels
print(correction.history)
correction.noise_summary

# %%
import matplotlib.pyplot as plt

from lcgee import plots

win = train_w[0]
fig = plots.label_panels({"noisy labels": win.cut(noisy), "corrected labels": win.cut(corrected),
                          "demo truth (water)": ws.truth_water(truth, win)}, win.name)

# %% [markdown]
# ## 2. Training: the CNN on noisy labels and on corrected labels

# %%
prov = {"run": p.name, "params_digest": p.digest(), "label_source": cfg.label_source,
        "lcgee": lcgee.__version__}
models = {kind: ws.train_on(feats, lab, train_w, list(cfg.bands), cfg,
                            {**prov, "labels": kind})
          for kind, lab in (("noisy", noisy), ("corrected", corrected))}
water.save_model(models["corrected"], stage.layout.water_model)
fig = plots.training_curves({kind: m.history for kind, m in models.items()})

# %% [markdown]
# ## 3. The water map (chunked, halo 3 px) next to true colour and the LightGBM map

# %%
probs = {"corrected": water.predict_probability(models["corrected"], feats, chunk=cfg.chunk)}
paths = ws.write_water_maps(probs["corrected"], stage.grid, stage.run_dir, run_name=p.name,
                            start=str(p.dates.start), end=str(p.dates.end))
print({k: v.name for k, v in paths.items()})
lc = read_cog(stage.layout.landcover, chunks=None).values[0]
rgb = plots.feature_rgb(feats_da)
name, r, c, h, w = predict_w[0]
fig, axes = plt.subplots(1, 3, figsize=(18, 6))
axes[0].imshow(np.nan_to_num(rgb[r:r + h, c:c + w]))
axes[0].set_title(f"true colour ({name})")
axes[1].imshow(probs["corrected"][r:r + h, c:c + w], cmap="Blues", vmin=0, vmax=1)
axes[1].set_title("water probability (CNN, corrected labels)")
plots.class_map(axes[2], lc[r:r + h, c:c + w], legend=False, title="LightGBM map")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])

# %% [markdown]
# ## 4. Earth Engine: the graph, evaluated offline (dry run)
# Each 3 x 3 layer is `neighborhoodToArray` + one matrix product; the 1 x 1 layers are matrix
# products on `toArray` of the bands (decision record 0012).

# %%
check = ws.verify_graph(models["corrected"], feats_da, probs["corrected"], predict_w[0],
                        composite_bands=list(p.features.bands))
dry = pd.DataFrame([{
    "check": f"water graph offline vs local CNN ({predict_w[0][0]})", "compared": check["pixels"],
    "max |p_ee - p_local|": check["max_probability_diff"],
    "class disagreements": check["class_disagreements"], "exact ties": check["ties"],
    "same nodata": check["nodata_agrees"], "payload (MB)": check["payload_bytes"] / 1e6}])
print("Earth Engine functions used:", ", ".join(check["functions"]))
assert check["max_probability_diff"] <= 1e-5 and check["class_disagreements"] == 0, dry
dry

# %% [markdown]
# ## 5. Water F1 in the held-out region against the demo truth
# (a) NDWI (McFeeters, green / NIR) thresholded by Otsu on the held-out region, (b) the CNN on
# noisy labels, (c) the CNN on corrected labels, (d) the LightGBM map's water class; and the
# share of rice paddies (flooded in early summer) mapped as water.

# %%
scores = ws.held_out_scores(models, feats, feats_da, probs["corrected"], lc, predict_w[0],
                            cfg=cfg, check=check, truth=truth, subclass=subclass,
                            noise=correction.noise)
print(scores.message)
ws.update_metrics(stage.layout.metrics, "water", scores.metrics)
scores.f1_table

# %% [markdown]
# ## 6. Live Earth Engine
# With `ee.project` and credentials, the same image (`lcgee.gee.water.water_image`) runs on the
# server-side composite of notebook 07 (`composite_for_params`), is shown in geemap and exported
# like the land-cover map (`ee.export_to`, started only with `ee.start_export: true`). Without
# them (the demo, CI) the offline dry run above is this stage's Earth Engine result.

# %%
live_water = ws.water_in_earth_engine(p, stage.grid, models["corrected"])
print(live_water.message)
live_water.export_table

# %%
# water drawn as WorldCover's water class (80) on the land-cover viewer (geemap is optional)
view = ee_stage.interactive_map(live_water.landcover, stage.grid)
print(view.message)
view.widget
