"""The whole server-side chain of a run, evaluated offline against the local map.

What Earth Engine runs for a ``median`` or ``monthly`` run, from the scenes' harmonized digital
numbers: each scene masked where its cloud mask is not CLEAR, converted to float32 reflectance
(:func:`lcgee.gee.composite.scene_reflectance`), reduced (median, per month for ``monthly``),
indices (:class:`lcgee.gee.classify.EEOps`), the trees, the labels. The graph is built with the
real earthengine-api (offline session) and evaluated by :mod:`lcgee.gee.offline` on the run's
scenes (read through its STAC API) and masks (``masks/``, the run's own: the mask graph is
checked separately, tests/test_gee_clouds.py). Every label that differs from ``landcover.tif``
is a flip caused by the chain (precision, division by zero, reduction order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lcgee.gee.trees import EEClassifierSpec
from lcgee.grid import Grid

__all__ = ["chain_graph", "chain_flips"]

_SCENE = "lcgee/dryrun/scene_{}"
_MASK = "lcgee/dryrun/mask_{}"


def chain_graph(spec: EEClassifierSpec, n_scenes: int, *, method: str, bands: list[str],
                index_names: list[str], dates: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """The serialized chain over ``n_scenes`` placeholder scenes (``_SCENE`` / ``_MASK`` ids)."""
    import json

    import ee

    from lcgee import clouds
    from lcgee.gee import classify, composite

    images = [composite.scene_reflectance(
        ee.Image(_SCENE.format(i)).updateMask(ee.Image(_MASK.format(i)).eq(clouds.CLEAR)), bands)
        for i in range(n_scenes)]
    collection = ee.ImageCollection.fromImages(images)
    if method == "monthly":
        if dates is None:
            raise ValueError("monthly needs dates")
        image = composite.monthly_features(collection, dates[0], dates[1], bands, index_names)
        available = list(spec.feature_names)
    else:
        image = composite.reduce_collection(collection, method, bands)
        available = bands
    return json.loads(classify.classify_image(
        classify.feature_image(image, spec.feature_names, available_bands=available),
        spec).serialize())


def chain_flips(spec: EEClassifierSpec, params: Any, run_dir: Path, region: Grid, grid: Grid,
                local_map: np.ndarray, client: Any) -> dict[str, Any]:
    """Evaluate :func:`chain_graph` on the run's scenes over ``region`` and count the labels
    that differ from ``local_map`` (``compared``: pixels either side classified)."""
    import pandas as pd

    from lcgee import search
    from lcgee.gee import offline, session
    from lcgee.gee.classify import PC_TO_EE_BANDS
    from lcgee.load import load_stack, reflectance
    from lcgee.masks import read_masks

    method = params.composite.method
    if method not in ("median", "monthly"):
        return {"compared": 0, "flips": None, "note": f"method {method!r} not evaluated"}
    session.init_offline()
    bands = list(params.features.bands)
    table = pd.read_parquet(run_dir / "scenes.parquet")
    items = search.fetch_items(client, params.stac.collection, table["id"])
    (r0, c0), (h, w) = region.offset_in(grid), region.shape
    # loaded on the run's grid, then cut: the same chunks as the composite stage, so scenes
    # reprojected from another UTM zone get the same nearest pixels (odc-stac's warp is
    # approximated per chunk)
    ds = load_stack(items, grid, bands, chunk=params.load.chunk, time_chunk=-1)
    ds = ds.isel(y=slice(r0, r0 + h), x=slice(c0, c0 + w))
    refl = reflectance(ds, bands).values  # (time, band, y, x) float32
    masks = read_masks(run_dir / "masks", [it.id for it in items], chunk=params.load.chunk)
    masks = masks.values[:, r0:r0 + h, c0:c0 + w]
    images, props = {}, {}
    for i, item in enumerate(items):
        dn = np.where(np.isnan(refl[i]), np.nan, np.rint(refl[i].astype(np.float64) * 10000))
        images[_SCENE.format(i)] = {PC_TO_EE_BANDS[b]: dn[k] for k, b in enumerate(bands)}
        images[_MASK.format(i)] = {"cloud_mask": masks[i]}
        props[_SCENE.format(i)] = {"system:time_start": item.datetime.timestamp() * 1000.0}
    graph = chain_graph(spec, len(items), method=method, bands=bands,
                        index_names=list(params.features.indices),
                        dates=(params.dates.start, params.dates.end))
    out = offline.evaluate_graph(graph, images=images, properties=props, grid=region)
    ee_map = np.nan_to_num(np.asarray(out["landcover"], dtype=np.float64)).astype(np.uint8)
    both = (local_map > 0) | (ee_map > 0)
    return {"compared": int(both.sum()), "flips": int((ee_map[both] != local_map[both]).sum()),
            "ee_map": ee_map}
