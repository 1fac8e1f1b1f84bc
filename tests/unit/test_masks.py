"""The cloud-mask stage (:mod:`lcgee.masks`) without servers: the mask files (write, resume,
invalidate, read back), the quality table against hand-counted scores, and the refusals of
sources it cannot serve. Masks from the sources themselves: tests/loopback/test_mask_sources.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

from lcgee import clouds, masks
from lcgee.errors import DataError, EarthEngineError
from lcgee.grid import Grid
from lcgee.params import CloudParams

GRID = Grid("EPSG:32652", (20.0, 0.0, 500000.0, 0.0, -20.0, 4000000.0), (24, 32))
CLEAR, CLOUD, SHADOW, NODATA = (int(clouds.CLEAR), int(clouds.CLOUD), int(clouds.SHADOW),
                                int(clouds.NODATA))


def _mask(seed: int) -> xr.DataArray:
    codes = np.random.default_rng(seed).choice([CLEAR, CLOUD, SHADOW, NODATA], size=GRID.shape)
    return xr.DataArray(codes.astype(np.uint8), dims=("y", "x"), coords=GRID.coords())


def test_masks_written_as_cogs_read_back_identically(tmp_path):
    triples = [("scene-a", "local", _mask(1)), ("scene-b", "scl", _mask(2))]
    paths = masks.write_masks(triples, GRID, tmp_path, key="k1", progress=False)
    assert [p.name for p in paths] == ["scene-a.tif", "scene-b.tif"]
    with rasterio.open(paths[1]) as src:
        assert src.tags()["source"] == "scl" and src.nodata == NODATA
        assert src.transform == GRID.affine and src.crs.to_string() == GRID.crs
    back = masks.read_masks(tmp_path, ["scene-b", "scene-a"], chunk=16)
    assert back.dims == ("time", "y", "x") and list(back["id"].values) == ["scene-b", "scene-a"]
    np.testing.assert_array_equal(back.values[0], triples[1][2].values)
    np.testing.assert_array_equal(back.values[1], triples[0][2].values)
    again = masks.from_files(triples, tmp_path, chunk=16)
    assert [(i, s) for i, s, _ in again] == [("scene-a", "local"), ("scene-b", "scl")]
    for (_, _, written), (_, _, read) in zip(triples, again, strict=True):
        np.testing.assert_array_equal(read.values, written.values)


def test_same_key_resumes_and_another_key_starts_afresh(tmp_path):
    masks.write_masks([("a", "local", _mask(1))], GRID, tmp_path, key="k1", progress=False)
    # Same key: the file on disk is kept (an interrupted stage resumes), not rewritten.
    masks.write_masks([("a", "local", _mask(9)), ("b", "local", _mask(2))], GRID, tmp_path,
                      key="k1", progress=False)
    kept = masks.read_masks(tmp_path, ["a"]).values[0]
    np.testing.assert_array_equal(kept, _mask(1).values)
    # Another key (other cloud params or grid): every old mask goes, stale ids included.
    masks.write_masks([("a", "local", _mask(9))], GRID, tmp_path, key="k2", progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["a.tif"]
    np.testing.assert_array_equal(masks.read_masks(tmp_path, ["a"]).values[0], _mask(9).values)
    assert (tmp_path / "key.txt").read_text().strip() == "k2"


def test_mask_key_follows_cloud_params_and_grid():
    base = masks.mask_key(CloudParams(), GRID)
    assert masks.mask_key(CloudParams(), GRID) == base
    assert masks.mask_key(CloudParams(buffer=20), GRID) != base
    assert masks.mask_key(CloudParams(preset="aggressive"), GRID) != base
    assert masks.mask_key(CloudParams(), GRID.window(0, 0, 12, 16)) != base


def test_reading_masks_that_were_never_written_names_the_stage(tmp_path):
    masks.write_masks([("a", "scl", _mask(1))], GRID, tmp_path, key="k", progress=False)
    with pytest.raises(DataError, match="no cloud mask for 1 scene") as info:
        masks.read_masks(tmp_path, ["a", "missing-scene"])
    assert "missing-scene" in str(info.value) and "02_clouds" in info.value.fix


class _World:
    """The demo world's truth interface, on a grid larger than the masks'."""

    def __init__(self, grid: Grid, cloud: dict, shadow: dict):
        self.grid, self._cloud, self._shadow = grid, cloud, shadow

    def truth_cloud(self, item_id):
        return self._cloud[item_id]

    def truth_shadow(self, item_id):
        return self._shadow[item_id]


def _scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp, fp = np.sum(pred & truth), np.sum(pred & ~truth)
    fn, tn = np.sum(~pred & truth), np.sum(~pred & ~truth)
    recall, specificity = tp / (tp + fn), tn / (tn + fp)
    return tp / (tp + fp), recall, (recall + specificity) / 2


def test_quality_table_equals_hand_counted_scores_in_the_masks_window():
    world_grid = Grid("EPSG:32652", (20.0, 0.0, 500000.0 - 4 * 20, 0.0, -20.0,
                                     4000000.0 + 3 * 20), (GRID.height + 10, GRID.width + 9))
    rng = np.random.default_rng(5)
    ids = ["s1", "s2"]
    cloud = {i: rng.random(world_grid.shape) < 0.3 for i in ids}
    shadow = {i: (rng.random(world_grid.shape) < 0.2) & ~cloud[i] for i in ids}
    predicted = {i: _mask(k).values for k, i in enumerate(ids)}
    table = masks.quality_table(_World(world_grid, cloud, shadow), GRID, {"local": predicted})
    table = table.set_index(["source", "kind"])
    assert set(table.index) == {("local", k) for k in ("cloud", "shadow", "cloud_or_shadow")}
    window = (slice(3, 3 + GRID.height), slice(4, 4 + GRID.width))  # where GRID lies
    pred = np.stack([predicted[i] for i in ids])
    keep = pred != NODATA
    tc = np.stack([cloud[i][window] for i in ids])[keep]
    ts = np.stack([shadow[i][window] for i in ids])[keep]
    want = {"cloud": _scores(pred[keep] == CLOUD, tc),
            "shadow": _scores(pred[keep] == SHADOW, ts),
            "cloud_or_shadow": _scores(np.isin(pred[keep], [CLOUD, SHADOW]), tc | ts)}
    for kind, (precision, recall, ba) in want.items():
        row = table.loc[("local", kind)]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["balanced_accuracy"] == pytest.approx(ba)


def test_unresolved_and_unknown_sources_are_refused():
    with pytest.raises(DataError, match="auto is not resolved") as info:
        masks.scene_masks([object()], GRID, CloudParams(source="auto"), client=None)
    assert "resolve_source" in info.value.fix
    with pytest.raises(DataError, match="unknown cloud source 'sky'"):
        masks._source_masks("sky", [object()], GRID, CloudParams(), client=None, chunk=64,
                            engine="odc-stac")


def test_earth_engine_source_without_a_session_says_how_to_authenticate():
    class Item:
        id = "S2A_MSIL2A_20210601T000000_R000_T52SFC_20210601T000000"

    cfg = CloudParams(source="gee", fallback="none")
    with pytest.raises(EarthEngineError, match="not initialised") as info:
        masks.scene_masks([Item()], GRID, cfg, client=None)
    assert "earthengine authenticate" in info.value.fix

