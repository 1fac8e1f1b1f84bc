"""An offline stand-in for Earth Engine's pixel and metadata requests, answered from local arrays.

:class:`OfflineEarthEngine` implements :class:`lcgee.gee.connection.EarthEngineConnection`
(export tasks are refused):

* ``compute_pixels(request)`` takes the same request as ``ee.data.computePixels`` (an
  ``expression``, ``fileFormat`` ``NUMPY_NDARRAY`` and a ``grid`` with ``dimensions``,
  ``affineTransform`` and ``crsCode``), evaluates the serialized expression with
  :mod:`lcgee.gee.offline` over the local arrays of the images it loads, and returns the
  requested window as a structured array (one field per band), as the service does;
* ``get_info(query)`` answers :func:`lcgee.gee.cloudmask.confirm_matches`' batched query from
  the catalog of ``system:index`` values it can serve.

Images come from a ``loader(asset_id) -> (bands, properties)`` on the emulator's grid; the
demo uses :func:`lcgee.ee_stage.stac_loader`, which reads the demo world's scenes through its
STAC API (harmonized B8 digital numbers, SCL, s2cloudless probability). Whole results are cached per
expression, so tiles of one image cost one evaluation. It stands in for the service in the
demo (no credentials) and in tests; nothing here talks to Earth Engine.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lcgee.errors import DataError, EarthEngineError
from lcgee.gee import offline
from lcgee.gee.download import AFFINE_FIELDS
from lcgee.grid import Grid

__all__ = ["OfflineEarthEngine", "request_grid", "Loader"]

Loader = Callable[[str], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]


def request_grid(request: Mapping[str, Any]) -> Grid:
    """The :class:`Grid` a computePixels request asks for."""
    try:
        spec = request["grid"]
        t = spec["affineTransform"]
        dims = spec["dimensions"]
        transform = tuple(float(t.get(k, 0.0)) if k.startswith("shear") else float(t[k])
                          for k in AFFINE_FIELDS)
        return Grid(str(spec["crsCode"]), transform, (int(dims["height"]), int(dims["width"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"not a computePixels grid ({exc})", where="compute_pixels request",
                        fix="give grid.dimensions, grid.affineTransform and grid.crsCode") from exc


def _graph(expression: Any) -> dict[str, Any]:
    if hasattr(expression, "serialize"):
        return json.loads(expression.serialize())
    if isinstance(expression, str):
        return json.loads(expression)
    return dict(expression)


class OfflineEarthEngine:
    """Answers pixel requests on ``grid``'s CRS from arrays given by ``loader``.

    ``catalog`` lists the ``system:index`` values present in both Sentinel-2 collections (for
    :meth:`get_info`); ``None`` means every scene the loader can read.
    """

    def __init__(self, grid: Grid, loader: Loader, *, catalog: Sequence[str] | None = None
                 ) -> None:
        self.grid = grid
        self.loader = loader
        self.catalog = None if catalog is None else set(catalog)
        self.requests = 0
        self._results: dict[str, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _evaluate(self, graph: Mapping[str, Any]) -> dict[str, np.ndarray]:
        key = hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key not in self._results:
                images, properties = {}, {}
                for asset_id in sorted(offline.loaded_ids(graph)):
                    bands, props = self.loader(asset_id)
                    images[asset_id] = bands
                    properties[asset_id] = dict(props)
                self._results[key] = offline.evaluate_graph(
                    graph, images=images, properties=properties, grid=self.grid, masked=True)
            return self._results[key]

    def compute_pixels(self, request: Mapping[str, Any]) -> np.ndarray:
        """``ee.data.computePixels`` on local arrays: a structured ``(height, width)`` array."""
        with self._lock:
            self.requests += 1
        if request.get("fileFormat", "NUMPY_NDARRAY") != "NUMPY_NDARRAY":
            raise DataError(f"file format {request.get('fileFormat')!r} is not emulated",
                            where="compute_pixels", fix="ask for NUMPY_NDARRAY")
        tile = request_grid(request)
        result = self._evaluate(_graph(request["expression"]))
        names = list(request.get("bandIds") or result)
        layers = {}
        for name in names:
            band = result[name]
            image = offline.OfflineImage([name], [np.asarray(band.data, dtype=np.float64)],
                                         [~np.ma.getmaskarray(band)])
            moved = offline.resample(image, self.grid, tile)
            # The service returns 0 for masked pixels in NUMPY_NDARRAY.
            layers[name] = np.where(moved.masks[0], moved.data[0], 0).astype(band.dtype)
        out = np.zeros(tile.shape, dtype=[(n, layers[n].dtype) for n in names])
        for name in names:
            out[name] = layers[name]
        return out

    def start_task(self, task: Any) -> None:
        """Export tasks are not emulated: refused with the way to run them."""
        raise EarthEngineError("export tasks are not emulated offline", where="start_task",
                               fix="set ee.project and authenticate to export with Earth Engine")

    def task_status(self, task: Any) -> dict[str, Any]:
        """Export tasks are not emulated: refused (no task was ever started here)."""
        raise EarthEngineError("export tasks are not emulated offline", where="task_status",
                               fix="set ee.project and authenticate to export with Earth Engine")

    def get_info(self, query: Any) -> dict[str, list[str]]:
        """Answer :func:`lcgee.gee.cloudmask.confirm_matches`' query from the catalog."""
        graph = _graph(query)
        text = json.dumps(graph)
        if "AggregateFeatureCollection.array" not in text or "system:index" not in text:
            raise DataError("only the scene-matching query is emulated", where="get_info",
                            fix="use cloudmask.confirm_matches")
        asked = _inlist_values(graph)
        have = asked if self.catalog is None else [i for i in asked if i in self.catalog]
        return {"sr": list(have), "probability": list(have)}


def _inlist_values(graph: Mapping[str, Any]) -> list[str]:
    values: list[str] = []
    for call in offline.invocations(graph):
        if call["functionName"] in ("Filter.inList", "Filter.listContains"):
            for key in ("rightValue", "leftValue"):
                v = call["arguments"].get(key, {}).get("constantValue")
                if isinstance(v, list):
                    values.extend(str(x) for x in v)
    return list(dict.fromkeys(values))
