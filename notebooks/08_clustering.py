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
# # 08 · Unsupervised k-means
# k-means on the composite's features (standardised), fitted on a sample of one region and
# applied to another: a quick look at the landscape's structure without labels. Cluster
# numbers carry no class meaning; the table shows how clusters fall on WorldCover classes.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import matplotlib.pyplot as plt
import pandas as pd

import lcgee
from lcgee import cluster, features, labels, plots
from lcgee.raster import read_cog

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
feats = features.read_features(stage.run_dir)
fit_region = next(iter(p.regions_with("train")))
apply_region = next(iter(p.regions_with("predict")), fit_region)
model = cluster.fit_kmeans(feats, stage.region_grid(fit_region), stage.grid,
                           n_clusters=8, seed=p.train.seed)
clusters = cluster.predict_kmeans(model, feats, stage.region_grid(apply_region), stage.grid)
print(f"fitted on {fit_region}, applied to {apply_region}")

# %%
fig, ax = plt.subplots(figsize=(7, 6))
cluster.cluster_map(ax, clusters, title=f"k-means clusters ({apply_region})")

# %%
wc = stage.window(apply_region).cut(read_cog(stage.layout.labels, chunks=None).values[0])
table = pd.crosstab(pd.Series(clusters.ravel(), name="cluster"),
                    pd.Series(labels.class_names(wc.ravel()), name="WorldCover"))
table.loc[table.index > 0]
