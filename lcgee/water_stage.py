"""The water stage (notebook 09): labels on the run grid, both networks, maps, measures, dry run.

Thin glue over :mod:`lcgee.water` (labels, correction, network) and :mod:`lcgee.gee.water`
(the Earth Engine graph), so notebook 09 and ``lcgee ee verify`` share it. Each step of the
notebook is one call here returning a result object: :func:`correct_in_regions`
(:class:`LabelCorrection`), :func:`held_out_scores` (:class:`WaterScores`),
:func:`water_in_earth_engine` (:class:`LiveWater`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lcgee import water
from lcgee.clouds import CLEAR
from lcgee.ee_stage import composite_for_params, export_image, start_live_session
from lcgee.errors import DataError, ParamsError
from lcgee.features import read_features
from lcgee.files import write_json
from lcgee.gee import offline, session
from lcgee.gee import water as gw
from lcgee.grid import Grid
from lcgee.layout import RunLayout, Window, region_windows
from lcgee.load import load_stack
from lcgee.masks import read_masks
from lcgee.params import Params, WaterParams, load_params
from lcgee.predict import stac_item
from lcgee.raster import CogSpec, read_cog, write_cogs
from lcgee.stage import Stage, build_grid

__all__ = ["Window", "windows", "water_features", "scl_fraction", "train_on", "predict_window",
           "write_water_maps",
           "lightgbm_water", "compare_methods", "verify_graph", "dry_run", "update_metrics",
           "LabelCorrection", "correct_in_regions", "truth_water", "WaterScores",
           "held_out_scores", "LiveWater", "water_in_earth_engine"]


def windows(stage: Stage, role: str) -> list[Window]:
    """The run-grid windows of the regions with ``role`` (``train`` / ``predict``)."""
    return stage.windows(role)


def water_features(features: xr.DataArray, bands: Sequence[str]) -> np.ndarray:
    """The network's input bands ``(band, y, x)`` float32 from the run's feature stack."""
    have = [str(b) for b in features["band"].values]
    missing = [b for b in bands if b not in have]
    if missing:
        raise ParamsError(f"water.bands {missing} are not in the run's features {have}",
                          where="water.bands",
                          fix="choose among the features, or add the index to features.indices")
    return np.asarray(features.sel(band=list(bands)).values, dtype=np.float32)


def _cut(array: np.ndarray, win: Window) -> np.ndarray:
    return Window(*win).cut(array)


def scl_fraction(items: Sequence[Any], grid: Grid, masks_dir: Path, *, engine: str, chunk: int
                 ) -> np.ndarray:
    """Share of clear observations (the run's cloud masks) that SCL calls water, on the run grid."""
    ds = load_stack(items, grid, ["SCL"], engine=engine, chunk=chunk)
    masks = read_masks(masks_dir, [it.id for it in items], chunk=chunk)
    scl = ds["SCL"].data
    clear = (masks.data == CLEAR) & (scl > 0)
    n = clear.sum(axis=0)
    hits = ((scl == water.SCL_WATER) & clear).sum(axis=0)
    n, hits = np.asarray(n.compute()), np.asarray(hits.compute())
    return np.where(n > 0, hits / np.maximum(n, 1), np.nan).astype(np.float32)


def train_on(features: np.ndarray, labels: np.ndarray, train: Sequence[Window], bands: list[str],
             cfg: WaterParams, provenance: Mapping[str, Any]) -> water.WaterModel:
    """Balanced 7 x 7 patches from every training window, then :func:`water.train_network`."""
    xs, ys = [], []
    per_region = max(cfg.samples_per_class // len(train), 10)
    for i, win in enumerate(train):
        x, y = water.sample_patches(_cut(features, win), _cut(labels, win),
                                    per_class=per_region, seed=cfg.seed + i)
        xs.append(x)
        ys.append(y)
    return water.train_network(np.concatenate(xs), np.concatenate(ys), bands, epochs=cfg.epochs,
                               learning_rate=cfg.learning_rate, seed=cfg.seed,
                               provenance=provenance)


def predict_window(model: water.WaterModel, features: np.ndarray, win: Window, *,
                   chunk: int = 512) -> np.ndarray:
    """Water probability of one window only (read with a 3 px halo: equal to the full map there)."""
    _, r, c, h, w = win
    H, W = features.shape[1:]
    a0, b0 = max(r - water.HALO, 0), max(c - water.HALO, 0)
    a1, b1 = min(r + h + water.HALO, H), min(c + w + water.HALO, W)
    prob = water.predict_probability(model, features[:, a0:a1, b0:b1], chunk=chunk)
    return prob[r - a0:r - a0 + h, c - b0:c - b0 + w]


def write_water_maps(prob: np.ndarray, grid: Grid, run_dir: Path, *, run_name: str, start: str,
                     end: str) -> dict[str, Path]:
    """``water_probability.tif`` (float32, NaN nodata), ``water.tif`` (uint8 1/0, 255 nodata),
    and ``water.json`` (a STAC Item with both assets)."""
    cls = np.where(np.isfinite(prob), (prob > 0.5).astype(np.uint8), 255).astype(np.uint8)
    layout = RunLayout(run_dir)
    paths = {"probability": layout.water_probability, "water": layout.water}
    write_cogs([CogSpec(paths["probability"], prob.astype(np.float32), float("nan"),
                        ["water_probability"]),
                CogSpec(paths["water"], cls, 255, ["water"],
                        {0: (255, 255, 255, 255), 1: (0, 100, 200, 255)})], grid)
    item = stac_item(grid, paths["water"], [0, 1], model_href=_model_href(layout),
                     start=start, end=end, item_id=f"{run_name}-water")
    asset = item["assets"].pop("landcover")
    asset.update({"title": "Surface water (1 water, 0 not water)",
                  "classification:classes": [
                      {"value": 0, "name": "not_water", "description": "not water"},
                      {"value": 1, "name": "water", "description": "water"}],
                  "raster:bands": [{"nodata": 255, "data_type": "uint8",
                                    "spatial_resolution": grid.resolution}]})
    item["assets"]["water"] = asset
    item["assets"]["water_probability"] = {
        "href": f"./{paths['probability'].name}", "roles": ["data"],
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": "Water probability of the pixel CNN",
        "raster:bands": [{"nodata": "nan", "data_type": "float32",
                          "spatial_resolution": grid.resolution}]}
    item["properties"]["lcgee:classifier"] = "pixel CNN (JAX)"
    item["links"][0]["title"] = "the water CNN that made this map"
    paths["item"] = write_json(layout.water_item, item)
    return paths


def lightgbm_water(landcover: np.ndarray) -> np.ndarray:
    """The LightGBM map's water class (code 80) as booleans."""
    return np.asarray(landcover) == water.WATER_CODE


def compare_methods(maps: Mapping[str, np.ndarray], truth: np.ndarray, subclass: np.ndarray | None,
                    valid: np.ndarray) -> dict[str, dict[str, float]]:
    """Water F1 / precision / recall (and paddies mapped as water) of each boolean map."""
    truth_water = np.asarray(truth) == water.WATER_CODE
    out = {}
    for name, pred in maps.items():
        row = water.water_scores(pred, truth_water, valid)
        if subclass is not None:
            row["paddy_as_water"] = round(water.paddy_as_water(pred, subclass, valid), 4)
        out[name] = row
    return out


def verify_graph(model: water.WaterModel, features: xr.DataArray, local_prob: np.ndarray, win: Window, *,
                 composite_bands: Sequence[str], tile: int = 128) -> dict[str, Any]:
    """Evaluate the Earth Engine graph offline over ``win``, tile by tile with a 3 px halo.

    ``features`` is the run's ``(band, y, x)`` feature DataArray (its composite bands feed the
    graph, which recomputes the indices); ``local_prob`` the local water probability on the
    run grid. Returns the largest probability difference, class disagreements (ties excluded)
    and whether both mask the same pixels, plus the offline probability of the window.
    """
    session.init_offline()
    graph = gw.water_graph(model)
    comp_bands = [b for b in composite_bands if b in set(features["band"].values)]
    _, r0, c0, h, w = win
    H, W = features.shape[1:]
    ee_prob = np.full((h, w), np.nan)
    ee_class = np.zeros((h, w), np.uint8)
    halo = water.HALO
    for tr in range(r0, r0 + h, tile):
        for tc in range(c0, c0 + w, tile):
            tr1, tc1 = min(tr + tile, r0 + h), min(tc + tile, c0 + w)
            a0, b0, a1, b1 = max(tr - halo, 0), max(tc - halo, 0), min(tr1 + halo, H), min(tc1 + halo, W)
            comp = {b: np.asarray(features.sel(band=b)[a0:a1, b0:b1].values, np.float64)
                    for b in comp_bands}
            out = offline.evaluate_graph(graph, comp)
            rs, cs = slice(tr - a0, tr - a0 + tr1 - tr), slice(tc - b0, tc - b0 + tc1 - tc)
            ee_prob[tr - r0:tr1 - r0, tc - c0:tc1 - c0] = out[gw.PROBABILITY_BAND][rs, cs]
            ee_class[tr - r0:tr1 - r0, tc - c0:tc1 - c0] = out[gw.CLASS_BAND][rs, cs]
    local = _cut(local_prob, win).astype(np.float64)
    ok = np.isfinite(local) & np.isfinite(ee_prob)
    tie = np.isclose(local, 0.5, atol=1e-6, rtol=0)
    disagree = ok & ~tie & ((local > 0.5) != (ee_class == 1))
    return {"pixels": int(ok.sum()), "max_probability_diff": float(np.max(np.abs(local - ee_prob)[ok]))
            if ok.any() else 0.0, "class_disagreements": int(disagree.sum()), "ties": int((ok & tie).sum()),
            "nodata_agrees": bool(np.array_equal(np.isfinite(local), np.isfinite(ee_prob))),
            "payload_bytes": gw.payload_bytes(graph), "functions": sorted(offline.function_names(graph)),
            "ee_probability": ee_prob}


def dry_run(run_dir: Path, *, region: str | None = None) -> dict[str, Any] | None:
    """Verify ``model/water`` against the Earth Engine graph on a finished run (None: no model)."""
    layout = RunLayout(run_dir)
    if not water.model_file(layout.water_model).is_file():
        return None
    params = load_params(layout.params)
    grid = build_grid(params, layout.root)
    model = water.load_model(layout.water_model)
    wins = [w for w in region_windows(params, grid, "predict", layout.root)
            if region is None or w.name == region]
    if not wins:
        raise DataError(f"no predict region named {region!r}", where="lcgee ee verify",
                        fix="pass --region with a region whose role is predict")
    feats = read_features(run_dir, chunks=None)
    prob = read_cog(layout.water_probability, chunks=None).values[0]
    result = verify_graph(model, feats, prob, wins[0], composite_bands=list(params.features.bands))
    result["region"] = wins[0].name
    return result


def _model_href(layout: RunLayout) -> str:
    """The water model's metadata file, relative to the run directory (for the STAC Item)."""
    return "./" + water.model_file(layout.water_model).relative_to(layout.root).as_posix()


def update_metrics(path: Path, section: str, values: Mapping[str, Any]) -> Path:
    """Read ``metrics.json`` (if any), set ``section``, write it back atomically."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[section] = values
    return write_json(path, data)


# ----------------------------------------------------------------------------- notebook steps


@dataclass(frozen=True)
class LabelCorrection:
    """The noisy labels corrected inside the training regions (:func:`correct_in_regions`)."""

    labels: np.ndarray
    """The labels on the run grid: corrected inside the training windows, noisy elsewhere."""

    history: Mapping[str, list[dict]]
    """Per training region, the relabelling of each iteration (:func:`water.correct_labels`)."""

    noise: pd.DataFrame
    """Label noise of the noisy and corrected labels per region against the demo truth
    (:func:`water.label_noise`; empty without a truth)."""

    @property
    def noise_summary(self) -> pd.DataFrame | str:
        """The noise table rounded for display, or why there is none."""
        return self.noise.round(4) if len(self.noise) else "no truth outside the demo world"


def correct_in_regions(features: np.ndarray, noisy: np.ndarray, train: Sequence[Window],
                       cfg: WaterParams, truth: np.ndarray | None = None) -> LabelCorrection:
    """Correct ``noisy`` labels in each training window only (the held-out region never sees
    its labels); with the demo ``truth`` (land-cover codes), measure the noise before and after."""
    corrected = noisy.copy()
    rows, history = [], {}
    for w in map(Window._make, train):
        fixed, history[w.name] = water.correct_labels(
            w.cut(features), w.cut(noisy), iterations=cfg.correction_iterations,
            confidence=cfg.correction_confidence, seed=cfg.seed)
        w.cut(corrected)[...] = fixed
        if truth is not None:
            tw = w.cut(truth) == water.WATER_CODE
            for kind, lab in (("noisy", w.cut(noisy)), ("corrected", fixed)):
                rows.append({"region": w.name, "labels": kind, **water.label_noise(lab, tw)})
    return LabelCorrection(corrected, history, pd.DataFrame(rows))


def truth_water(truth: np.ndarray | None, win: Window) -> np.ndarray | None:
    """The demo truth's water over ``win`` as uint8 1/0; None without a truth."""
    if truth is None:
        return None
    return (Window(*win).cut(truth) == water.WATER_CODE).astype(np.uint8)


@dataclass(frozen=True)
class WaterScores:
    """Water maps of the held-out region and their scores (:func:`held_out_scores`)."""

    metrics: dict[str, Any]
    """The ``water`` section of ``metrics.json``: region, label source, the Earth Engine dry
    run; with a truth also ``f1`` per method, ``label_noise`` and ``corrected_beats``."""

    maps: Mapping[str, np.ndarray]
    """Boolean water maps of the held-out window by method (``a_ndwi_otsu``, ``b_cnn_noisy``,
    ``c_cnn_corrected``, ``d_lightgbm``)."""

    message: str
    """One sentence: how the corrected CNN compares, or why nothing was scored."""

    @property
    def f1_table(self) -> pd.DataFrame:
        """F1 / precision / recall per method (rows); empty without a truth."""
        return pd.DataFrame(self.metrics.get("f1", {})).T


def held_out_scores(models: Mapping[str, water.WaterModel], features: np.ndarray,
                    feature_stack: xr.DataArray, corrected_prob: np.ndarray, landcover: np.ndarray,
                    win: Window, *, cfg: WaterParams, check: Mapping[str, Any],
                    truth: np.ndarray | None = None, subclass: np.ndarray | None = None,
                    noise: pd.DataFrame | None = None) -> WaterScores:
    """Water F1 in the held-out window of (a) NDWI (green / NIR) thresholded by Otsu, (b) the
    CNN on noisy labels, (c) the CNN on corrected labels, (d) the LightGBM map's water class.

    ``features`` is the network's input ``(band, y, x)``, ``feature_stack`` the run's feature
    DataArray (``B03``, ``B08`` give NDWI), ``corrected_prob`` the corrected CNN's probability
    and ``landcover`` the LightGBM map on the run grid; ``check`` the dry run
    (:func:`verify_graph`). Scores need the demo ``truth`` (and ``subclass`` for rice paddies).
    """
    win = Window(*win)
    noisy_prob = predict_window(models["noisy"], features, win, chunk=cfg.chunk)
    g, n = (np.asarray(win.cut(feature_stack.sel(band=b).values), dtype=np.float64)
            for b in ("B03", "B08"))
    ndwi = (g - n) / (g + n)
    prob = win.cut(corrected_prob)
    valid = np.isfinite(ndwi) & np.isfinite(noisy_prob) & np.isfinite(prob)
    maps = {"a_ndwi_otsu": ndwi > water.otsu_threshold(ndwi[valid]),
            "b_cnn_noisy": noisy_prob > 0.5,
            "c_cnn_corrected": prob > 0.5,
            "d_lightgbm": lightgbm_water(win.cut(landcover))}
    metrics: dict[str, Any] = {
        "region": win.name, "label_source": cfg.label_source,
        "ee_dry_run": {k: v for k, v in check.items() if k not in ("ee_probability", "functions")}}
    if truth is None:
        return WaterScores(metrics, maps, "no truth outside the demo world: water F1 not measured")
    metrics["f1"] = compare_methods(maps, win.cut(truth),
                                    None if subclass is None else win.cut(subclass), valid)
    metrics["label_noise"] = ([] if noise is None else noise.to_dict(orient="records"))
    best = metrics["f1"]["c_cnn_corrected"]["f1"]
    metrics["corrected_beats"] = {k: best > v["f1"] for k, v in metrics["f1"].items()
                                  if k != "c_cnn_corrected"}
    paddy = metrics["f1"]["c_cnn_corrected"].get("paddy_as_water")
    message = f"corrected CNN F1 {best:.4f} beats: {metrics['corrected_beats']}"
    if paddy is not None:
        message += f"; rice paddies mapped as water: {paddy:.2%}"
    return WaterScores(metrics, maps, message)


@dataclass(frozen=True)
class LiveWater:
    """What :func:`water_in_earth_engine` did with the live service."""

    message: str
    """What happened (skipped and why, export tasks started or not)."""

    landcover: Any = None
    """The water class as WorldCover's water code (80, elsewhere masked) named ``landcover``,
    for the land-cover viewer (:func:`lcgee.ee_stage.interactive_map`); None when skipped."""

    export_table: pd.DataFrame | None = field(default=None)
    """The started export tasks (``ee.start_export: true``), else None."""


def water_in_earth_engine(params: Params, grid: Grid, model: water.WaterModel) -> LiveWater:
    """Run the water image (:func:`lcgee.gee.water.water_image`) on the run's server-side
    composite and build (with ``ee.start_export``: start) its export tasks.

    Without ``ee.project`` or usable credentials nothing is sent and the message says so (the
    offline dry run is then this stage's Earth Engine result).
    """
    skipped = start_live_session(params)
    if skipped:
        return LiveWater(skipped + " The offline dry run above is this stage's Earth Engine "
                         "result.")
    image = gw.water_image(model, composite_for_params(params, grid))
    classes = image.select(gw.CLASS_BAND)
    table, note = export_image(classes, params, grid, suffix="_water")
    message = note or f"{len(table)} water export task(s) started"
    # water drawn as WorldCover's water class on the land-cover viewer
    as_landcover = classes.selfMask().multiply(water.WATER_CODE).rename("landcover")
    return LiveWater(message, landcover=as_landcover, export_table=None if note else table)
