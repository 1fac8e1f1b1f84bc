"""Unsupervised k-means on composite features (scikit-learn), fitted on one region.

Features are standardised with the fit region's statistics; pixels without a valid composite
get cluster 0 (clusters are numbered from 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from lcgee.errors import DataError
from lcgee.grid import Grid

__all__ = ["KMeansModel", "fit_kmeans", "predict_kmeans", "cluster_map", "CLUSTER_COLOURS"]

#: A qualitative palette for cluster maps (distinct from the WorldCover colours).
CLUSTER_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
                   "#a6761d", "#666666", "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6"]


@dataclass
class KMeansModel:
    kmeans: Any
    mean: np.ndarray
    std: np.ndarray
    feature_names: list[str]


def _window(features: xr.DataArray, region: Grid, grid: Grid) -> np.ndarray:
    r0, c0 = region.offset_in(grid)
    return np.asarray(features[:, r0:r0 + region.height, c0:c0 + region.width].values,
                      dtype=np.float64)


def fit_kmeans(features: xr.DataArray, region: Grid, grid: Grid, *, n_clusters: int = 8,
               sample: int = 50_000, seed: int = 0) -> KMeansModel:
    """Fit k-means on up to ``sample`` valid pixels of ``region``."""
    from sklearn.cluster import KMeans

    X = _window(features, region, grid).reshape(features.sizes["band"], -1).T
    X = X[np.all(np.isfinite(X), axis=1)]
    if len(X) < n_clusters:
        raise DataError(f"only {len(X)} valid pixels to fit {n_clusters} clusters",
                        where="k-means", fix="choose a region with cloud-free observations")
    rng = np.random.default_rng(seed)
    X = X[rng.choice(len(X), size=min(sample, len(X)), replace=False)]
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std == 0] = 1.0
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit((X - mean) / std)
    return KMeansModel(km, mean, std, [str(b) for b in features["band"].values])


def predict_kmeans(model: KMeansModel, features: xr.DataArray, region: Grid,
                   grid: Grid) -> np.ndarray:
    """Cluster number (1..k, 0 = no valid composite) for every pixel of ``region``."""
    names = [str(b) for b in features["band"].values]
    if names != model.feature_names:
        raise DataError(f"features {names} differ from the fitted ones {model.feature_names}",
                        where="k-means")
    X = _window(features, region, grid)
    flat = X.reshape(X.shape[0], -1).T
    valid = np.all(np.isfinite(flat), axis=1)
    out = np.zeros(flat.shape[0], dtype=np.uint8)
    out[valid] = model.kmeans.predict((flat[valid] - model.mean) / model.std) + 1
    return out.reshape(region.shape)


def cluster_map(ax: Any, clusters: np.ndarray, *, title: str = "clusters") -> Any:
    """Draw a cluster map with its own colours and a legend."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    k = int(clusters.max())
    colours = [CLUSTER_COLOURS[i % len(CLUSTER_COLOURS)] for i in range(max(k, 1))]
    im = ax.imshow(np.ma.masked_equal(clusters, 0), cmap=ListedColormap(colours), vmin=0.5,
                   vmax=max(k, 1) + 0.5, interpolation="nearest")
    ax.legend(handles=[Patch(color=colours[i], label=f"cluster {i + 1}") for i in range(k)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return im
