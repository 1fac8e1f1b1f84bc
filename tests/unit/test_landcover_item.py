"""The land-cover STAC item's classification extension against the real ESA WorldCover JSON
(tests/data/pc/). The real item and collection declare classification v1.0.0, whose class field
is ``color-hint``; v1.1.0 renamed it ``color_hint`` (the extension's CHANGELOG: "Color hinting
needed to be underscored `color_hint`"), which v2.0.0 keeps. lcgee's item declares v2.0.0, so
it writes ``color_hint``; pystac reads both (it migrates v1.0.0's ``color-hint``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pystac
from pystac.extensions.classification import ClassificationExtension

from lcgee import predict
from lcgee.grid import Grid

DATA = Path(__file__).resolve().parents[1] / "data" / "pc"
GRID = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (64, 64))
_FIELD = {"1.0.0": "color-hint", "1.1.0": "color_hint", "2.0.0": "color_hint"}


def _version(extensions: list[str]) -> str:
    found = [m.group(1) for e in extensions
             if (m := re.fullmatch(r"https://stac-extensions\.github\.io/classification/"
                                   r"v([\d.]+)/schema\.json", e))]
    assert len(found) == 1, extensions
    return found[0]


def _lcgee_item() -> dict:
    real = json.loads((DATA / "esa-worldcover-item.json").read_text())
    codes = [c["value"] for c in real["assets"]["map"]["classification:classes"]]
    return predict.stac_item(GRID, Path("landcover.tif"), codes, model_href="./model/model.json",
                             start="2021-04-01", end="2022-09-30", item_id="t-landcover")


def test_colour_field_is_the_one_of_the_declared_extension_version():
    real = json.loads((DATA / "esa-worldcover-item.json").read_text())
    collection = json.loads((DATA / "esa-worldcover.collection.json").read_text())
    ours = _lcgee_item()
    for doc, classes in ((real, real["assets"]["map"]["classification:classes"]),
                         (collection, collection["item_assets"]["map"]["classification:classes"]),
                         (ours, ours["assets"]["landcover"]["classification:classes"])):
        field = _FIELD[_version(doc["stac_extensions"])]
        other = {"color-hint", "color_hint"} - {field}
        assert all(field in c and not other & set(c) for c in classes), (field, classes[0])
    assert real["assets"]["map"]["classification:classes"][0]["color-hint"] == "006400"


def test_a_stac_reader_gets_the_real_worldcover_classes_from_lcgees_item():
    real = pystac.Item.from_dict(json.loads((DATA / "esa-worldcover-item.json").read_text()))
    ours = pystac.Item.from_dict(_lcgee_item())
    got = {c.value: (c.description, c.color_hint) for c in
           ClassificationExtension.ext(ours.assets["landcover"]).classes}
    want = {c.value: (c.description, c.color_hint) for c in
            ClassificationExtension.ext(real.assets["map"]).classes}
    assert len(want) == 11 and all(hint for _, hint in want.values())
    assert got == want
    # v2.0.0 requires a machine-readable name on every class
    for c in ClassificationExtension.ext(ours.assets["landcover"]).classes:
        assert c.name and re.fullmatch(r"[0-9A-Za-z_-]+", c.name), c.name
