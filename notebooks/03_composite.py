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
# # 03 · Composites and spectral indices
# Masked observations are dropped (NaN) and the rest composited per pixel: median (default),
# best pixel (lowest cloud probability), or monthly medians. A count layer says how many
# valid observations each pixel had; pixels with none stay NaN. Spectral indices are added
# from their single definitions in `lcgee.indices` (the same ones Earth Engine will compute).

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import pandas as pd

import lcgee
from lcgee import plots, search
from lcgee import features as feat

stage = lcgee.open_stage(params_file, run_dir, stac_url)
dask_client = stage.dask_client()  # local cluster per params, or the scheduler at dask.address
p = stage.params
client = search.open_client(stage.stac_url, sign=p.stac.sign)
table = pd.read_parquet(stage.layout.scenes)
items = search.fetch_items(client, p.stac.collection, table["id"])

# %%
result = feat.build_composite(items, table, stage.grid, p, client=client,
                              masks_dir=stage.layout.masks)
paths = feat.write_outputs(result, stage.grid, stage.run_dir)
print({k: str(v.name) for k, v in paths.items()})
print(f"pixels with no valid observation: {float((result.count == 0).mean()):.2%}")

# %% [markdown]
# ## The composite, its count layer and an index

# %%
fig = plots.composite_figure(result.features, result.count,
                             title=f"{p.composite.method} composite")

# %% [markdown]
# ## Monthly medians
# Seasonal change (crop green-up and harvest, flooded paddies) is what monthly features capture.
# Shown on a 4x coarser grid; with `composite.method: monthly` they become the features.

# %%
monthly = feat.monthly_preview(items, stage.grid, p, masks_dir=stage.layout.masks)
fig2 = plots.monthly_panel(monthly)
