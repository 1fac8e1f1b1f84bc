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
# One mask per scene on the run grid: clear, cloud, shadow, nodata. The source is the Earth
# Engine s2cloudless tutorial's algorithm (cloud probability, dark NIR pixels, shadows projected
# along the sun azimuth, erosion then dilation), computed by Earth Engine or here over a
# cloud-probability layer; with `clouds.source: auto` it is chosen before any download (Earth
# Engine when configured, the local layer where the STAC API has one, else Sen2Cor's SCL, which
# is also the fallback and the comparison). The table below says which source masked each scene.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import numpy as np
import pandas as pd

import lcgee
from lcgee import cloudsource, ee_stage, files, load, masks, plots, search

stage = lcgee.open_stage(params_file, run_dir, stac_url)
dask_client = stage.dask_client()  # local cluster per params, or the scheduler at dask.address
p = stage.params
client = search.open_client(stage.stac_url, sign=p.stac.sign)
table = pd.read_parquet(stage.layout.scenes)
items = search.fetch_items(client, p.stac.collection, table["id"])
# Decided before any pixel is read: auto = Earth Engine if configured, else the local
# algorithm where the STAC API holds a probability layer, else SCL.
choice = cloudsource.resolve_source(p, client)
cfg = p.clouds.model_copy(update={"source": choice.source})
print(f"{len(items)} scenes; cloud source {choice.source!r} ({choice.reason}); fallback "
      f"{cfg.fallback!r}; parameters {masks.cloud_params(cfg)}")

# %% [markdown]
# With `clouds.source: gee` the masks are computed by Earth Engine (s2cloudless probabilities
# joined to `S2_SR_HARMONIZED`, shadows projected there) and downloaded onto this grid in tiles
# (cached under `.cache/ee-tiles/`, so an interrupted run resumes). That needs `ee.project` and
# credentials; on the demo world without them, an offline stand-in evaluates the same Earth
# Engine graphs locally.

# %%
ee_access = ee_stage.earth_engine_options(
    p, cache_dir=stage.layout.ee_tiles, client=client, items=items, grid=stage.grid,
    world=stage.world)
print(ee_access.label)
scene_masks = masks.scene_masks(items, stage.grid, cfg, client=client,
                                chunk=p.load.chunk, engine=p.load.engine,
                                earth_engine=ee_access.options)
paths = masks.write_masks(scene_masks, stage.grid, stage.layout.masks,
                          key=masks.mask_key(cfg, stage.grid))
scene_masks = masks.from_files(scene_masks, stage.layout.masks, chunk=p.load.chunk)
fell_back = cloudsource.warn_if_mostly_fallback(scene_masks, cfg.source)
sources = cloudsource.source_table(table, scene_masks)
files.write_json(stage.layout.mask_sources,
                 sources[["id", "mask_source"]].to_dict(orient="records"))
print(sources["mask_source"].value_counts().to_string())
display(sources[["id", "datetime", "tile", "cloud_cover", "mask_source"]])

# %% [markdown]
# ## Masks over true colour
# Clouds yellow, shadows magenta, nodata grey.

# %%
mask_arr = masks.read_masks(stage.layout.masks, table["id"]).values
show = np.linspace(0, len(items) - 1, min(8, len(items))).round().astype(int)
ds = load.load_stack([items[i] for i in show], stage.grid, ["B04", "B03", "B02"], chunk=p.load.chunk)
rgb = plots.true_colour(load.reflectance(ds, ["B04", "B03", "B02"]).compute(),
                        reference=int(table["cloud_cover"].iloc[show].argmin()))
titles = [f"{table.datetime[i]:%Y-%m-%d}" for i in show]
fig = plots.image_panel(list(rgb), titles, ncols=4, size=3.5, overlays=list(mask_arr[show]),
                        suptitle=f"{cfg.source} masks")

# %% [markdown]
# ## Three sources side by side
# Sen2Cor's SCL, the tutorial's algorithm run here on the probability layer, and the same
# algorithm computed by Earth Engine and downloaded onto the grid (clouds yellow, shadows
# magenta). Without credentials the Earth Engine column comes from the offline stand-in, which
# evaluates the graph under lcgee's reading of Earth Engine's documentation: there the last two
# agree pixel for pixel by construction. On the live service they may differ near cloud and
# shadow edges (Earth Engine can read the 20 m / 100 m steps from mean pyramid levels; see
# docs/earth-engine-semantics.md). SCL misses thin clouds and most shadows.

# %%
pick = list(show[:: max(1, len(show) // 3)][:3])
compare = masks.compare_sources([items[i] for i in pick], stage.grid, cfg, client=client,
                                chunk=p.load.chunk, earth_engine=ee_access.options, have=scene_masks)
names = {"scl": "Sen2Cor SCL", "local": "s2cloudless (local)", "gee": "s2cloudless (Earth Engine)"}
fig = plots.masks_by_source_figure({items[i].id: rgb[list(show).index(i)] for i in pick},
                                   {items[i].id: f"{table.datetime[i]:%Y-%m-%d}" for i in pick},
                                   compare.masks, names)
print(compare.summary)

# %% [markdown]
# ## Mask quality against the demo world's truth
# Only on the demo world (synthetic truth): precision, recall and balanced accuracy of cloud and
# shadow for each source, pooled over all scenes.

# %%
quality = masks.quality_against_truth(stage.world, items, stage.grid, cfg, client=client,
                                      chunk=p.load.chunk, have=scene_masks,
                                      earth_engine=ee_access.options, out=stage.layout.mask_quality)
print(quality.message)
display(quality.balanced_accuracy)
quality.table
