"""Damaged imagery: a failed read names the href, the scene and the fix; skip_bad_scenes drops it."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pystac
import pytest

from lcgee import integrity, load
from lcgee.demo._cog import write_cog
from lcgee.errors import DataError, DataWarning
from lcgee.grid import Grid
from lcgee.search import SearchResult

GRID = Grid.from_bounds((600000, 3700000, 610240, 3710240), 10, "EPSG:32652")  # 1024 x 1024
BANDS = ("B04", "B08")


def _item(root, item_id: str, seed: int) -> pystac.Item:
    rng = np.random.default_rng(seed)
    item = pystac.Item(item_id, geometry=None, bbox=None, datetime=dt.datetime(2021, 5, seed + 1),
                       properties={"proj:epsg": 32652})
    w, s, e, n = GRID.lonlat_bbox
    item.geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    item.bbox = [w, s, e, n]
    for band in BANDS:
        path = root / item_id / f"{band}.tif"
        write_cog(path, rng.integers(1, 10000, GRID.shape, dtype="uint16"), GRID, nodata=0)
        item.add_asset(band, pystac.Asset(str(path), media_type=pystac.MediaType.COG, extra_fields={
            "proj:shape": list(GRID.shape), "proj:transform": list(GRID.transform)}))
    return item


@pytest.fixture()
def items(tmp_path):
    good = _item(tmp_path, "S2A_GOOD", 1)
    bad = _item(tmp_path, "S2B_TRUNCATED", 2)
    cog = tmp_path / "S2B_TRUNCATED" / "B08.tif"
    data = cog.read_bytes()
    cog.write_bytes(data[: int(len(data) * 0.6)])  # an interrupted download
    return [good, bad]


def test_truncated_cog_names_href_scene_and_fix(items):
    ds = load.load_stack(items, GRID, list(BANDS), chunk=512, scene_coords=False)
    ds["B04"].compute()  # the intact band reads
    with pytest.raises(DataError) as info:
        ds["B08"].compute()
    msg = str(info.value)
    assert "S2B_TRUNCATED" in msg and "B08" in msg, msg
    assert str(items[1].assets["B08"].href) in msg, msg
    assert "See previous exception" not in msg
    assert "load.skip_bad_scenes" in msg and "rerun" in msg and "delete" in msg, msg


def test_signed_query_never_appears():
    href = "https://x.blob.core.windows.net/c/B04.tif?sv=2021&sig=SECRETSECRET"
    assert integrity.without_query(href) == "https://x.blob.core.windows.net/c/B04.tif"
    msg = str(integrity.read_error(integrity.BadAsset("S2X", "B04", integrity.without_query(href),
                                                      "Read failed")))
    assert "SECRET" not in msg


def test_probe_finds_the_truncated_scene_and_drop_lists_it(items):
    bad = integrity.unreadable_assets(items, BANDS)
    assert [(b.item_id, b.asset) for b in bad] == [("S2B_TRUNCATED", "B08")]
    table = pd.DataFrame({"id": [it.id for it in items], "cloud_cover": [1.0, 2.0]})
    result = SearchResult(items=items, table=table)
    with pytest.warns(DataWarning, match="dropped 1 unreadable scene.*S2B_TRUNCATED.*B08"):
        kept = integrity.drop_unreadable(result, [*BANDS, "SCL"])
    assert [it.id for it in kept.items] == ["S2A_GOOD"]
    assert kept.table["id"].tolist() == ["S2A_GOOD"]
    # The kept scenes load and read completely.
    ds = load.load_stack(kept.items, GRID, list(BANDS), chunk=512, scene_coords=False)
    assert int((ds["B08"].compute() == 0).sum()) == 0


def test_nothing_dropped_when_all_read(items):
    table = pd.DataFrame({"id": ["S2A_GOOD"]})
    result = SearchResult(items=items[:1], table=table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert integrity.drop_unreadable(result, BANDS) is result


def test_skip_bad_scenes_is_a_params_field():
    from lcgee.params import LoadParams

    assert LoadParams().skip_bad_scenes is False
    assert LoadParams(skip_bad_scenes=True).skip_bad_scenes is True
