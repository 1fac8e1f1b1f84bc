"""Labels, samples, training, the model bundle and the map COG + STAC item."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from toys import synthetic  # tests/toys.py

from lcgee import labels, samples, search, train
from lcgee.errors import DataError
from lcgee.grid import Grid
from lcgee.params import TrainParams

GRID = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (120, 160))
NAMES = ["B02", "B04", "B08", "NDVI"]


def test_sample_region_respects_validity_caps_and_blocks():
    X, lab = synthetic()
    t = samples.sample_region(X, lab, NAMES, region="r", offset=(100, 200), block_px=40,
                              per_class=300, seed=1, balance=True)
    assert set(t["label"]) == {10, 40, 80}
    assert t["label"].value_counts().max() <= 300
    assert np.isfinite(t[NAMES].to_numpy()).all()
    assert (t["row"] >= 103).all() and (t["col"] >= 200).all()
    r, c = t["row"].to_numpy() - 100, t["col"].to_numpy() - 200
    np.testing.assert_allclose(t["B08"], X[2][r, c])
    assert t.loc[0, "block"] == f"r:{t.loc[0, 'row'] // 40}_{t.loc[0, 'col'] // 40}"


def test_sample_region_without_valid_pixels_is_an_error():
    X, lab = synthetic()
    with pytest.raises(DataError, match="no pixel"):
        samples.sample_region(X * np.nan, lab, NAMES, region="r", offset=(0, 0), block_px=10,
                              per_class=10)


def test_no_sample_comes_from_the_held_out_region():
    import xarray as xr

    from lcgee.params import load_params
    from lcgee.stage import build_grid

    p = load_params("params/demo.yaml")
    grid = build_grid(p)
    rng = np.random.default_rng(0)
    lab = rng.choice([10, 40, 80], size=grid.shape).astype(np.uint8)
    feats = xr.DataArray(rng.random((2, *grid.shape), dtype=np.float32), dims=("band", "y", "x"),
                         coords={"band": ["B04", "B08"]})
    regions = {k: grid.crop(r.bbox) for k, r in p.regions.items()}
    train_regions = {k: g for k, g in regions.items() if p.regions[k].role == "train"}
    t = samples.collect(feats, lab, train_regions, grid, block_px=64, per_class=200)
    held = regions["map_south"]
    (r0, c0), (h, w) = held.offset_in(grid), held.shape
    inside = (t["row"].between(r0, r0 + h - 1)) & (t["col"].between(c0, c0 + w - 1))
    assert not inside.any()
    assert set(t["region"]) == {"train_west", "train_east"}
    assert not set(t["block"]) & {f"map_south:{i}" for i in range(100)}


def _table(seed=0):
    X, lab = synthetic(seed)
    return samples.sample_region(X, lab, NAMES, region="r", offset=(0, 0), block_px=20,
                                 per_class=400, seed=seed)


def test_train_save_load_and_predict(tmp_path):
    t = _table()
    cfg = TrainParams(num_iterations=40, num_leaves=7, min_data_in_leaf=5,
                      early_stopping_rounds=5)
    bundle = train.train_lightgbm(t, NAMES, cfg, class_values=[10, 40, 80])
    assert bundle.class_values == [10, 40, 80]
    assert bundle.meta["validation_samples"] > 0 and bundle.meta["train_samples"] > 0
    X = t[NAMES].to_numpy(np.float64)
    assert (bundle.predict_labels(X) == t["label"]).mean() > 0.95
    train.save_bundle(bundle, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["feature_names"] == NAMES and meta["class_values"] == [10, 40, 80]
    again = train.load_bundle(tmp_path / "model")
    np.testing.assert_array_equal(again.booster.predict(X), bundle.booster.predict(X))
    dump = again.booster.dump_model()
    assert all("==" not in json.dumps(t["tree_structure"]) for t in dump["tree_info"])


def test_validation_blocks_are_disjoint_from_training_blocks():
    t = _table()
    valid = train.validation_blocks(t["block"], 0.2, seed=3)
    assert valid.any() and not valid.all()
    assert not set(t.loc[valid, "block"]) & set(t.loc[~valid, "block"])


def test_training_refuses_nan_and_unknown_labels():
    t = _table()
    t.loc[0, "B02"] = np.nan
    with pytest.raises(DataError, match="NaN"):
        train.train_lightgbm(t, NAMES, TrainParams(num_iterations=5))
    t = _table()
    with pytest.raises(DataError, match="not in class_values"):
        train.train_lightgbm(t, NAMES, TrainParams(num_iterations=5), class_values=[10, 40])


def test_cross_validation_predicts_every_sample_once():
    from lcgee.evaluate import block_cv_splits

    t = _table()
    splits = block_cv_splits(t["block"].to_numpy(), n_splits=3, seed=0)
    oof = train.cross_validate(t, NAMES, TrainParams(num_iterations=10, num_leaves=7,
                                                     early_stopping_rounds=0), splits,
                               class_values=[10, 40, 80])
    assert len(oof) == len(t) and sorted(oof["fold"].unique()) == [0, 1, 2]
    for fold, (train_idx, _) in enumerate(splits):
        assert not set(oof.loc[oof["fold"] == fold, "block"]) & set(t["block"].iloc[train_idx])


def test_landcover_cog_and_stac_item(tmp_path):
    import pystac
    import xarray as xr

    from lcgee import predict

    t = _table()
    bundle = train.train_lightgbm(t, NAMES, TrainParams(num_iterations=10, num_leaves=7),
                                  class_values=[10, 40, 80])
    train.save_bundle(bundle, tmp_path / "model")
    lc = np.zeros(GRID.shape, np.uint8)
    lc[:, :50], lc[:, 50:110], lc[:, 110:] = 10, 40, 80
    lc[:4] = 0
    tif, item_path = predict.write_landcover(
        xr.DataArray(lc, dims=("y", "x")), GRID, tmp_path, model_dir=tmp_path / "model",
        start="2021-04-01", end="2022-09-30", run_name="t")
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32652 and src.transform == GRID.affine
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        assert src.colormap(1)[40] == (240, 150, 255, 255)
        np.testing.assert_array_equal(src.read(1), lc)
    item = pystac.Item.from_file(str(item_path))
    classes = item.assets["landcover"].extra_fields["classification:classes"]
    assert [c["value"] for c in classes] == [10, 40, 80]
    assert classes[1]["color_hint"] == "F096FF"
    assert any(link.rel == "describedby" and link.href.endswith("model.json")
               for link in item.links)


def test_worldcover_onto_the_grid_equals_the_published_labels(small_world, small_server):
    client = search.open_client(small_server.stac_url)
    wc = labels.load_worldcover(small_world.grid, source="demo", client=client).values
    np.testing.assert_array_equal(wc, small_world.labels())
    coarse = labels.load_worldcover(small_world.grid.coarsen(2), source="demo", client=client)
    assert coarse.shape == (small_world.grid.height // 2, small_world.grid.width // 2)
    assert set(np.unique(coarse.values)) <= set(labels.WORLDCOVER) | {0}


def test_remap_merges_classes():
    lab = np.array([[10, 20, 30], [0, 90, 80]])
    out = labels.remap(lab, {20: 10, 90: 80})
    np.testing.assert_array_equal(out, [[10, 10, 30], [0, 80, 80]])
