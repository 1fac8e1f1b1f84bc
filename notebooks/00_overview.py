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
# # 00 · Run overview
# The run's params, its one grid, the named regions, and the data source. On the demo params
# the source is lcgee's embedded demo world: a synthetic Sentinel-2 L2A archive near Fukuoka
# served by a STAC API on loopback. **Numbers and pictures from the demo describe a synthetic
# world, not the real landscape.**

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run's params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run's results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import lcgee
from lcgee import plots

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
print(f"run {p.name!r}: {p.dates.start} .. {p.dates.end}, {p.composite.method} composite, "
      f"clouds from {p.clouds.source}")
print(f"grid: {stage.grid.crs}, {stage.grid.resolution:g} m, {stage.grid.width} x "
      f"{stage.grid.height} px, bounds {stage.grid.bounds}")
print(f"STAC API: {stage.stac_url}")

# %% [markdown]
# ## Regions
# The pipeline trains on the `train` regions and maps the `predict` ones; evaluation holds
# the mapped region out entirely.

# %%
regions = {name: stage.region_grid(name) for name in p.regions}
print("\n".join(f"{name:<12} {p.regions[name].role:<8} {g.width} x {g.height} px"
                for name, g in regions.items()))
fig = plots.regions_figure(stage.grid, regions, {k: r.role for k, r in p.regions.items()},
                           background=stage.world.labels() if stage.world else None)

# %% [markdown]
# ## What the archive holds
# One STAC search over the whole AOI and period, to show the source answers.

# %%
import pystac_client

client = pystac_client.Client.open(stage.stac_url)
search = client.search(collections=[p.stac.collection], bbox=stage.grid.lonlat_bbox,
                       datetime=p.dates.interval)
items = list(search.items())
print(f"{len(items)} items in {p.stac.collection}; first: {items[0].id if items else None}")
