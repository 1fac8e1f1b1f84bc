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
table = pd.read_parquet(stage.path("scenes.parquet"))
items = search.fetch_items(client, p.stac.collection, table["id"])
feats_da = features.read_features(stage.run_dir, chunks=None)
feats = ws.water_features(feats_da, cfg.bands)
wc = read_cog(stage.path("labels.tif"), chunks=None).values[0]
frac = (ws.scl_fraction(items, stage.grid, stage.folder("masks"), engine=p.load.engine,
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
corrected = noisy.copy()
rows, history = [], {}
for win in train_w:
    name, r, c, h, w = win
    fixed, history[name] = water.correct_labels(
        feats[:, r:r + h, c:c + w], noisy[r:r + h, c:c + w],
        iterations=cfg.correction_iterations, confidence=cfg.correction_confidence,
        seed=cfg.seed)
    corrected[r:r + h, c:c + w] = fixed
    if truth is not None:
        tw = truth[r:r + h, c:c + w] == water.WATER_CODE
        for kind, lab in (("noisy", noisy[r:r + h, c:c + w]), ("corrected", fixed)):
            rows.append({"region": name, "labels": kind, **water.label_noise(lab, tw)})
noise_table = pd.DataFrame(rows)
print(history)
noise_table.round(4) if len(noise_table) else "no truth outside the demo world"

# %%
import matplotlib.pyplot as plt

from lcgee import plots

name, r, c, h, w = train_w[0]
panels = [noisy[r:r + h, c:c + w], corrected[r:r + h, c:c + w]]
titles = ["noisy labels", "corrected labels"]
if truth is not None:
    panels.append((truth[r:r + h, c:c + w] == water.WATER_CODE).astype(np.uint8))
    titles.append("demo truth (water)")
fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 6))
for ax, img, title in zip(axes, panels, titles):
    ax.imshow(np.where(img == 255, np.nan, img), cmap="Blues", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(f"{title} ({name})")
    ax.set_xticks([])
    ax.set_yticks([])

# %% [markdown]
# ## 2. Training: the CNN on noisy labels and on corrected labels

# %%
prov = {"run": p.name, "params_digest": p.digest(), "label_source": cfg.label_source,
        "lcgee": lcgee.__version__}
models = {kind: ws.train_on(feats, lab, train_w, list(cfg.bands), cfg,
                            {**prov, "labels": kind})
          for kind, lab in (("noisy", noisy), ("corrected", corrected))}
water.save_model(models["corrected"], stage.folder("model", "water"))
fig, ax = plt.subplots(figsize=(7, 4))
for kind, m in models.items():
    hist = pd.DataFrame(m.history)
    ax.plot(hist["epoch"], hist["train_loss"], label=f"{kind}: train")
    ax.plot(hist["epoch"], hist["val_loss"], "--", label=f"{kind}: validation")
ax.set_xlabel("epoch")
ax.set_ylabel("cross-entropy")
ax.set_title("training curve")
_ = ax.legend()

# %% [markdown]
# ## 3. The water map (chunked, halo 3 px) next to true colour and the LightGBM map

# %%
probs = {"corrected": water.predict_probability(models["corrected"], feats, chunk=cfg.chunk)}
paths = ws.write_water_maps(probs["corrected"], stage.grid, stage.run_dir, run_name=p.name,
                            start=str(p.dates.start), end=str(p.dates.end))
print({k: v.name for k, v in paths.items()})
lc = read_cog(stage.path("landcover.tif"), chunks=None).values[0]
rgb = plots.stretch(np.moveaxis(feats_da.sel(band=["B04", "B03", "B02"]).values, 0, -1))
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
name, r, c, h, w = predict_w[0]
win = (slice(r, r + h), slice(c, c + w))
noisy_prob = ws.predict_window(models["noisy"], feats, predict_w[0], chunk=cfg.chunk)
g, n = (feats_da.sel(band=b).values[win].astype(np.float64) for b in ("B03", "B08"))
ndwi = (g - n) / (g + n)
valid = np.isfinite(ndwi) & np.isfinite(noisy_prob) & np.isfinite(probs["corrected"][win])
maps = {"a_ndwi_otsu": ndwi > water.otsu_threshold(ndwi[valid]),
        "b_cnn_noisy": noisy_prob > 0.5,
        "c_cnn_corrected": probs["corrected"][win] > 0.5,
        "d_lightgbm": ws.lightgbm_water(lc[win])}
result = {"region": name, "label_source": cfg.label_source,
          "ee_dry_run": {k: v for k, v in check.items() if k not in ("ee_probability", "functions")}}
if truth is not None:
    result["f1"] = ws.compare_methods(maps, truth[win], subclass[win], valid)
    result["label_noise"] = noise_table.to_dict(orient="records")
    best = result["f1"]["c_cnn_corrected"]["f1"]
    result["corrected_beats"] = {k: best > v["f1"] for k, v in result["f1"].items()
                                 if k != "c_cnn_corrected"}
    print(f"corrected CNN F1 {best:.4f} beats: {result['corrected_beats']}; rice paddies mapped "
          f"as water: {result['f1']['c_cnn_corrected']['paddy_as_water']:.2%}")
ws.update_metrics(stage.path("metrics.json"), "water", result)
pd.DataFrame(result.get("f1", {})).T

# %% [markdown]
# ## 6. Live Earth Engine
# With `ee.project` and credentials, the same image (`lcgee.gee.water.water_image`) runs on the
# server-side composite of notebook 07 (`composite_for_params`), is shown in geemap and exported
# like the land-cover map (`ee.export_to`, started only with `ee.start_export: true`). Without
# them (the demo, CI) the offline dry run above is this stage's Earth Engine result.

# %%
live_ready = False
if p.ee.project:
    from lcgee.errors import EarthEngineError
    from lcgee.gee import session

    try:
        session.init_live(p.ee.project)
        live_ready = True
    except EarthEngineError as exc:
        print(f"Live Earth Engine step skipped. {exc}")
else:
    print("no ee.project: offline run (the dry run above is this stage's Earth Engine result)")

# %%
if live_ready:
    from lcgee.gee import classify, live
    from lcgee.gee import water as gw

    ee_water = gw.water_image(models["corrected"], ee_stage.composite_for_params(p, stage.grid))
    tasks = classify.export_task(ee_water.select(gw.CLASS_BAND), stage.grid, to=p.ee.export_to,
                                 path=live.export_path_for(p.ee, p.name) + "_water",
                                 max_pixels=int(p.ee.max_pixels), split=p.ee.export_split,
                                 description=f"lcgee_{p.name}_water")
    if p.ee.start_export:
        print(live.start_tasks(tasks, policy=live.policy_for(p.ee)))
    else:
        print("export tasks built, not started: set ee.start_export: true to start them")
    try:
        # water drawn as WorldCover's water class (80) on the land-cover viewer
        as_landcover = ee_water.select(gw.CLASS_BAND).selfMask().multiply(80).rename("landcover")
        display(live.ee_map(as_landcover, stage.grid))  # noqa: F821
    except lcgee.errors.MissingDependencyError as exc:
        print(exc)
