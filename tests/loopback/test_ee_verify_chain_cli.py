"""``lcgee ee verify`` opens the run's STAC client, so the dry run's whole-chain row (scenes'
digital numbers -> masks -> median -> indices -> trees, offline) is in the CLI's table as in
notebook 07. A finished run on the small demo world is built with the library calls the
notebooks 01-06 make (search, masks, composite, labels from the world's truth, LightGBM,
prediction), its STAC API the loopback server; the CLI runs in-process through
``lcgee.cli.main``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("ee")

from lcgee import features, masks, predict, search, train
from lcgee.cli import main
from lcgee.layout import RunLayout
from lcgee.params import load_params
from lcgee.raster import write_cog
from lcgee.stage import build_grid

CHAIN = "whole server chain"


def _params(url: str, grid) -> dict:
    x0, y0, x1, y1 = grid.bounds
    return {
        "name": "small",
        "aoi": {"bbox": [x0, y0, x1, y1], "crs": grid.crs},
        "regions": {"map_here": {"bbox": [x0 + 640, y0 + 640, x0 + 2560, y0 + 2560],
                                 "crs": grid.crs, "role": "predict"}},
        "dates": {"start": "2021-04-01", "end": "2021-10-31"},
        "stac": {"url": url, "collection": "sentinel-2-l2a", "max_cloud_cover": 100},
        "grid": {"resolution": 10, "crs": grid.crs},
        "load": {"chunk": 128},
        "clouds": {"source": "local", "fallback": "none", "preset": "aggressive"},
        "composite": {"method": "median"},
        "features": {"bands": ["B02", "B04", "B08", "B11"], "indices": ["NDVI"]},
        "train": {"num_iterations": 20},
    }


@pytest.fixture(scope="module")
def small_run(small_server, small_world, tmp_path_factory):
    return _build_run(small_server, small_world, tmp_path_factory.mktemp("small-run"), {})


@pytest.fixture(scope="module")
def small_monthly_run(small_server, small_world, tmp_path_factory):
    """The same run with 2-month composites (periods m202103p2 ... m202109p2), gaps filled."""
    return _build_run(small_server, small_world, tmp_path_factory.mktemp("small-2m-run"),
                      {"method": "monthly", "period": "2M", "empty_period": "fill"})


def _build_run(small_server, small_world, run_dir, composite):
    layout = RunLayout(run_dir)
    params = _params(small_server.stac_url, small_world.grid)
    params["composite"].update(composite)
    layout.params.write_text(yaml.safe_dump(params))
    p = load_params(layout.params)
    grid = build_grid(p, run_dir)
    assert grid.shape == small_world.grid.shape
    client = search.open_client(small_server.stac_url, sign=p.stac.sign)
    found = search.search_scenes(client, collection=p.stac.collection, bbox=grid.lonlat_bbox,
                                 datetime=p.dates.interval, max_cloud_cover=100)
    assert 4 <= len(found.items) <= 12
    search.save_scenes(found, run_dir)
    got = masks.scene_masks(found.items, grid, p.clouds, client=client, chunk=128)
    masks.write_masks(got, grid, layout.masks, key=masks.mask_key(p.clouds, grid))
    comp = features.build_composite(found.items, found.table, grid, p, client=client,
                                    masks_dir=layout.masks)
    features.write_outputs(comp, grid, run_dir)
    truth = small_world.truth_landcover().astype("uint8")
    write_cog(layout.labels, truth, grid, nodata=0, band_names=["worldcover"])
    feats = features.read_features(run_dir, chunks=None)
    names = [str(b) for b in feats["band"].values]
    X = feats.values.reshape(len(names), -1).T
    ok = np.flatnonzero(np.all(np.isfinite(X), axis=1) & (truth.ravel() > 0))
    rows = np.random.default_rng(0).choice(ok, 3000, replace=False)
    table = pd.DataFrame(X[rows], columns=names)
    table["label"] = truth.ravel()[rows]
    table["block"] = (rows // grid.width // 64) * 10 + rows % grid.width // 64
    bundle = train.train_lightgbm(table, names, p.train)
    train.save_bundle(bundle, layout.model)
    landcover = predict.predict_map(features.read_features(run_dir, chunks=128), bundle)
    predict.write_landcover(landcover, grid, run_dir, model_dir=layout.model,
                            start=str(p.dates.start), end=str(p.dates.end), run_name=p.name)
    return run_dir


def _chain_row(out: str) -> str | None:
    return next((line for line in out.splitlines() if CHAIN in line), None)


def test_ee_verify_counts_the_whole_chain_through_the_runs_stac_api(small_run, capsys):
    code = main(["ee", "verify", str(small_run)])
    out = capsys.readouterr().out
    row = _chain_row(out)
    assert row is not None, out
    compared, disagreements = (int(v) for v in row.split()[-2:])
    assert compared > 30_000 and disagreements == 0, row
    assert code == 0 and "OK: Earth Engine would reproduce the local labels" in out


def test_ee_verify_of_a_monthly_run_checks_its_periods_server_side(small_monthly_run, capsys):
    """A ``monthly`` run's model reads period features (``m202105p2_NDVI`` ...): the dry run's
    graph takes the feature stack as its composite, and the whole chain builds the same
    2-month periods (with the empty-period fill) from the scenes."""
    code = main(["ee", "verify", str(small_monthly_run)])
    out = capsys.readouterr().out
    spec = (small_monthly_run / "model" / "ee_classifier.json").read_text()
    assert "m202105p2_NDVI" in spec
    row = _chain_row(out)
    assert row is not None, out
    compared, disagreements = (int(v) for v in row.split()[-2:])
    assert compared > 30_000 and disagreements == 0, row
    assert code == 0 and "OK: Earth Engine would reproduce the local labels" in out


def test_ee_verify_without_the_chain_skips_the_stac_api(small_run, capsys):
    code = main(["ee", "verify", str(small_run), "--no-chain",
                 "--stac-url", "http://127.0.0.1:9/never"])
    out = capsys.readouterr().out
    assert code == 0 and _chain_row(out) is None and "tree strings" in out


def test_ee_verify_names_an_unreachable_stac_api(small_run, capsys):
    code = main(["ee", "verify", str(small_run), "--stac-url", "http://127.0.0.1:9/never"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open the STAC API" in err and "127.0.0.1:9" in err


def test_ee_verify_serves_a_demo_runs_world_itself(small_run, small_world, tmp_path, capsys,
                                                  monkeypatch):
    """A demo run (``stac.url: demo``) names no server: the CLI serves the run's demo world on
    loopback for the chain (here the small world stands in for the cached demo world)."""
    import shutil

    from lcgee.demo import world as demo_world

    run = tmp_path / "demo-run"
    shutil.copytree(small_run, run)
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["stac"]["url"] = "demo"
    params["demo"] = {"seed": 7, "size": small_world.grid.width}
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    asked = []

    def cached_world(spec, *args, **kwargs):
        asked.append((spec.seed, spec.size))
        return small_world

    monkeypatch.setattr(demo_world, "build_world", cached_world)
    code = main(["ee", "verify", str(run)])
    out = capsys.readouterr().out
    row = _chain_row(out)
    assert asked == [(7, small_world.grid.width)]
    assert code == 0 and row is not None and row.split()[-1] == "0", out
