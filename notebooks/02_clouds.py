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
# # 02 · Cloud and shadow masks
# One mask per scene on the run grid: clear, cloud, shadow, nodata. The default source is the
# Earth Engine s2cloudless tutorial's algorithm (cloud probability, dark NIR pixels, shadows
# projected along the sun azimuth, erosion then dilation) over a cloud-probability layer; Sen2Cor's
# SCL is the fallback and the comparison.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import numpy as np
import pandas as pd

import lcgee
from lcgee import files, load, masks, plots, search

stage = lcgee.open_stage(params_file, run_dir, stac_url)
dask_client = stage.dask_client()  # local cluster per params, or the scheduler at dask.address
p = stage.params
client = search.open_client(stage.stac_url, sign=p.stac.sign)
table = pd.read_parquet(stage.path("scenes.parquet"))
items = search.fetch_items(client, p.stac.collection, table["id"])
print(f"{len(items)} scenes; source {p.clouds.source!r} (fallback {p.clouds.fallback!r}); "
      f"parameters {masks.cloud_params(p.clouds)}")

# %%
scene_masks = masks.scene_masks(items, stage.grid, p.clouds, client=client,
                                chunk=p.load.chunk, engine=p.load.engine)
paths = masks.write_masks(scene_masks, stage.grid, stage.folder("masks"),
                          key=masks.mask_key(p.clouds, stage.grid))
print(pd.Series([s for _, s, _ in scene_masks]).value_counts().to_string())

# %% [markdown]
# ## Masks over true colour
# Clouds yellow, shadows magenta, nodata grey.

# %%
mask_arr = masks.read_masks(stage.folder("masks"), table["id"]).values
show = np.linspace(0, len(items) - 1, min(8, len(items))).round().astype(int)
ds = load.load_stack([items[i] for i in show], stage.grid, ["B04", "B03", "B02"], chunk=p.load.chunk)
rgb = plots.true_colour(load.reflectance(ds, ["B04", "B03", "B02"]).compute(),
                        reference=int(table["cloud_cover"].iloc[show].argmin()))
titles = [f"{table.datetime[i]:%Y-%m-%d}" for i in show]
fig = plots.image_panel(list(rgb), titles, ncols=4, size=3.5, overlays=list(mask_arr[show]),
                        suptitle=f"{p.clouds.source} masks")

# %% [markdown]
# ## Mask quality against the demo world's truth
# Only on the demo world (synthetic truth): precision, recall and balanced accuracy of cloud and
# shadow for the s2cloudless + shadow mask and for SCL, pooled over all scenes.

# %%
if stage.world is not None:
    quality = masks.compare_with_truth(stage.world, items, stage.grid, p.clouds,
                                       client=client, chunk=p.load.chunk, have=scene_masks)
    files.write_json(stage.path("mask_quality.json"), quality.to_dict(orient="records"))
    display(quality.pivot(index="kind", columns="source", values="balanced_accuracy"))
    display(quality)
else:
    print("no truth on real data: compare the overlays above by eye")
