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
# # 04 · Labels and training samples
# ESA WorldCover brought onto the run grid (nearest neighbour; mode when the grid is coarser),
# then a stratified sample of each training region, only where the composite is valid, each
# sample tagged with its spatial block. By default (`labels.sampling: proportional`) the sample
# keeps each region's class shares, with `labels.min_samples_per_class` as a floor for rare
# classes; `balanced` takes up to `labels.samples_per_class` of every class. The block size
# comes from the labels (`labels.block_size: auto`, see `lcgee.blocks`).
# WorldCover is itself only ~75 % accurate: these labels are noisy.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import numpy as np

import lcgee
from lcgee import blocks, features, files, labels, plots, samples, search
from lcgee.raster import write_cog

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
client = search.open_client(stage.stac_url, sign=p.stac.sign)
wc = labels.load_worldcover(stage.grid, source=p.labels.source, client=client,
                            version=p.labels.version, chunk=p.load.chunk).values
wc = labels.remap(wc, p.labels.remap)
write_cog(stage.layout.labels, wc.astype("uint8"), stage.grid, nodata=0,
          colormap=labels.worldcover_colormap(), band_names=["worldcover"])
print("labelled pixels per class:", labels.check_classes(wc))

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 6.5))
plots.class_map(ax, wc, stage.grid, title=f"WorldCover {p.labels.version} labels ({p.labels.source})")

# %% [markdown]
# ## Samples from the training regions

# %%
feats = features.read_features(stage.run_dir)
train_regions = {name: stage.region_grid(name) for name in p.regions_with("train")}
region_labels = {name: stage.window(name).cut(wc) for name in train_regions}
choice = blocks.choose_block_size(region_labels, p.grid.resolution,
                                  block_size=p.labels.block_size, cv_folds=p.train.cv_folds,
                                  valid_fraction=p.train.valid_fraction)
table = samples.collect(feats, wc, train_regions, stage.grid, block_px=choice.block_px,
                        per_class=p.labels.samples_per_class, seed=p.train.seed,
                        balance=p.labels.sampling == "balanced",
                        floor=p.labels.min_samples_per_class)
with files.atomic_path(stage.layout.samples) as tmp:
    table.to_parquet(tmp, index=False)
files.write_json(stage.layout.sampling, {
    "sampling": p.labels.sampling, "blocks": choice.to_dict(),
    "region_class_pixels": {k: labels.check_classes(v) for k, v in region_labels.items()}})
print(f"block size {choice.block_size_m:g} m ({choice.rule}; label autocorrelation range "
      f"{choice.autocorrelation_range_m} m), {choice.n_blocks} blocks")
counts = table.pivot_table(index="label", columns="region", values="block", aggfunc="count",
                           fill_value=0)
counts.index = labels.class_names(counts.index)
print(f"{len(table)} samples in {table['block'].nunique()} spatial blocks")
counts

# %%
ax = counts.plot.barh(figsize=(7, 4), title="Samples per class and region")
ax.set_xlabel("samples")
