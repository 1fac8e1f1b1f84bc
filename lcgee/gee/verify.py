"""The checks of the dry run before spending Earth Engine quota (run by
:func:`lcgee.ee_stage.dry_run`): export, serialize, evaluate offline, compare.

Writes where the stage layer says (:class:`lcgee.layout.RunLayout` puts them in ``model/``):
the tree strings, the serialized request that classifies a composite and the held-out samples
(features exactly as fed to the model, plus ``label``). Nothing here knows a run directory's
names. Then checks that

* an independent reader of the tree strings gives LightGBM's labels on every held-out sample;
* the serialized graph, evaluated offline on the run's composite, gives the local map pixel for
  pixel and the local features within float tolerance;
* with the run's STAC client, the whole server chain from the scenes' digital numbers
  (:mod:`lcgee.gee.chain`) gives the local map: its flips are counted in the table (0 by
  design on the demo: float32 casts in the graph). The cloud masks are the run's own here; the
  mask graph's own differences (grid origins, coarse reads) are documented in
  docs/earth-engine-semantics.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lcgee.files import atomic_path, write_json, write_text
from lcgee.gee import classify, offline, reader, session
from lcgee.gee.trees import EEClassifierSpec, booster_to_ee_trees

__all__ = ["export_model", "write_holdout", "verify_holdout", "verify_graph", "verify_features",
]


def export_model(bundle: Any, *, classifier_path: Path, graph_path: Path,
                 output_mode: str = "RAW_REGRESSION", available_bands: list[str] | None = None
                 ) -> tuple[EEClassifierSpec, dict[str, Any], str]:
    """Tree strings (written to ``classifier_path``), serialized graph (``graph_path``) and
    payload route for a trained bundle.

    ``available_bands``: the placeholder composite's bands (default: the Sentinel-2 bands; a
    ``monthly`` run's composite is its whole period feature stack)."""
    spec = booster_to_ee_trees(bundle.booster, feature_names=bundle.feature_names,
                               class_values=bundle.class_values, output_mode=output_mode)
    write_text(classifier_path, spec.to_json())
    session.init_offline()
    graph = classify.classification_graph(spec, available_bands=available_bands)
    write_json(graph_path, graph)
    return spec, graph, classify.payload_route(spec)


def write_holdout(features: np.ndarray, labels: np.ndarray, names: list[str], path: Path, *,
                  n: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Up to ``n`` valid pixels of a held-out region: float64 features (as fed) + label."""
    flat = features.reshape(features.shape[0], -1).T.astype(np.float64)
    lab = labels.ravel()
    ok = np.flatnonzero(np.all(np.isfinite(flat), axis=1) & (lab > 0))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(ok, size=min(n, ok.size), replace=False))
    table = pd.DataFrame(flat[idx], columns=names)
    table["label"] = lab[idx].astype(int)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def verify_holdout(spec: EEClassifierSpec, holdout: pd.DataFrame, bundle: Any) -> dict[str, Any]:
    """The tree strings, read independently, against LightGBM on the held-out samples."""
    X = holdout[spec.feature_names].to_numpy(np.float64)
    ee_labels = reader.classify(spec, X)
    lgb_labels = bundle.predict_labels(X)
    return {"samples": len(X), "disagreements": int((ee_labels != lgb_labels).sum())}


def verify_graph(graph: dict[str, Any], features: xr.DataArray, local_labels: np.ndarray,
                 bands: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """Evaluate ``ee_graph.json`` offline on a composite and compare with the local map.

    ``features`` is the local ``(band, y, x)`` feature stack (its first bands are the
    composite's reflectance); ``local_labels`` the local map (0 = nodata).
    """
    composite = {b: np.asarray(features.sel(band=b).values, dtype=np.float64) for b in bands}
    out = offline.evaluate_graph(graph, composite)
    ee_map = np.asarray(out["landcover"])
    valid = local_labels > 0
    return ({"pixels": int(valid.sum()),
             "disagreements": int((ee_map[valid] != local_labels[valid]).sum()),
             "nodata_agrees": bool(np.all((ee_map == 0) == ~valid))}, ee_map)


def verify_features(spec: EEClassifierSpec, features: xr.DataArray,
                    bands: list[str], *,
                    available_bands: list[str] | None = None) -> dict[str, float]:
    """Max |server-side feature - local feature| per feature, from the serialized graph
    (``available_bands`` as in :func:`export_model`)."""
    session.init_offline()
    image = classify.feature_image(classify.placeholder_composite(), spec.feature_names,
                                   available_bands=available_bands)
    composite = {b: np.asarray(features.sel(band=b).values, dtype=np.float64) for b in bands}
    out = offline.evaluate_graph(json.loads(image.serialize()), composite)
    diffs = {}
    for name in spec.feature_names:
        local = np.asarray(features.sel(band=name).values, dtype=np.float64)
        ok = np.isfinite(local) & np.isfinite(out[name])
        diffs[name] = float(np.max(np.abs(out[name][ok] - local[ok]))) if ok.any() else 0.0
    return diffs
