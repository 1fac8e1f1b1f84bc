"""Toy data shared by tests in several folders (the folders have no ``__init__``; tests/ is on
sys.path through its conftest)."""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic"]


def synthetic(seed=0, shape=(120, 160)):
    """Features that separate three classes, with NaN holes and unlabelled pixels."""
    rng = np.random.default_rng(seed)
    lab = np.where(np.arange(shape[1])[None, :] < 50, 10, np.where(np.arange(shape[1]) < 110, 40, 80))
    lab = np.broadcast_to(lab, shape).copy()
    base = {10: [0.03, 0.03, 0.35], 40: [0.06, 0.08, 0.28], 80: [0.05, 0.04, 0.02]}
    X = np.zeros((4, *shape), np.float32)
    for code, mean in base.items():
        sel = lab == code
        for b, m in enumerate(mean):
            X[b][sel] = m + rng.normal(0, 0.01, sel.sum())
    X[3] = (X[2] - X[1]) / (X[2] + X[1])
    X[:, 5:10, 5:10] = np.nan
    lab[0:3] = 0
    return X, lab


def masked_stack(client, items, grid, bands, *, chunk=128):
    """``(cfg, masked)``: the scenes' local s2cloudless masks (aggressive preset) applied to
    their harmonized reflectance ``bands`` on ``grid`` (lazy), as the composite stage sees them."""
    from lcgee import clouds, load, masks
    from lcgee.params import CloudParams

    cfg = CloudParams(source="local", fallback="none", preset="aggressive")
    got = masks.scene_masks(items, grid, cfg, client=client, chunk=chunk)
    mask = np.stack([m.values for _, _, m in got])
    ds = load.load_stack(items, grid, bands, chunk=chunk, time_chunk=-1)
    stack = load.reflectance(ds, bands)
    return cfg, clouds.apply_mask(stack, stack.isel(band=0, drop=True).copy(data=mask))
