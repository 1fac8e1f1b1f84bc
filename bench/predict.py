"""Benchmark: lcgee.fastpredict.FastPredictor vs LightGBM's ``Booster.predict`` on a map tile.

Run as ``python bench/predict.py`` (``--quick`` for a smaller, noisier run). Synthetic but
realistic data: 14 features (10 reflectance-like Sentinel-2 bands and 4 normalized-difference
indices computed from them), 8 classes with class-dependent spectra, per-pixel brightness and
noise, 5 % label noise. A multiclass model with 200 iterations, 31 leaves and
``use_missing=False`` (no early stopping) is trained on 100,000 rows, then a 1024 x 1024 tile
(float32, classes in patches like a real map) is classified.

Timing (this machine is shared, so best of 3): ``Booster.predict`` with its default threads
(all cores) is timed on the three thirds of the tile, best third counts, and the three together
give the labels compared with lcgee's; LightGBM with ``num_threads=2`` is timed on 100,000 px.
FastPredictor is timed on the whole tile three times after a warm-up. ``prepare_s`` is
``from_booster`` plus the warm-up (kernel compile or numba cache load) in this process;
``prepare_cold_s`` is the same in a fresh process with an empty numba cache (a first compile).
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lcgee.fastpredict import FastPredictor  # noqa: E402 - after the sys.path line

BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]
INDICES = {"NDVI": ("B8", "B4"), "NDWI": ("B3", "B8"), "NDBI": ("B11", "B8"),
           "NDMI": ("B8", "B11")}
N_CLASSES = 8
SEED = 20240607
REPEATS = 3


def features(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float32 features (n, 14) for class labels: spectra, brightness, noise, indices."""
    spectra = np.random.default_rng(SEED).uniform(0.02, 0.45, (N_CLASSES, len(BANDS)))
    bright = rng.lognormal(0.0, 0.15, (labels.size, 1))
    bands = np.clip(spectra[labels] * bright + rng.normal(0, 0.03, (labels.size, len(BANDS))),
                    0.0001, 1.0)
    col = {b: bands[:, i] for i, b in enumerate(BANDS)}
    idx = [(col[a] - col[b]) / (col[a] + col[b]) for a, b in INDICES.values()]
    return np.column_stack([bands, *idx]).astype(np.float32)


def training_table(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels, with 5 % of the labels replaced at random (noisy reference map)."""
    labels = rng.integers(0, N_CLASSES, n)
    X = features(labels, rng)
    noisy = rng.random(n) < 0.05
    labels[noisy] = rng.integers(0, N_CLASSES, int(noisy.sum()))
    return X, labels


def tile(side: int, rng: np.random.Generator) -> np.ndarray:
    """A side x side tile in row-major pixel order: classes in patches of 8-64 px."""
    labels = np.zeros((side, side), np.int64)
    for size in (64, 32, 16, 8):
        n = side // size
        patch = np.kron(rng.integers(0, N_CLASSES, (n, n)), np.ones((size, size), np.int64))
        keep = np.kron(rng.random((n, n)) < 0.5, np.ones((size, size), bool))
        labels[:n * size, :n * size] = np.where(keep, patch, labels[:n * size, :n * size])
    return features(labels.ravel(), rng)


def train(X: np.ndarray, y: np.ndarray, rounds: int) -> lgb.Booster:
    params = {"objective": "multiclass", "num_class": N_CLASSES, "num_leaves": 31,
              "learning_rate": 0.1, "use_missing": False, "verbose": -1, "seed": 1}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=BANDS + list(INDICES)), rounds)


def best_time(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_booster(booster: lgb.Booster, X: np.ndarray) -> tuple[float, np.ndarray]:
    """Best px/s over the thirds of ``X`` (default threads) and the labels of all of ``X``."""
    labels, rates = [], []
    for part in np.array_split(X, REPEATS):
        start = time.perf_counter()
        labels.append(np.argmax(booster.predict(part), axis=1))
        rates.append(len(part) / (time.perf_counter() - start))
    return max(rates), np.concatenate(labels)


def prepare_cold(model_path: Path) -> float:
    """``from_model_file`` + warm-up in a fresh process with an empty numba cache."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); import numpy as np\n"
            "from lcgee.fastpredict import FastPredictor\n"
            "t = time.perf_counter(); f = FastPredictor.from_model_file(sys.argv[2]); f.warm_up()\n"
            "print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(model_path)], env=env,
                              capture_output=True, text=True, check=True, timeout=600)
    return float(proc.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller model and tile")
    args = parser.parse_args()
    side, rounds, n_train = (512, 50, 30_000) if args.quick else (1024, 200, 100_000)
    rng = np.random.default_rng(SEED)

    X_train, y_train = training_table(n_train, rng)
    start = time.perf_counter()
    booster = train(X_train, y_train, rounds)
    print(f"trained {booster.num_trees()} trees (31 leaves max) on {n_train:,} rows in "
          f"{time.perf_counter() - start:.1f} s")
    X = tile(side, rng)
    print(f"tile: {side} x {side} = {len(X):,} px, {X.shape[1]} float32 features")

    start = time.perf_counter()
    fast = FastPredictor.from_booster(booster)
    fast.warm_up()
    prepare_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        booster.save_model(Path(tmp) / "model.txt")
        prepare_cold_s = prepare_cold(Path(tmp) / "model.txt")
    print(f"FastPredictor ({fast.method}): prepare {prepare_s:.2f} s here, "
          f"{prepare_cold_s:.2f} s in a fresh process with an empty numba cache")

    lcgee_px_s = len(X) / best_time(lambda: fast.predict_index(X))
    labels = fast.predict_index(X)
    shuffled = X[rng.permutation(len(X))]
    shuffled_px_s = len(X) / best_time(lambda: fast.predict_index(shuffled))
    print(f"lcgee FastPredictor: {lcgee_px_s:,.0f} px/s (pixels shuffled: {shuffled_px_s:,.0f})")

    booster_px_s, booster_labels = time_booster(booster, X)
    sub = X[:100_000]
    two_px_s = len(sub) / best_time(lambda: booster.predict(sub, num_threads=2))
    print(f"LightGBM Booster.predict: {booster_px_s:,.0f} px/s default threads, "
          f"{two_px_s:,.0f} px/s num_threads=2")

    agreement = float(np.mean(labels == booster_labels))
    raw_diff = float(np.abs(fast.raw_scores(sub[:20_000])
                            - booster.predict(sub[:20_000], raw_score=True)).max())
    print(f"speedup {lcgee_px_s / booster_px_s:.1f}x; labels identical on {agreement:.6f} of "
          f"{len(X):,} px; max raw score difference {raw_diff:.1e} (20,000 px)")
    print(json.dumps({
        "booster_px_s": round(booster_px_s), "lcgee_px_s": round(lcgee_px_s),
        "speedup": round(lcgee_px_s / booster_px_s, 2), "label_agreement": agreement,
        "prepare_s": round(prepare_s, 2), "prepare_cold_s": round(prepare_cold_s, 2),
        "booster_2threads_px_s": round(two_px_s), "lcgee_shuffled_px_s": round(shuffled_px_s),
        "max_raw_diff": raw_diff, "n_pixels": len(X), "n_trees": booster.num_trees(),
        "method": fast.method}))


if __name__ == "__main__":
    main()
