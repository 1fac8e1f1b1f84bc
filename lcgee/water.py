"""Surface water: noisy labels, label-noise correction, a pixel-based CNN and its chunked map.

After the Water_gee system (seed 004): water / not-water labels come from what a user already
has (ESA WorldCover class 80 and Sen2Cor SCL class 6 over the composite period), their noise
is corrected by self-learning under the assumption that each class's spectra are roughly
(mixtures of) normal distributions, and a small pixel-based CNN reads the 7 x 7 neighbourhood
of every pixel:

    x (7x7xC) -> conv3x3 16 -> ReLU -> conv3x3 32 -> ReLU -> [cat centre 3x3 of x]
      -> conv3x3 64 -> ReLU -> [cat centre pixel of x] -> 1x1 128 -> ReLU -> 1x1 2 -> softmax

Training runs on 7 x 7 patches with valid convolutions (JAX, the ``lcgee[water]`` extra). A
map is the same network with "same" convolutions over whole chunks, with the semantics of the
Earth Engine graph of :mod:`lcgee.gee.water`: a masked (NaN) input pixel counts as 0 after
normalisation (``neighborhoodToArray``'s ``defaultValue``), hidden layers are zeroed where any
input band of the centre pixel is masked, and the output is masked there. Where a pixel's 7 x 7
neighbourhood is complete this equals the patch network exactly. Chunks carry a halo of
:data:`HALO` px (the receptive field's radius), so a chunked map equals a whole-image one.

Every function takes plain numpy arrays; the framework is imported only where needed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lcgee.errors import DataError, ModelError, require
from lcgee.files import atomic_path, write_json

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["WATER_CODE", "PADDY_SUBCLASS", "SCL_WATER", "HALO", "WaterModel", "scl_water_fraction",
           "noisy_labels", "label_noise", "correct_labels", "sample_patches", "init_weights",
           "train_network", "forward_patches", "predict_probability", "save_model", "model_file",
           "load_model", "otsu_threshold", "water_scores", "paddy_as_water"]

#: ESA WorldCover code of permanent water bodies.
WATER_CODE = 80
#: Demo world sub-class of rice paddies (flooded in early summer).
PADDY_SUBCLASS = 41
#: Sen2Cor SCL class "water".
SCL_WATER = 6
#: Receptive-field radius of the network (three 3 x 3 layers).
HALO = 3
#: Layer widths of the seed's network.
WIDTHS = (16, 32, 64, 128, 2)


def _jax() -> Any:
    require("jax", "water")
    import jax

    return jax


# ----------------------------------------------------------------------------- labels


def scl_water_fraction(scl: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Share of clear observations that SCL calls water, per pixel (NaN: never clear).

    ``scl`` and ``clear`` are ``(time, y, x)``; ``clear`` is True where the scene is usable.
    """
    scl, clear = np.asarray(scl), np.asarray(clear, dtype=bool)
    if scl.shape != clear.shape or scl.ndim != 3:
        raise DataError(f"SCL {scl.shape} and clear mask {clear.shape} must be equal (time, y, x)",
                        where="water.scl_water_fraction", fix="load both on the run grid")
    n = clear.sum(axis=0)
    hits = ((scl == SCL_WATER) & clear).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hits / np.maximum(n, 1), np.nan).astype(np.float32)


def noisy_labels(worldcover: np.ndarray | None, scl_fraction: np.ndarray | None, *,
                 source: str = "both", scl_min_fraction: float = 0.5) -> np.ndarray:
    """Water (1) / not water (0) / unknown (255) from WorldCover class 80 and/or SCL class 6.

    ``source``: ``worldcover`` (code 80 is water; code 0 = nodata is unknown), ``scl`` (water
    when at least ``scl_min_fraction`` of the clear observations are SCL water; never clear =
    unknown), ``both`` (water if either says water; unknown only where both are).
    """
    parts = []
    if source in ("worldcover", "both"):
        if worldcover is None:
            raise DataError("WorldCover labels are needed", where="water.noisy_labels",
                            fix="pass labels.tif or set water.label_source: scl")
        wc = np.asarray(worldcover)
        parts.append((wc == WATER_CODE, wc > 0))
    if source in ("scl", "both"):
        if scl_fraction is None:
            raise DataError("the SCL water fraction is needed", where="water.noisy_labels",
                            fix="pass scl_water_fraction(...) or set water.label_source: worldcover")
        f = np.asarray(scl_fraction)
        parts.append((np.nan_to_num(f, nan=0.0) >= scl_min_fraction, np.isfinite(f)))
    if not parts:
        raise DataError(f"unknown label source {source!r}", where="water.noisy_labels",
                        fix="use worldcover, scl or both")
    water = np.logical_or.reduce([p[0] for p in parts])
    known = np.logical_or.reduce([p[1] for p in parts])
    return np.where(water, 1, np.where(known, 0, 255)).astype(np.uint8)


