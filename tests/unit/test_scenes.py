"""Scene ids: Planetary Computer item properties -> Earth Engine system:index; baselines."""

from __future__ import annotations

import pytest

import lcgee
from lcgee.errors import DataError
from lcgee.scenes import deduplicate, needs_offset, processing_baseline, scene_table


def pc_item(item_id: str, datatake: str, datastrip: str, tile: str, **props) -> dict:
    """An item dict with the properties Planetary Computer's sentinel-2-l2a items carry."""
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "geometry": None, "bbox": None, "links": [], "assets": {},
        "properties": {"datetime": "2019-01-01T08:23:31.024000Z", "s2:mgrs_tile": tile,
                       "s2:datatake_id": datatake, "s2:datastrip_id": datastrip,
                       "s2:processing_baseline": "02.12", "eo:cloud_cover": 3.2,
                       "s2:mean_solar_azimuth": 80.1, "s2:mean_solar_zenith": 30.2, **props},
    }


# The Earth Engine catalog's example index, with the Planetary Computer properties of the
# same granule as PC writes them (reprocessed by PC, so generation times differ).
ITEM = pc_item("S2B_MSIL2A_20190101T082331_R121_T34HCH_20201008T100849",
               "GS2B_20190101T082331_009528_N02.12",
               "S2B_OPER_MSI_L2A_DS_ESRI_20201008T100850_S20190101T084846_N02.12", "34HCH")


def test_gee_index_from_pc_properties():
    assert lcgee.gee_index(ITEM) == "20190101T082331_20190101T084846_T34HCH"


def test_gee_index_accepts_pystac_item():
    import pystac

    item = pystac.Item.from_dict({**ITEM, "geometry": {"type": "Point", "coordinates": [0, 0]},
                                  "bbox": [0, 0, 0, 0]})
    assert lcgee.gee_index(item) == "20190101T082331_20190101T084846_T34HCH"


def test_gee_index_falls_back_to_the_item_id_for_the_datatake():
    d = pc_item(ITEM["id"], "", ITEM["properties"]["s2:datastrip_id"], "34HCH")
    del d["properties"]["s2:datatake_id"]
    assert lcgee.gee_index(d) == "20190101T082331_20190101T084846_T34HCH"


@pytest.mark.parametrize("prop", ["s2:datastrip_id", "s2:mgrs_tile"])
def test_gee_index_names_the_missing_property(prop):
    d = pc_item("weird-id", "GS2B_20190101T082331_009528_N02.12",
                ITEM["properties"]["s2:datastrip_id"], "34HCH")
    del d["properties"][prop]
    with pytest.raises(DataError, match=prop):
        lcgee.gee_index(d)


def test_other_orbit_stays_distinct_and_reprocessing_is_deduplicated():
    a = ITEM
    other_orbit = pc_item("S2B_MSIL2A_20190101T100021_R122_T34HCH_20201008T100900",
                          "GS2B_20190101T100021_009529_N02.12",
                          "S2B_OPER_MSI_L2A_DS_ESRI_20201008T100901_S20190101T100022_N02.12",
                          "34HCH")
    # reprocessing gives a new datastrip whose sensing start may be seconds off
    reprocessed = pc_item("S2B_MSIL2A_20190101T082331_R121_T34HCH_20221107T120000",
                          "GS2B_20190101T082331_009528_N05.00",
                          "S2B_OPER_MSI_L2A_DS_ESRI_20221107T120001_S20190101T084849_N05.00",
                          "34HCH", **{"s2:processing_baseline": "05.00"})
    kept, dropped = deduplicate([a, other_orbit, reprocessed])
    assert [k["id"] for k in kept] == [other_orbit["id"], reprocessed["id"]]
    assert [d["id"] for d in dropped] == [a["id"]]


def test_baselines():
    assert needs_offset("04.00") and needs_offset("05.09") and not needs_offset("03.01")
    assert not needs_offset("02.12")
    d = pc_item(ITEM["id"], "GS2B_20190101T082331_009528_N02.12",
                ITEM["properties"]["s2:datastrip_id"], "34HCH",
                **{"s2:product_uri": "S2B_MSIL2A_20230101T082331_N0509_R121_T34HCH_x.SAFE"})
    del d["properties"]["s2:processing_baseline"]
    assert processing_baseline(d) == "05.09"


def test_scene_table_columns():
    t = scene_table([ITEM])
    assert list(t.columns[:3]) == ["id", "datetime", "platform"]
    assert t.loc[0, "gee_index"] == "20190101T082331_20190101T084846_T34HCH"
    assert t.loc[0, "offset"] is False or t.loc[0, "offset"] == False  # noqa: E712


def test_only_planetary_computer_blobs_are_signed(monkeypatch):
    import planetary_computer

    from lcgee.load import sign_if_planetary_computer

    calls = []
    monkeypatch.setattr(planetary_computer, "sign", lambda h: calls.append(h) or h + "?sig=x")
    local = "http://127.0.0.1:8000/cogs/a/B04.tif"
    blob = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/a/B04.tif"
    assert sign_if_planetary_computer(local) == local
    assert sign_if_planetary_computer(blob) == blob + "?sig=x"
    assert calls == [blob]
