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
# # 01 · Search Sentinel-2 L2A scenes
# STAC search by area, dates and cloud cover (client-side too, where the server lacks the
# query extension), reprocessed duplicates dropped. The scene table is saved as
# `scenes.parquet`; later stages fetch the items again by id (fresh signatures).

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import pandas as pd

import lcgee
from lcgee import integrity, load, plots, search

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
client = search.open_client(stage.stac_url, sign=p.stac.sign)
result = search.search_scenes(client, collection=p.stac.collection, bbox=stage.grid.lonlat_bbox,
                              datetime=p.dates.interval, max_cloud_cover=p.stac.max_cloud_cover,
                              mgrs_tiles=p.stac.mgrs_tiles)
# load.skip_bad_scenes: probe every scene's files now; later stages see the kept ones
result = integrity.drop_unreadable(result, [*p.bands, "SCL"]) if p.load.skip_bad_scenes else result
search.save_scenes(result, stage.run_dir)
print(f"{len(result.items)} scenes kept; {len(result.dropped)} reprocessed duplicate(s) dropped; "
      f"cloud filter applied by the {'server and client' if result.server_filtered else 'client'}")
pd.set_option("display.width", 160)
result.table.drop(columns=["platform"])

# %% [markdown]
# ## Footprints and acquisitions

# %%
fig = plots.footprints_figure(search.footprints(result.items), stage.grid.lonlat_bbox)

# %%
fig2 = plots.acquisitions_figure(result.table)

# %% [markdown]
# ## True-colour thumbnails
# B04/B03/B02, harmonized, on a coarse version of the run grid, 2-98 % stretch.

# %%
thumb_grid = stage.grid.coarsen(max(1, stage.grid.width // 256))
ds = load.load_stack(result.items, thumb_grid, ["B04", "B03", "B02"], chunk=1024)
rgb = plots.true_colour(load.reflectance(ds, ["B04", "B03", "B02"]).compute(),
                        reference=int(result.table["cloud_cover"].argmin()))
titles = [f"{t:%Y-%m-%d} ({c:.0f} %)" for t, c in zip(result.table.datetime, result.table.cloud_cover)]
fig3 = plots.image_panel(list(rgb), titles, suptitle="Scenes (true colour)")
