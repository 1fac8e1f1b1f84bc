"""The README's main job: `lcgee run params/demo.yaml` end to end on the full demo world."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pc-subscription-key-for-the-demo-test-0123"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-run")
    env = {**__import__("os").environ, "PC_SDK_SUBSCRIPTION_KEY": SECRET}
    proc = subprocess.run([sys.executable, "-m", "lcgee.cli", "run", str(ROOT / "params/demo.yaml"),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=1800, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, env


@pytest.mark.slow
def test_demo_run_writes_the_record_and_notebooks(demo_run):
    out, _, _ = demo_run
    rec = json.loads((out / "run.json").read_text())
    names = [s["name"] for s in rec["stages"]]
    assert names == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert rec["finished"] and rec["params"]["name"] == "demo"
    for name in names:
        nb = json.loads((out / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, name
    images = sum("image/png" in o.get("data", {}) for name in names
                 for c in json.loads((out / f"{name}.ipynb").read_text())["cells"]
                 for o in c.get("outputs", []))
    assert images >= 6, "the notebooks show their figures"


@pytest.mark.slow
def test_demo_run_artifacts(demo_run):
    out, _, _ = demo_run
    with rasterio.open(out / "features.tif") as src:
        assert src.crs.to_epsg() == 32652 and src.res == (10.0, 10.0)
        assert src.descriptions[:3] == ("B02", "B03", "B04") and "NDVI" in src.descriptions
        assert src.overviews(1)
    quality = json.loads((out / "mask_quality.json").read_text())
    ba = {(q["source"], q["kind"]): q["balanced_accuracy"] for q in quality}
    assert ba["local", "cloud_or_shadow"] > ba["scl", "cloud_or_shadow"]
    assert len(list((out / "masks").glob("*.tif"))) == 24


@pytest.mark.slow
def test_demo_rerun_is_cached_and_secret_free(demo_run):
    out, _, env = demo_run
    proc = subprocess.run([sys.executable, "-m", "lcgee.cli", "run", str(ROOT / "params/demo.yaml"),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads((out / "run.json").read_text())
    assert all(s["cached"] for s in rec["stages"])
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".json", ".yaml"):
            assert SECRET not in path.read_text(errors="ignore"), path


@pytest.mark.slow
def test_demo_run_trains_maps_and_exports(demo_run):
    import pandas as pd

    out, _, env = demo_run
    model = out / "model"
    meta = json.loads((model / "model.json").read_text())
    assert meta["feature_names"][:3] == ["B02", "B03", "B04"] and "NDVI" in meta["feature_names"]
    assert set(meta["training_regions"]) == {"train_west", "train_east"}
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("water", None)  # notebook 09's section (test_demo_run_maps_water)
    assert "block_cv" in metrics and "holdout_map_south_vs_truth" in metrics
    scored = {k: m for k, m in metrics.items() if k not in ("baseline", "training")}
    for name, m in scored.items():
        for key in ("overall_accuracy", "kappa", "macro_f1", "per_class"):
            assert key in m, (name, key)
    for name, m in scored.items():
        assert "area_adjusted" in m, name
    # issue 11: plain LightGBM next to lcgee's defaults, which must not lose on the held-out region
    base = metrics["baseline"]
    for ref in ("labels", "truth"):
        key = f"holdout_map_south_vs_{ref}"
        assert metrics[key]["overall_accuracy"] >= base[key]["overall_accuracy"], key
    assert metrics["training"]["block_size_m"] > 0 and metrics["training"]["refit"]
    with rasterio.open(out / "landcover.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0 and src.overviews(1)
        assert src.colormap(1)[10][:3] == (0, 100, 0)
    item = json.loads((out / "landcover.json").read_text())
    assert item["assets"]["landcover"]["classification:classes"]
    spec = json.loads((model / "ee_classifier.json").read_text())
    assert set(spec) == {"feature_names", "class_values", "output_mode", "trees"}
    assert spec["output_mode"] == "RAW_REGRESSION" and len(spec["trees"]) == len(spec["class_values"])
    assert "values" in json.loads((model / "ee_graph.json").read_text())
    holdout = pd.read_parquet(model / "holdout.parquet")
    assert len(holdout) >= 1000 and list(holdout.columns) == spec["feature_names"] + ["label"]
    proc = subprocess.run([sys.executable, "-m", "lcgee.cli", "ee", "verify", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: Earth Engine would reproduce the local labels" in proc.stdout
    # the CLI serves the demo world and opens its STAC API, so the whole-chain row is there too
    chain = [line for line in proc.stdout.splitlines() if "whole server chain" in line]
    assert len(chain) == 1 and chain[0].split()[-1] == "0", proc.stdout


@pytest.mark.slow
def test_demo_run_maps_water(demo_run):
    out, _, _ = demo_run
    water = json.loads((out / "metrics.json").read_text())["water"]
    f1 = water["f1"]
    assert set(f1) == {"a_ndwi_otsu", "b_cnn_noisy", "c_cnn_corrected", "d_lightgbm"}
    assert all(water["corrected_beats"].values()), f1
    assert f1["c_cnn_corrected"]["paddy_as_water"] < 0.001  # flooded paddies are not water
    dry = water["ee_dry_run"]
    assert dry["max_probability_diff"] <= 1e-5 and dry["class_disagreements"] == 0
    assert dry["nodata_agrees"] and dry["pixels"] > 100_000
    noise = {(r["region"], r["labels"]): r["disagreement"] for r in water["label_noise"]}
    for region in ("train_west", "train_east"):
        assert noise[(region, "corrected")] < noise[(region, "noisy")]
    with rasterio.open(out / "water.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.overviews(1)
    item = json.loads((out / "water.json").read_text())
    assert set(item["assets"]) == {"water", "water_probability"}
    meta = json.loads((out / "model" / "water" / "water_model.json").read_text())
    assert meta["bands"][:3] == ["B02", "B03", "B04"] and meta["provenance"]["labels"] == "corrected"
