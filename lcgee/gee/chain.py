"""The whole server-side chain of a run, evaluated offline against the local map.

What Earth Engine runs for a ``median`` or ``monthly`` run, from the scenes' harmonized digital
numbers: each scene masked where its cloud mask is not CLEAR, converted to float32 reflectance
(:func:`lcgee.gee.composite.scene_reflectance`), reduced (median, per period for ``monthly``,
gaps filled from the whole-range median with ``empty_period: fill``),
indices (:class:`lcgee.gee.classify.EEOps`), the trees, the labels. The graph is built with the
real earthengine-api (offline session) and evaluated by :mod:`lcgee.gee.offline` on the run's
scenes (read through its STAC API) and masks (``masks/``, the run's own: the mask graph is
checked separately, tests/ee_offline/test_gee_clouds.py) by :func:`lcgee.ee_stage.chain_flips`. Every
label that differs from ``landcover.tif`` is a flip caused by the chain (precision, division by
zero, reduction order).
"""

from __future__ import annotations

import json
from typing import Any

from lcgee import clouds
from lcgee.gee import classify, composite
from lcgee.gee.api import ee as _ee
from lcgee.gee.trees import EEClassifierSpec

__all__ = ["chain_graph", "SCENE_ID", "MASK_ID"]

#: Placeholder asset ids of the chain's scenes and their masks (``.format(i)``).
SCENE_ID = "lcgee/dryrun/scene_{}"
MASK_ID = "lcgee/dryrun/mask_{}"


def chain_graph(spec: EEClassifierSpec, n_scenes: int, *, method: str, bands: list[str],
                index_names: list[str], dates: tuple[Any, Any] | None = None,
                period: str | None = "1M", fill_empty: bool = False,
                times: list[Any] | None = None) -> dict[str, Any]:
    """The serialized chain over ``n_scenes`` placeholder scenes (``SCENE_ID`` / ``MASK_ID`` ids).

    ``monthly``: the periods of ``period`` touching ``dates`` (or holding one of ``times``),
    gaps filled from the whole-range median with ``fill_empty``
    (:func:`lcgee.gee.composite.period_features`)."""
    ee = _ee()
    images = [composite.scene_reflectance(
        ee.Image(SCENE_ID.format(i)).updateMask(ee.Image(MASK_ID.format(i)).eq(clouds.CLEAR)), bands)
        for i in range(n_scenes)]
    collection = ee.ImageCollection.fromImages(images)
    if method == "monthly":
        if dates is None and times is None:
            raise ValueError("monthly needs dates or times")
        start, end = dates if dates is not None else (None, None)
        image = composite.monthly_features(collection, start, end, bands, index_names,
                                           period=period, fill_empty=fill_empty, times=times)
        available = list(spec.feature_names)
    else:
        image = composite.reduce_collection(collection, method, bands)
        available = bands
    return json.loads(classify.classify_image(
        classify.feature_image(image, spec.feature_names, available_bands=available),
        spec).serialize())
