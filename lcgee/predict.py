"""Map prediction: the feature stack -> a land-cover COG with its STAC item.

Prediction runs chunk by chunk with Dask through :class:`lcgee.fastpredict.FastPredictor`
(labels identical to LightGBM's ``Booster.predict``, several times faster). Pixels without a
valid composite get nodata (0), not an error. The COG is uint8 WorldCover codes with the
official colours embedded and overviews; ``landcover.json`` beside it is a STAC Item with the
classification extension and a link to the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from lcgee.errors import ModelError
from lcgee.files import write_json
from lcgee.grid import Grid
from lcgee.labels import WORLDCOVER, worldcover_colormap
from lcgee.layout import RunLayout
from lcgee.raster import write_cog
from lcgee.train import ModelBundle

__all__ = ["predict_map", "write_landcover", "stac_item", "class_areas"]

#: Classification v2.0.0: the class colour is ``color_hint`` (v1.1.0 renamed v1.0.0's
#: ``color-hint``, the spelling of the real ESA WorldCover items, which declare v1.0.0; readers
#: such as pystac migrate it). tests/unit/test_landcover_item.py checks both against real JSON.
_CLASSIFICATION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
_PROJECTION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
_RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


def predict_map(features: xr.DataArray, bundle: ModelBundle, *, nodata: int = 0) -> xr.DataArray:
    """Class codes ``(y, x)`` uint8 for a ``(band, y, x)`` feature stack (lazy, chunked).

    Uses lcgee's compiled predictor when it is available, else LightGBM's own.
    """
    try:
        from lcgee.fastpredict import FastPredictor  # numba: ~0.8 s to import; optional
    except ImportError:
        return _booster_map(features, bundle, nodata)
    predictor = FastPredictor.from_booster(bundle.booster)
    return predictor.predict_map(features, bundle.feature_names, bundle.class_values,
                                 nodata=nodata)


def _booster_map(features: xr.DataArray, bundle: ModelBundle, nodata: int) -> xr.DataArray:
    """``Booster.predict`` chunk by chunk; pixels with any NaN feature get ``nodata``."""
    have = [str(b) for b in features["band"].values]
    missing = [f for f in bundle.feature_names if f not in have]
    if missing:
        raise ModelError(f"the feature stack lacks the model's features {missing}",
                         where="predict", fix="recompute features with the model's params")
    stack = features.sel(band=bundle.feature_names)
    if stack.chunks is not None:
        stack = stack.chunk({"band": -1})
    codes = np.asarray(bundle.class_values, dtype=np.uint8)

    def block(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], -1).T.astype(np.float64)
        ok = np.all(np.isfinite(flat), axis=1)
        out = np.full(flat.shape[0], nodata, dtype=np.uint8)
        if ok.any():
            out[ok] = codes[np.argmax(bundle.booster.predict(flat[ok]), axis=1)]
        return out.reshape(x.shape[1:])

    return _map_blocks(stack, block)


def _map_blocks(stack: xr.DataArray, block: Any) -> xr.DataArray:
    data = stack.data
    if hasattr(data, "dask"):
        out = data.map_blocks(block, drop_axis=0, dtype=np.uint8)
    else:
        out = block(np.asarray(data))
    return xr.DataArray(out, dims=("y", "x"), coords={"y": stack["y"], "x": stack["x"]},
                        name="landcover")


def write_landcover(landcover: xr.DataArray, grid: Grid, run_dir: Path, *,
                    model_dir: Path, start: str, end: str, run_name: str) -> tuple[Path, Path]:
    """``landcover.tif`` (COG) and ``landcover.json`` (STAC Item) in ``run_dir``."""
    layout = RunLayout(run_dir)
    tif = write_cog(layout.landcover, landcover.astype("uint8"), grid, nodata=0,
                    colormap=worldcover_colormap(), band_names=["landcover"],
                    tags={"classes": "ESA WorldCover codes", "model": str(model_dir.name)})
    classes = sorted(int(c) for c in json.loads((model_dir / "model.json").read_text())
                     ["class_values"])
    item = stac_item(grid, tif, classes, model_href=f"./{model_dir.name}/model.json",
                     start=start, end=end, item_id=f"{run_name}-landcover")
    path = write_json(layout.landcover_item, item)
    return tif, path


def stac_item(grid: Grid, tif: Path, classes: list[int], *, model_href: str, start: str,
              end: str, item_id: str) -> dict[str, Any]:
    """A STAC Item (classification + projection extensions) describing the map."""
    from pyproj import Transformer

    left, bottom, right, top = grid.bounds
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    ring = [to_ll.transform(x, y) for x, y in
            ((left, bottom), (right, bottom), (right, top), (left, top), (left, bottom))]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": [_CLASSIFICATION, _PROJECTION, _RASTER],
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": None, "start_datetime": f"{start}T00:00:00Z",
            "end_datetime": f"{end}T23:59:59Z", "proj:code": grid.crs,
            "proj:shape": list(grid.shape), "proj:transform": list(grid.transform),
            "lcgee:classifier": "LightGBM",
        },
        "assets": {"landcover": {
            "href": f"./{tif.name}", "type": "image/tiff; application=geotiff; "
            "profile=cloud-optimized", "roles": ["data"], "title": "Land cover (WorldCover codes)",
            "classification:classes": [
                {"value": c, "name": WORLDCOVER.get(c, (f"class_{c}",))[0].lower()
                 .replace(" / ", "_").replace(" ", "_"),
                 "description": WORLDCOVER.get(c, (f"class {c}",))[0],
                 "color_hint": WORLDCOVER.get(c, ("", "#000000"))[1].lstrip("#").upper()}
                for c in classes],
            "raster:bands": [{"nodata": 0, "data_type": "uint8",
                              "spatial_resolution": grid.resolution}],
        }},
        "links": [{"rel": "describedby", "href": model_href, "type": "application/json",
                   "title": "the LightGBM model that made this map"}],
    }


def class_areas(landcover: np.ndarray, resolution: float) -> dict[int, float]:
    """Mapped area per class in hectares."""
    codes, counts = np.unique(landcover[landcover > 0], return_counts=True)
    return {int(c): float(n) * resolution ** 2 / 1e4 for c, n in zip(codes, counts)}