def label_noise(labels: np.ndarray, truth_water: np.ndarray) -> dict[str, float]:
    """False-water rate (labelled water, truly not) and missed-water rate (truly water, not labelled)."""
    lab, truth = np.asarray(labels), np.asarray(truth_water, dtype=bool)
    known = lab != 255
    said = (lab == 1) & known
    return {"pixels": int(known.sum()),
            "false_water_rate": float((said & ~truth).sum() / max(int(said.sum()), 1)),
            "missed_water_rate": float((~said & truth & known).sum()
                                       / max(int((truth & known).sum()), 1)),
            "disagreement": float((said != truth)[known].mean()) if known.any() else 0.0}


def correct_labels(features: np.ndarray, labels: np.ndarray, *, iterations: int = 3,
                   confidence: float = 0.95, components: tuple[int, int] = (1, 1),
                   fit_samples: int = 5000, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Self-learning label correction: each class's spectra taken as (roughly) normal.

    ``features`` ``(band, y, x)`` (NaN = masked), ``labels`` from :func:`noisy_labels`. Each
    iteration fits a Gaussian (full covariance; ``components`` > 1 fits a mixture, per class:
    (not water, water)) to the spectra of each current class, computes the posterior of water
    with the class shares as priors, and flips every pixel whose posterior contradicts its label
    with probability >= ``confidence``. One Gaussian per class (the seed's assumption) is the
    default: on the demo, mixtures absorb the structured noise (shore pixels, turbid water) into
    a component of the wrong class and correct much less.
    Returns the corrected labels and one record per iteration (pixels flipped each way).
    """
    from sklearn.mixture import GaussianMixture

    X = np.asarray(features, dtype=np.float64).reshape(features.shape[0], -1).T
    lab = np.asarray(labels).ravel().copy()
    ok = np.all(np.isfinite(X), axis=1) & (lab != 255)
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    for it in range(iterations):
        log_like = []
        for cls in (0, 1):
            idx = np.flatnonzero(ok & (lab == cls))
            if idx.size < 10 * components[cls]:
                raise DataError(f"only {idx.size} pixels labelled {'water' if cls else 'not water'}",
                                where="water.correct_labels",
                                fix="map a region with more water, or use water.label_source: both")
            pick = rng.choice(idx, size=min(fit_samples, idx.size), replace=False)
            gm = GaussianMixture(components[cls], covariance_type="full", random_state=seed,
                                 reg_covar=1e-5).fit(X[pick])
            log_like.append(gm.score_samples(X[ok]) + np.log(idx.size))
        post = 1.0 / (1.0 + np.exp(np.clip(log_like[0] - log_like[1], -700, 700)))
        current = lab[ok]
        new = current.copy()
        new[(current == 0) & (post >= confidence)] = 1
        new[(current == 1) & (1 - post >= confidence)] = 0
        history.append({"iteration": it + 1, "to_water": int(((current == 0) & (new == 1)).sum()),
                        "to_not_water": int(((current == 1) & (new == 0)).sum())})
        lab[np.flatnonzero(ok)] = new
        if history[-1]["to_water"] + history[-1]["to_not_water"] == 0:
            break
    return lab.reshape(labels.shape).astype(np.uint8), history


# ----------------------------------------------------------------------------- samples


def sample_patches(features: np.ndarray, labels: np.ndarray, *, per_class: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Balanced 7 x 7 patches ``(N, 7, 7, C)`` float32 around labelled pixels, and labels ``(N,)``.

    Only pixels whose whole 7 x 7 neighbourhood lies inside the array and is finite are used;
    water and not-water get ``min(per_class, available water, available not water)`` each.
    """
    feats = np.asarray(features, dtype=np.float32)
    w = feats.shape[2]
    finite = np.all(np.isfinite(feats), axis=0)
    from scipy import ndimage

    full = ndimage.minimum_filter(finite.astype(np.uint8), size=2 * HALO + 1, mode="constant",
                                  cval=0).astype(bool)
    rng = np.random.default_rng(seed)
    picks = []
    cands = [np.flatnonzero(full.ravel() & (np.asarray(labels).ravel() == k)) for k in (0, 1)]
    n = min(per_class, *(x.size for x in cands))
    if n < 10:
        raise DataError(f"only {n} complete 7 x 7 samples of one class", where="water.sample_patches",
                        fix="use larger training regions or more water")
    for cand in cands:
        picks.append(np.sort(rng.choice(cand, size=n, replace=False)))
    idx = np.concatenate(picks)
    rows, cols = np.divmod(idx, w)
    off = np.arange(-HALO, HALO + 1)
    patches = feats[:, rows[:, None, None] + off[None, :, None], cols[:, None, None] + off[None, None, :]]
    y = np.concatenate([np.zeros(n, np.int32), np.ones(n, np.int32)])
    return np.moveaxis(patches, 0, -1), y


# ----------------------------------------------------------------------------- network


@dataclass
class WaterModel:
    """Trained weights with their input bands, normalisation and provenance."""

    bands: list[str]
    mean: np.ndarray
    std: np.ndarray
    weights: dict[str, np.ndarray]
    provenance: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def normalise(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        shape = [1] * x.ndim
        shape[axis] = -1
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)


def init_weights(n_bands: int, seed: int) -> dict[str, np.ndarray]:
    """He-normal weights (HWIO kernels), zero biases, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    c = n_bands
    shapes = {"w1": (3, 3, c, 16), "w2": (3, 3, 16, 32), "w3": (3, 3, 32 + c, 64),
              "w4": (64 + c, 128), "w5": (128, 2)}
    out: dict[str, np.ndarray] = {}
    for i, (name, shape) in enumerate(shapes.items(), start=1):
        fan_in = int(np.prod(shape[:-1]))
        out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        out[f"b{i}"] = np.zeros(shape[-1], np.float32)
    return out


def _patch_logits(w: Mapping[str, Any], x: Any) -> Any:
    """Logits ``(N, 2)`` of normalised patches ``(N, 7, 7, C)`` (valid convolutions)."""
    jax = _jax()
    jnp = jax.numpy

    def conv(v: Any, k: Any, b: Any) -> Any:
        out = jax.lax.conv_general_dilated(v, k, (1, 1), "VALID",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(out + b)

    h = conv(x, w["w1"], w["b1"])
    h = conv(h, w["w2"], w["b2"])
    h = conv(jnp.concatenate([h, x[:, 2:5, 2:5, :]], axis=-1), w["w3"], w["b3"])
    h = jnp.concatenate([h[:, 0, 0, :], x[:, HALO, HALO, :]], axis=-1)
    h = jax.nn.relu(h @ w["w4"] + w["b4"])
    return h @ w["w5"] + w["b5"]


def forward_patches(model: WaterModel, patches: np.ndarray) -> np.ndarray:
    """Water probability of raw (not normalised) patches ``(N, 7, 7, C)``."""
    jax = _jax()
    x = jax.numpy.asarray(model.normalise(np.asarray(patches, np.float32)))
    logits = jax.jit(_patch_logits)(model.weights, x)
    return np.asarray(jax.nn.softmax(logits, axis=-1)[:, 1])


def train_network(patches: np.ndarray, y: np.ndarray, bands: Sequence[str], *, epochs: int = 12,
                  batch_size: int = 256, learning_rate: float = 2e-3, validation: float = 0.15,
                  seed: int = 0, provenance: Mapping[str, Any] | None = None) -> WaterModel:
    """Train with Adam on cross-entropy; ``history`` holds train and validation loss per epoch."""
    jax = _jax()
    jnp = jax.numpy
    patches = np.asarray(patches, np.float32)
    if patches.ndim != 4 or patches.shape[1:3] != (7, 7) or patches.shape[3] != len(bands):
        raise DataError(f"patches have shape {patches.shape}, expected (N, 7, 7, {len(bands)})",
                        where="water.train_network", fix="use sample_patches")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = int(round(validation * len(y)))
    val, tr = order[:n_val], order[n_val:]
    centre = patches[tr, HALO, HALO, :]
    mean = centre.mean(axis=0).astype(np.float64)
    std = np.maximum(centre.std(axis=0), 1e-6).astype(np.float64)
    model = WaterModel(list(bands), mean, std, init_weights(len(bands), seed))
    x_all = jnp.asarray(model.normalise(patches))
    y_all = jnp.asarray(np.asarray(y, np.int32))

    def loss_fn(w: Any, x: Any, t: Any) -> Any:
        logp = jax.nn.log_softmax(_patch_logits(w, x), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def step(w: Any, m: Any, v: Any, k: Any, x: Any, t: Any) -> Any:
        loss, g = jax.value_and_grad(loss_fn)(w, x, t)
        m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        corr = jnp.sqrt(1 - b2 ** k) / (1 - b1 ** k)
        w = jax.tree_util.tree_map(lambda p, a, b: p - learning_rate * corr * a / (jnp.sqrt(b) + eps),
                                   w, m, v)
        return w, m, v, loss

    eval_loss = jax.jit(loss_fn)
    w = {k: jnp.asarray(v) for k, v in model.weights.items()}
    m = jax.tree_util.tree_map(jnp.zeros_like, w)
    v = jax.tree_util.tree_map(jnp.zeros_like, w)
    k = 0
    batch_size = min(batch_size, len(tr))
    for epoch in range(epochs):
        perm = tr[rng.permutation(len(tr))]
        losses = []
        for start in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[start:start + batch_size]
            k += 1
            w, m, v, loss = step(w, m, v, float(k), x_all[idx], y_all[idx])
            losses.append(float(loss))
        model.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                              "val_loss": float(eval_loss(w, x_all[val], y_all[val]))
                              if n_val else float("nan")})
    model.weights = {k: np.asarray(a) for k, a in w.items()}
    model.provenance = {"framework": "jax", "jax": jax.__version__, "seed": seed,
                        "epochs": epochs, "samples": int(len(y)), "created":
                        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        **dict(provenance or {})}
    return model


# ----------------------------------------------------------------------------- maps


def _image_logits_fn() -> Callable[..., Any]:
    """Jitted whole-chunk network: ``(w, x (H, W, C) normalised, valid (H, W))`` -> logits."""
    jax = _jax()
    jnp = jax.numpy

    def conv_same(h: Any, k: Any, b: Any, valid: Any) -> Any:
        hh, ww = h.shape[0], h.shape[1]
        p = jnp.pad(h, ((1, 1), (1, 1), (0, 0)))
        cols = jnp.concatenate([p[dy:dy + hh, dx:dx + ww, :] for dy in range(3) for dx in range(3)],
                               axis=-1)
        kk = jnp.transpose(k, (0, 1, 2, 3)).reshape(-1, k.shape[-1])  # (dy, dx, cin) rows
        return jnp.where(valid[..., None], jax.nn.relu(cols @ kk + b), 0.0)

    def fn(w: Any, x: Any, valid: Any) -> Any:
        h = conv_same(x, w["w1"], w["b1"], valid)
        h = conv_same(h, w["w2"], w["b2"], valid)
        h = conv_same(jnp.concatenate([h, x], axis=-1), w["w3"], w["b3"], valid)
        h = jax.nn.relu(jnp.concatenate([h, x], axis=-1) @ w["w4"] + w["b4"])
        return h @ w["w5"] + w["b5"]

    return jax.jit(fn)


def _predict_chunk(model: WaterModel, fn: Callable[..., Any], raw: np.ndarray) -> np.ndarray:
    """Probability ``(H, W)`` of one raw ``(C, H, W)`` block (NaN where masked)."""
    jax = _jax()
    x = np.moveaxis(np.asarray(raw, np.float32), 0, -1)
    finite = np.isfinite(x)
    valid = np.all(finite, axis=-1)
    xn = np.where(finite, model.normalise(x), np.float32(0.0))
    logits = np.asarray(fn(model.weights, jax.numpy.asarray(xn), jax.numpy.asarray(valid)),
                        dtype=np.float64)
    prob = 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))
    return np.where(valid, prob, np.nan).astype(np.float32)


def predict_probability(model: WaterModel, features: np.ndarray | xr.DataArray, *,
                        chunk: int = 512) -> np.ndarray:
    """Water probability ``(y, x)`` float32 of a feature stack, chunk by chunk (NaN = masked).

    ``features`` is a ``(band, y, x)`` array or ``xarray.DataArray`` with a ``band``
    coordinate holding the model's bands. Each chunk is read with a halo of :data:`HALO` px
    (NaN beyond the image), so the result equals one whole-image pass; memory is bounded by
    ``chunk``.
    """
    if hasattr(features, "sel") and "band" in getattr(features, "coords", {}):
        missing = [b for b in model.bands if b not in list(features["band"].values)]
        if missing:
            raise ModelError(f"the feature stack lacks the water model's bands {missing}",
                             where="water.predict_probability", fix="add them to features.indices")
        features = features.sel(band=model.bands)
    _, h, w = features.shape
    if chunk < 1:
        raise DataError(f"chunk must be positive, got {chunk}", where="water.predict_probability",
                        fix="pass chunk >= 1")
    fn = _image_logits_fn()
    out = np.full((h, w), np.nan, np.float32)
    for r0 in range(0, h, chunk):
        for c0 in range(0, w, chunk):
            r1, c1 = min(r0 + chunk, h), min(c0 + chunk, w)
            a0, b0, a1, b1 = max(r0 - HALO, 0), max(c0 - HALO, 0), min(r1 + HALO, h), min(c1 + HALO, w)
            block = np.asarray(features[:, a0:a1, b0:b1], np.float32)
            pad = ((0, 0), (HALO - (r0 - a0), HALO - (a1 - r1)), (HALO - (c0 - b0), HALO - (b1 - c1)))
            block = np.pad(block, pad, constant_values=np.nan)
            prob = _predict_chunk(model, fn, block)
            out[r0:r1, c0:c1] = prob[HALO:HALO + r1 - r0, HALO:HALO + c1 - c0]
    return out


# ----------------------------------------------------------------------------- bundle


def model_file(directory: Path) -> Path:
    """The metadata file of the water model bundle in ``directory``."""
    return directory / "water_model.json"


def save_model(model: WaterModel, directory: Path) -> Path:
    """``water_weights.npz`` + ``water_model.json`` (bands, normalisation, history, provenance)."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "water_weights.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **model.weights)
    meta = {"bands": model.bands, "mean": model.mean.tolist(), "std": model.std.tolist(),
            "architecture": "pixel CNN 7x7 (Water_gee): conv3x3 16, conv3x3 32, cat centre 3x3, "
            "conv3x3 64, cat centre pixel, 1x1 128, 1x1 2", "halo": HALO,
            "history": model.history, "provenance": model.provenance}
    return write_json(model_file(directory), meta)


def load_model(directory: Path) -> WaterModel:
    """Read a bundle written by :func:`save_model`."""
    meta_path, w_path = model_file(directory), directory / "water_weights.npz"
    if not meta_path.is_file() or not w_path.is_file():
        raise ModelError(f"no water model in {directory}", where="water.load_model",
                         fix="run notebook 09 first")
    meta = json.loads(meta_path.read_text())
    with np.load(w_path) as z:
        weights = {k: z[k] for k in z.files}
    return WaterModel(list(meta["bands"]), np.asarray(meta["mean"]), np.asarray(meta["std"]),
                      weights, meta.get("provenance", {}), meta.get("history", []))


# ----------------------------------------------------------------------------- measures


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the finite ``values`` (between-class variance maximised)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise DataError("no finite values", where="water.otsu_threshold", fix="pass an index map")
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])


def water_scores(predicted: np.ndarray, truth_water: np.ndarray,
                 valid: np.ndarray | None = None) -> dict[str, float]:
    """Water F1, precision and recall of a boolean map against truth (on ``valid`` pixels)."""
    p, t = np.asarray(predicted, bool), np.asarray(truth_water, bool)
    ok = np.ones_like(p) if valid is None else np.asarray(valid, bool)
    tp = int((p & t & ok).sum())
    fp = int((p & ~t & ok).sum())
    fn = int((~p & t & ok).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
            "pixels": int(ok.sum())}


def paddy_as_water(predicted: np.ndarray, subclass: np.ndarray,
                   valid: np.ndarray | None = None) -> float:
    """Share of rice-paddy pixels (demo sub-class 41) mapped as water."""
    paddy = np.asarray(subclass) == PADDY_SUBCLASS
    if valid is not None:
        paddy &= np.asarray(valid, bool)
    return float((np.asarray(predicted, bool) & paddy).sum() / max(int(paddy.sum()), 1))
