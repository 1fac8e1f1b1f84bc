"""lcgee on real Planetary Computer item and collection JSON (tests/data/pc, see PROVENANCE.md).

Metadata is real; pixels are synthetic COGs written here, since the real ones live on blob
storage.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pystac
import pytest

from lcgee.errors import DataError, ParamsError
from lcgee.scenes import (
    deduplicate,
    gee_index,
    granule_identity,
    needs_offset,
    normalize_tile,
    processing_baseline,
    scene_table,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "pc"


def _items() -> list[dict]:
    return json.loads((DATA / "sentinel-2-l2a-items.json").read_text())["features"]


def _item(tile: str) -> dict:
    return copy.deepcopy(next(it for it in _items() if f"_T{tile}_" in it["id"]))


# ---- scene table, Earth Engine index, baselines ----------------------------------------------

def test_scene_table_of_real_items():
    items = [pystac.Item.from_dict(d) for d in _items()]
    t = scene_table(items)
    assert len(t) == 5
    by_id = t.set_index("id")
    xml = by_id.loc["S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458"]
    assert xml["tile"] == "47XML" and xml["baseline"] == "05.10" and bool(xml["offset"])
    assert xml["gee_index"] == "20240419T095549_20240419T095549_T47XML"
    vvn = by_id.loc["S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531"]
    assert vvn["tile"] == "06VVN" and vvn["baseline"] == "02.12" and not bool(vvn["offset"])
    # PC writes the datastrip of the 2020 reprocessing, sensing start one second after the datatake
    assert vvn["gee_index"] == "20190629T212529_20190629T212530_T06VVN"
    assert t["sun_zenith"].notna().all() and t["cloud_cover"].notna().all()
    assert list(t["datetime"]) == sorted(t["datetime"])


def test_real_items_declare_no_nodata_and_only_proj_epsg():
    """The shape the demo world has to imitate (point 6)."""
    for d in _items():
        assert "proj:epsg" in d["properties"]
        assert "raster:bands" not in json.dumps(d)
        assert {"AOT", "WVP", "visual", "rendered_preview", "SCL"} <= set(d["assets"])
        assert d["assets"]["B04"]["href"].startswith("https://sentinel2l2a01.blob.core.windows.net/")


# ---- point 7: malformed baselines ------------------------------------------------------------

@pytest.mark.parametrize("value", ["N05.11", "", "5.1", 5.11, None])
def test_malformed_baseline_names_item_and_property(value):
    d = _item("47XML")
    d["properties"]["s2:processing_baseline"] = value
    with pytest.raises(DataError, match=r"S2B_MSIL2A_20240419T095549_R122_T47XML.*s2:processing_"
                                        r"baseline"):
        processing_baseline(d)
    with pytest.raises(DataError, match="s2:processing_baseline"):
        scene_table([d])


def test_missing_baseline_falls_back_to_product_uri_or_names_both():
    d = _item("47XML")
    del d["properties"]["s2:processing_baseline"]
    assert processing_baseline(d) == "05.10"  # from ..._N0510_... in s2:product_uri
    del d["properties"]["s2:product_uri"]
    with pytest.raises(DataError, match=r"T47XML.*s2:processing_baseline.*missing"):
        processing_baseline(d)


def test_needs_offset_rejects_malformed_baseline():
    assert needs_offset("05.10") and not needs_offset("02.12")
    with pytest.raises(DataError, match=r"N05\.11"):
        needs_offset("N05.11")


# ---- point 3: tiles ---------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["6VVN", "06VVN", "T06VVN", "t6vvn", "06vvn", " T06VVN "])
def test_tile_forms_normalise_to_planetary_computer(given):
    assert normalize_tile(given) == "06VVN"


@pytest.mark.parametrize("bad", ["XYZ", "61VVN", "0VVN", "06IVN", "06VVW", "06VVNN", "T47XMLL", ""])
def test_malformed_tiles_rejected(bad):
    with pytest.raises(DataError, match="MGRS"):
        normalize_tile(bad)


def test_params_normalise_and_reject_tiles():
    from lcgee.params import validate

    base = {"name": "t", "aoi": {"bbox": [0, 0, 1, 1]},
            "dates": {"start": "2024-01-01", "end": "2024-02-01"}}
    p = validate({**base, "stac": {"mgrs_tiles": ["6VVN", "T06VVN", "t47xml"]}})
    assert p.stac.mgrs_tiles == ("06VVN", "47XML")
    with pytest.raises(ParamsError, match=r"stac\.mgrs_tiles.*61VVN"):
        validate({**base, "stac": {"mgrs_tiles": ["61VVN"]}})


class _Client:
    """A pystac-client stand-in answering one search with the real items."""

    def __init__(self, items):
        self._items = items

    def conforms_to(self, _):
        return False

    def search(self, **_):
        items = self._items

        class _S:
            def items(self):
                return iter(items)
        return _S()


@pytest.mark.parametrize("tiles", [["6VVN"], ["T06VVN"], ["06vvn"]])
def test_tile_filter_finds_the_real_item(tiles):
    from lcgee.params import StacParams
    from lcgee.search import search_scenes

    wanted = StacParams(mgrs_tiles=tiles).mgrs_tiles
    items = [pystac.Item.from_dict(d) for d in _items()]
    res = search_scenes(_Client(items), collection="sentinel-2-l2a", bbox=(0, 0, 1, 1),
                        datetime="2019/2025", mgrs_tiles=wanted)
    assert [it.id for it in res.items] == [
        "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531"]


# ---- point 4: dedup by granule identity -------------------------------------------------------

def _reprocessed(d: dict) -> dict:
    """The same granule reprocessed (as Planetary Computer did in 2024 at 05.10): later
    processing time, newer baseline, datastrip sensing start a few seconds off."""
    r = copy.deepcopy(d)
    p = r["properties"]
    r["id"] = d["id"].rsplit("_", 1)[0] + "_20240523T101112"
    p["s2:processing_baseline"] = "05.10"
    p["s2:generation_time"] = "2024-05-23T10:11:12.000000Z"
    p["s2:datastrip_id"] = "S2B_OPER_MSI_L2A_DS_MSFT_20240523T101113_S20190629T212533_N05.10"
    p["s2:product_uri"] = p["s2:product_uri"].replace("_N0212_", "_N0510_")
    return r


def test_reprocessed_copy_is_dropped_whatever_the_datastrip():
    old = _item("06VVN")
    new = _reprocessed(old)
    assert gee_index(old) != gee_index(new)  # datastrips differ: the old rule kept both
    assert granule_identity(old) == granule_identity(new) == ("S2B", "20190629T212529", 43,
                                                             "06VVN")
    for order in ([old, new], [new, old]):
        kept, dropped = deduplicate(order)
        assert [k["id"] for k in kept] == [new["id"]]
        assert [d["id"] for d in dropped] == [old["id"]]


def test_same_baseline_keeps_the_later_processing():
    old = _item("47XML")
    later = copy.deepcopy(old)
    later["id"] = old["id"].rsplit("_", 1)[0] + "_20240420T000000"
    later["properties"]["s2:generation_time"] = "2024-04-20T00:00:00Z"
    kept, _ = deduplicate([later, old])
    assert [k["id"] for k in kept] == [later["id"]]


def test_other_orbit_same_tile_same_day_stays_distinct():
    """Two real granules of one datatake, other tiles, stay; and the tile's neighbouring orbit
    (built from the real item: R044, 100 minutes later; no recorded real pair was found) too."""
    a = _item("60VUK")
    b = _item("59VPE")
    other = copy.deepcopy(a)
    other["id"] = "S2A_MSIL2A_20190101T014031_R117_T60VUK_20201007T230000"
    other["properties"].update({"sat:relative_orbit": 117, "datetime": "2019-01-01T01:40:31Z"})
    kept, dropped = deduplicate([a, b, other])
    assert len(kept) == 3 and dropped == []


def test_identity_from_properties_when_the_id_is_not_planetary_computers():
    d = _item("06VVN")
    d["id"] = "some-other-catalogs-id"
    assert granule_identity(d) == ("S2B", "20190629T212529", 43, "06VVN")


# ---- loader metadata and harmonization on real items (synthetic pixels) ---------------------

def _local_copy(d: dict, tmp_path: Path, bands: dict[str, int], nodata_cols: int = 8):
    """The real item with its band hrefs pointing at synthetic COGs (no nodata declared in the
    files either) over a 96 x 96 px window of its tile; returns (item, grid to load)."""
    from lcgee.grid import Grid
    from lcgee.raster import write_cog

    d = copy.deepcopy(d)
    d["links"] = []  # a self link would resolve local paths against its host
    epsg = d["properties"]["proj:epsg"]
    left, top = d["assets"]["B04"]["proj:transform"][2], d["assets"]["B04"]["proj:transform"][5]
    x0, y0 = left + 5000, top - 5000
    for band, value in bands.items():
        res = float(d["assets"][band]["gsd"])
        n = int(960 / res)
        g = Grid(f"EPSG:{epsg}", (res, 0.0, x0, 0.0, -res, y0), (n, n))
        arr = np.full((n, n), value, dtype="uint16" if band != "SCL" else "uint8")
        arr[:, : nodata_cols * 10 // int(res)] = 0
        path = write_cog(tmp_path / f"{d['id']}_{band}.tif", arr, g)
        d["assets"][band]["href"] = str(path)
    return pystac.Item.from_dict(d), Grid(f"EPSG:{epsg}", (10.0, 0.0, x0 + 80, 0.0, -10.0,
                                                           y0 - 40), (40, 60))


@pytest.mark.parametrize("tile,expected", [("06VVN", 0.15), ("47XML", 0.05)])
def test_loader_metadata_and_harmonization_on_real_items(tmp_path, tile, expected):
    from lcgee.load import harmonize, load_stack, reflectance

    item, grid = _local_copy(_item(tile), tmp_path, {"B04": 1500, "SCL": 4})
    ds = load_stack([item], grid, ["B04", "SCL"], chunk=128)
    assert ds["B04"].shape == (1, 40, 60)
    assert ds["id"].item() == item.id
    assert bool(ds["offset"].item()) == (tile == "47XML")
    assert ds["sun_zenith"].item() == pytest.approx(item.properties["s2:mean_solar_zenith"])
    assert ds["gee_index"].item() == gee_index(item)
    refl = reflectance(ds, ["B04"]).compute().values[0, 0]
    np.testing.assert_allclose(refl, expected, rtol=1e-6)
    h = harmonize(ds).compute()
    assert int(h["SCL"].max()) == 4 and int(h["B04"].max()) == int(expected * 10000)


def test_loader_keeps_zero_as_nodata_without_declared_nodata(tmp_path):
    from lcgee.load import load_stack, reflectance

    item, grid = _local_copy(_item("47XML"), tmp_path, {"B04": 1500}, nodata_cols=20)
    assert "raster:bands" not in json.dumps(item.to_dict())
    refl = reflectance(load_stack([item], grid, ["B04"], chunk=128), ["B04"]).compute()
    row = refl.values[0, 0, 0]
    assert np.isnan(row[:12]).all()  # grid starts 80 m into the 200 m zero strip
    np.testing.assert_allclose(row[12:], 0.05, rtol=1e-6)


def test_worldcover_4326_tile_onto_a_utm_grid(tmp_path):
    """The real WorldCover item (EPSG:4326 3 x 3 degree tile) brought onto a UTM 32N grid."""
    from pyproj import Transformer

    from lcgee.grid import Grid
    from lcgee.labels import load_worldcover
    from lcgee.raster import write_cog

    d = json.loads((DATA / "esa-worldcover-item.json").read_text())
    res = 1 / 12000
    g4326 = Grid("EPSG:4326", (res, 0.0, 6.5, 0.0, -res, 1.6), (1200, 1200))
    codes = np.array([10, 20, 30, 40, 50, 60, 80, 90], dtype="uint8")
    col_class = codes[(np.arange(1200) // 150) % len(codes)]
    row_shift = (np.arange(1200) // 400)[:, None]
    arr = codes[(np.searchsorted(codes, col_class)[None, :] + row_shift) % len(codes)]
    d["assets"]["map"]["href"] = str(write_cog(tmp_path / "map.tif", arr, g4326))
    # the example's hrefs are relative to its repository; Planetary Computer's are absolute
    d["assets"]["input_quality"]["href"] = str(tmp_path / "never-read.tif")
    d["links"] = []
    item = pystac.Item.from_dict(d)
    assert item.properties["esa_worldcover:product_version"] == "2.0.0"
    grid = Grid.from_bounds((224_000, 168_000, 230_000, 174_000), 10.0, "EPSG:32632")
    got = load_worldcover(grid, source="planetary-computer", client=_Client([item])).values
    # independent reference: each pixel centre to lon/lat, looked up in the array
    xx, yy = np.meshgrid(grid.xs, grid.ys)
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(xx, yy)
    ref = arr[((1.6 - lat) / res).astype(int), ((lon - 6.5) / res).astype(int)]
    assert (got == ref).mean() > 0.995 and set(np.unique(got)) <= set(codes.tolist())
