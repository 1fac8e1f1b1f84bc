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
# # 07 · Export the model to Earth Engine
# The LightGBM trees become Earth Engine decision-tree strings (full double precision, one
# `decisionTreeEnsemble` per class in RAW_REGRESSION mode, summed, argmax, mapped to
# WorldCover codes). Before any quota is spent, a **dry run**: the request is serialized with
# the real earthengine-api (initialised offline) and evaluated offline, on this run's composite
# and, for median / monthly runs, as the whole server chain from the scenes' digital numbers
# (masks as in this run). The offline evaluator implements lcgee's reading of Earth Engine's
# documented semantics (docs/earth-engine-semantics.md lists each operation and what stays
# UNCONFIRMED); agreement here is agreement with that reading, not with the live service.
# With credentials and `ee.project` set, the same graph runs for real and export tasks can be
# started.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import lcgee
from lcgee import ee_stage, search

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
# with the STAC client the dry run also evaluates the whole server chain from the scenes'
# digital numbers (median / monthly runs) and counts its label flips
result = ee_stage.dry_run(stage.run_dir, client=search.open_client(stage.stac_url,
                                                                   sign=p.stac.sign))
spec = result.spec
per_class = {c: len(t) for c, t in zip(spec.class_values, spec.trees)}
print(f"{spec.n_trees} trees, {spec.payload_bytes() / 1e6:.2f} MB of tree strings -> "
      f"route: {result.route}")
print("trees per class:", per_class)
print("largest feature difference server-side vs local: "
      f"{max(result.feature_diff.values()):.2e}")

# %% [markdown]
# ## Dry run: held-out samples and the whole held-out region
# Written to `model/`: `ee_classifier.json`, `ee_graph.json`, `holdout.parquet`.

# %%
result.table

# %% [markdown]
# ## Server-side result (offline preview) next to the local map

# %%
from lcgee import plots

fig = plots.map_pair(result.local_map, result.ee_map, result.region,
                     titles=("local map (lcgee predictor)", "Earth Engine graph, evaluated offline"))

# %% [markdown]
# ## Live Earth Engine
# Needs `earthengine authenticate` (or a service-account key in
# `GOOGLE_APPLICATION_CREDENTIALS`) and `ee.project` in the params. What happens:
#
# * **No `ee.project` or no usable credentials**: one message says how to authenticate and the
#   run goes on to the end. An offline run is a normal run (the demo and CI have no Earth Engine
#   account); the dry run above is its result.
# * **Credentials accepted**: the live step was asked for, so a later failure (a refused
#   request, quota or server errors still there after `ee.retries` attempts with backoff, an
#   export that cannot start) stops the run with its message rather than being skipped quietly.
# * The held-out region is fetched at full resolution only when one interactive request can hold
#   it (48 MB, 32,768 px a side); otherwise the message points to the export task. The map below
#   is drawn tile by tile and has no such limit.
# * Export tasks cover the whole grid (`ee.export_to`, `ee.export_path`, `ee.max_pixels`, split
#   into `ee.export_split` tiles) and are started only with `ee.start_export: true`.

# %% [markdown]
# ### Classify the server-side composite
# The composite is built in Earth Engine from `COPERNICUS/S2_SR_HARMONIZED` with this run's
# dates, bands and compositing. Trees too large for one request are uploaded once as table
# assets (under a hash of the model, so a retrained model never reads old trees).

# %%
# classify, compare over the held-out region, build (ee.start_export: start) the export tasks
live_run = ee_stage.classify_in_earth_engine(p, stage.grid, result,
                                             cache_dir=stage.layout.ee_tiles)
print(live_run.message)

# %% [markdown]
# ### Earth Engine (live) next to the local map, held-out region
# The trees are exact (dry run above); differences here come from the inputs: Earth Engine's
# scenes, cloud masks and composite against this run's local ones.

# %%
# no figure when the live step was skipped or the region was too large for one request
fig = plots.map_pair(result.local_map, live_run.pixels, result.region,
                     titles=("local map (lcgee predictor)", "Earth Engine, live"))

# %% [markdown]
# ### Interactive map
# The classification over the whole AOI, with ESA WorldCover v200 as a reference layer (switch
# it on in the layer control). Needs geemap: `pip install 'lcgee[maps]'`.

# %%
view = ee_stage.interactive_map(live_run.classified, stage.grid)  # geemap is optional
print(view.message)
view.widget

# %% [markdown]
# ### Export tasks
# One task per tile, on exactly the run's grid (CRS, transform, dimensions), with `maxPixels`;
# ids and states are read back from Earth Engine. Follow running tasks in the Code Editor's
# Tasks tab (or rerun `lcgee ee classify RUN_DIR` for a fresh table).

# %%
live_run.export_table
