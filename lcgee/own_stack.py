"""Bring your own stack: classify a Sentinel-2 time series you already have in memory.

:func:`run_own_stack` takes an ``xarray.DataArray`` ``(time, band, y, x)`` of surface
reflectance (0-1) with any subset of the Sentinel-2 bands, optional cloud probabilities or
masks, optional sun angles, and a label raster on the same grid, and runs the pipeline's own
steps: mask -> composite (:func:`lcgee.features.features_from_stack`) -> samples
(:mod:`lcgee.samples`, blocks from :mod:`lcgee.blocks`) -> train (:mod:`lcgee.train`, with the
plain-LightGBM baseline) -> evaluate on a spatially held-out part (:mod:`lcgee.evaluate`) ->
predict the whole grid.

Whatever is missing is skipped with a :class:`~lcgee.errors.DataWarning` that says so:
indices whose bands are absent; the cloud-shadow step without ``B08`` or sun azimuths (clouds
are still masked from the probabilities, with the tutorial's morphology); all cloud masking
when neither probabilities nor masks are given (NaN observations are still ignored).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lcgee import blocks, clouds, evaluate, features, samples, train
from lcgee.errors import DataError, DataWarning
from lcgee.masks import cloud_params
from lcgee.params import CloudParams, CompositeParams, LabelParams, TrainParams

__all__ = ["OwnStackResult", "run_own_stack", "mask_own_stack"]

DEFAULT_INDICES = ("NDVI", "NDWI", "MNDWI", "NDBI")


@dataclass
class OwnStackResult:
    """Everything :func:`run_own_stack` made."""

    features: xr.DataArray  #: (band, y, x) float32
    samples: pd.DataFrame
    model: train.ModelBundle
    baseline: train.ModelBundle
    landcover: np.ndarray  #: (y, x) uint8 class codes, 0 where no valid composite
    metrics: dict[str, Any] = field(default_factory=dict)
    blocks: blocks.BlockChoice | None = None


def mask_own_stack(stack: xr.DataArray, *, cloud_probability: xr.DataArray | None = None,
                   cloud_mask: xr.DataArray | None = None,
                   sun_azimuth: Sequence[float] | None = None, resolution: float,
                   cloud: CloudParams | None = None) -> xr.DataArray:
    """The stack with NaN where an observation is cloud, shadow or nodata.

    ``cloud_mask`` ``(time, y, x)``: True / non-zero = invalid (lcgee mask codes work too:
    anything but CLEAR). Else ``cloud_probability`` (0-100) runs the s2cloudless tutorial
    (:func:`lcgee.clouds.local_masks`), with its shadow step only when ``B08`` and
    ``sun_azimuth`` are both there.
    """
    if cloud_mask is not None:
        bad = cloud_mask.astype(bool) if cloud_mask.dtype != np.uint8 else cloud_mask != clouds.CLEAR
        return stack.where(~bad)
    if cloud_probability is None:
        warnings.warn("no cloud probabilities or masks: observations are not cloud-masked "
                      "(only NaN values are ignored)", DataWarning, stacklevel=3)
        return stack
    bands = [str(b) for b in stack["band"].values]
    params = cloud_params(cloud or CloudParams())
    nodata = stack.isnull().any("band")
    if "B08" in bands and sun_azimuth is not None:
        nir, azimuth = stack.sel(band="B08", drop=True), sun_azimuth
    else:
        why = "no B08 band" if "B08" not in bands else "no sun azimuths"
        warnings.warn(f"cloud-shadow step skipped ({why}): only clouds are masked",
                      DataWarning, stacklevel=3)
        # a bright stand-in NIR is never dark, so nothing becomes shadow; NaN keeps nodata
        nir = xr.ones_like(stack.isel(band=0, drop=True)).where(~nodata)
        azimuth = np.zeros(stack.sizes["time"])
    mask = clouds.local_masks(cloud_probability.transpose("time", "y", "x"), nir,
                              sun_azimuth=azimuth, resolution=resolution, **params.as_kwargs())
    return clouds.apply_mask(stack, mask)


def run_own_stack(stack: xr.DataArray, labels: np.ndarray | xr.DataArray, *,
                  holdout: np.ndarray | None = None,
                  cloud_probability: xr.DataArray | None = None,
                  cloud_mask: xr.DataArray | None = None,
                  sun_azimuth: Sequence[float] | None = None, resolution: float | None = None,
                  index_names: Sequence[str] = DEFAULT_INDICES,
                  composite: CompositeParams | None = None, label_params: LabelParams | None = None,
                  train_params: TrainParams | None = None,
                  cloud: CloudParams | None = None) -> OwnStackResult:
    """Mask, composite, sample, train, evaluate and predict an in-memory stack.

    Args:
        stack: ``(time, band, y, x)`` surface reflectance 0-1 (NaN = nodata), band names like
            ``B02``; ``x``/``y`` pixel-centre coordinates in metres.
        labels: ``(y, x)`` class codes on the same grid (0 = unlabelled).
        holdout: ``(y, x)`` bool, True for the evaluation region (never trained on); default:
            the southern half of the grid.
        cloud_probability, cloud_mask, sun_azimuth: see :func:`mask_own_stack`.
        resolution: pixel size in metres (default: from the ``x`` coordinates).
        index_names: spectral indices to add (skipped with a warning when bands are absent).
        composite, label_params, train_params, cloud: the params sections (defaults if None);
            ``composite.method: best`` ranks observations by ``cloud_probability``.

    Returns:
        :class:`OwnStackResult`; ``metrics`` holds ``block_cv``, ``holdout_vs_labels`` and the
        ``baseline``'s scores of both, like the run's ``metrics.json``.
    """
    comp_p, lab_p = composite or CompositeParams(), label_params or LabelParams()
    cfg = train_params or TrainParams()
    stack = _checked(stack)
    lab = np.asarray(getattr(labels, "values", labels))
    if lab.shape != (stack.sizes["y"], stack.sizes["x"]):
        raise DataError(f"labels have shape {lab.shape}, the stack's grid is "
                        f"{(stack.sizes['y'], stack.sizes['x'])}", where="labels",
                        fix="bring the labels onto the stack's grid first")
    res = resolution or float(abs(stack["x"].values[1] - stack["x"].values[0]))
    held = _holdout(holdout, lab.shape)
    masked = mask_own_stack(stack, cloud_probability=cloud_probability, cloud_mask=cloud_mask,
                            sun_azimuth=sun_azimuth, resolution=res, cloud=cloud)
    score = None  # best pixel ranks observations by cloud probability (lower is better)
    if comp_p.method == "best" and cloud_probability is not None:
        score = cloud_probability.transpose("time", "y", "x").fillna(100.0)
    result = features.features_from_stack(masked, comp_p.method, index_names=index_names,
                                          score=score, period=comp_p.period,
                                          empty_period=comp_p.empty_period)
    feats = result.features.compute() if result.features.chunks else result.features
    names = [str(b) for b in feats["band"].values]
    X = np.asarray(feats.values, dtype=np.float32)
    train_labels = np.where(held, 0, lab)
    choice = blocks.choose_block_size({"train": train_labels}, res, block_size=lab_p.block_size,
                                      cv_folds=cfg.cv_folds, valid_fraction=cfg.valid_fraction)
    table = samples.sample_region(X, train_labels, names, region="train", offset=(0, 0),
                                  block_px=choice.block_px, per_class=lab_p.samples_per_class,
                                  seed=cfg.seed, balance=lab_p.sampling == "balanced",
                                  floor=lab_p.min_samples_per_class)
    classes = sorted(int(c) for c in np.unique(lab[lab > 0]))
    model = train.train_lightgbm(table, names, cfg, class_values=classes)
    base = train.train_baseline(table, names, class_values=classes)
    landcover, landcover_base = (_predict(b, X) for b in (model, base))
    splits = evaluate.block_cv_splits(table["block"].to_numpy(), n_splits=cfg.cv_folds,
                                      seed=cfg.seed)
    metrics: dict[str, Any] = {"baseline": {}}
    for target, is_base in ((metrics, False), (metrics["baseline"], True)):
        oof = train.cross_validate(table, names, cfg, splits, class_values=classes,
                                   baseline=is_base)
        target["block_cv"] = evaluate.metrics(oof["label"], oof["predicted"], classes)
    ref = np.where(held, lab, 0)
    for target, pred in ((metrics, landcover), (metrics["baseline"], landcover_base)):
        ok = (pred > 0) & (ref > 0)
        present = sorted(set(classes) | {int(c) for c in np.unique(ref[ok])})
        target["holdout_vs_labels"] = evaluate.metrics(ref[ok], pred[ok], present)
    metrics["training"] = {"blocks": choice.to_dict(), "sampling": lab_p.sampling,
                           "best_iteration": model.meta["best_iteration"],
                           "features": names}
    return OwnStackResult(feats, table, model, base, landcover, metrics, choice)


def _checked(stack: Any) -> xr.DataArray:
    if not isinstance(stack, xr.DataArray) or set(stack.dims) != {"time", "band", "y", "x"}:
        dims = getattr(stack, "dims", type(stack).__name__)
        raise DataError(f"expected a DataArray with dims (time, band, y, x), got {dims}",
                        where="stack", fix="stack the scenes with dims time, band, y, x")
    stack = stack.transpose("time", "band", "y", "x")
    sample = np.asarray(stack.isel(time=0).values)
    if np.isfinite(sample).any() and np.nanmedian(sample) > 2.0:
        raise DataError("the stack looks like digital numbers, not reflectance",
                        where="stack", fix="divide by 10000 (after harmonizing baseline 04.00)")
    return stack.astype(np.float32)


def _holdout(holdout: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if holdout is None:
        held = np.zeros(shape, bool)
        held[shape[0] // 2:] = True
        return held
    held = np.asarray(holdout, dtype=bool)
    if held.shape != shape or held.all() or not held.any():
        raise DataError("holdout must be a (y, x) bool array on the stack's grid, with both "
                        "True (evaluation) and False (training) pixels", where="holdout")
    return held


def _predict(bundle: train.ModelBundle, X: np.ndarray) -> np.ndarray:
    valid = np.all(np.isfinite(X), axis=0)
    out = np.zeros(X.shape[1:], np.uint8)
    out[valid] = bundle.predict_labels(X[:, valid].T.astype(np.float64))
    return out
