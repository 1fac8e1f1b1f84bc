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
# the real earthengine-api (initialised offline) and evaluated offline on this run's composite;
# it must reproduce the local map pixel for pixel. With credentials and `ee.project` set,
# the same graph runs for real and export tasks can be started.

# %% tags=["parameters"]
params_file = "../params/demo.yaml"  # the run params; the runner passes the resolved copy
run_dir = "../outputs/demo"  # where this run results go
stac_url = None  # STAC API to search; None means stac.url from the params (demo: started here)

# %%
import lcgee
from lcgee.gee import verify

stage = lcgee.open_stage(params_file, run_dir, stac_url)
p = stage.params
result = verify.dry_run(stage.run_dir)
spec = result["spec"]
per_class = {c: len(t) for c, t in zip(spec.class_values, spec.trees)}
print(f"{spec.n_trees} trees, {spec.payload_bytes() / 1e6:.2f} MB of tree strings -> "
      f"route: {result['route']}")
print("trees per class:", per_class)
print("largest feature difference server-side vs local: "
      f"{max(result['feature_diff'].values()):.2e}")

# %% [markdown]
# ## Dry run: held-out samples and the whole held-out region
# Written to `model/`: `ee_classifier.json`, `ee_graph.json`, `holdout.parquet`.

# %%
result["table"]

# %% [markdown]
# ## Server-side result (offline preview) next to the local map

# %%
import matplotlib.pyplot as plt

from lcgee import plots

fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
plots.class_map(axes[0], result["local_map"], result["region"], legend=False,
                title="local map (lcgee predictor)")
plots.class_map(axes[1], result["ee_map"], result["region"],
                title="Earth Engine graph, evaluated offline")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])

# %% [markdown]
# ## Live Earth Engine
# Needs `earthengine authenticate` (or a service-account key in
# `GOOGLE_APPLICATION_CREDENTIALS`) and `ee.project` in the params.

# %%
if p.ee.project:
    from lcgee.gee import session

    session.init_live(p.ee.project)
    print("Earth Engine initialised; build the composite server-side and export with "
          "lcgee.gee.classify.export_task")
else:
    print("No ee.project in the params: the offline dry run above is all that ran. To classify "
          "in Earth Engine: run `earthengine authenticate` (or set GOOGLE_APPLICATION_CREDENTIALS "
          "to a service-account key) and set ee.project.")
