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
# # 06 · Predict the land-cover map
# The trained model applied chunk by chunk with Dask to the whole feature stack, with lcgee's
# compiled tree predictor (labels identical to LightGBM's own). Written as a Cloud-Optimized
# GeoTIFF with WorldCover colours and a STAC Item.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import numpy as np
import pandas as pd

import lcgee
from lcgee import features, labels, plots, predict, train
from lcgee.raster import read_cog

stage = lcgee.open_stage(params_file, run_dir, stac_url)
dask_client = stage.dask_client()
p = stage.params
bundle = train.load_bundle(stage.layout.model)
feats = features.read_features(stage.run_dir, chunks=p.load.chunk)
landcover = predict.predict_map(feats, bundle)
tif, item = predict.write_landcover(landcover, stage.grid, stage.run_dir,
                                    model_dir=stage.layout.model,
                                    start=str(p.dates.start), end=str(p.dates.end),
                                    run_name=p.name)
print(f"wrote {tif.name} and {item.name}")

# %% [markdown]
# ## Prediction, labels and true colour side by side

# %%
import matplotlib.pyplot as plt

lc = read_cog(tif, chunks=None).values[0]
wc = read_cog(stage.layout.labels, chunks=None).values[0]
rgb = plots.feature_rgb(feats)
fig, axes = plt.subplots(1, 3, figsize=(18, 6))
axes[0].imshow(np.nan_to_num(rgb))
axes[0].set_title("composite (true colour)")
plots.class_map(axes[1], lc, stage.grid, legend=False, title="lcgee LightGBM map")
plots.class_map(axes[2], wc, stage.grid, title="WorldCover labels")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
if stage.world is not None:
    fig.suptitle("Synthetic demo world: these maps describe no real place")

# %% [markdown]
# ## Mapped area per class

# %%
areas = pd.DataFrame({"map_ha": predict.class_areas(lc, p.grid.resolution),
                      "labels_ha": predict.class_areas(wc, p.grid.resolution)}).fillna(0)
areas.index = labels.class_names(areas.index)
areas.round(1)
