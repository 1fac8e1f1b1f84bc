"""Params: the demo file validates; bad input fails before any work with the field named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lcgee.errors import ParamsError
from lcgee.params import S2_BANDS, Params, apply_overrides, field_reference, load_params

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "params" / "demo.yaml"


def test_demo_params_load():
    p = load_params(DEMO)
    assert p.name == "demo" and p.is_demo
    assert set(p.regions_with("train")) == {"train_west", "train_east"}
    assert set(p.regions_with("predict")) == {"map_south"}
    assert p.dates.start.isoformat() < "2022-01-25" < p.dates.end.isoformat()


def test_override_changes_value_and_digest():
    a = load_params(DEMO)
    b = load_params(DEMO, ["composite.method=best", "train.num_leaves=15"])
    assert b.composite.method == "best" and b.train.num_leaves == 15
    assert a.digest() != b.digest()
    assert load_params(DEMO).digest() == a.digest()


def test_apply_overrides_does_not_mutate():
    data = {"a": {"b": 1}}
    out = apply_overrides(data, ["a.b=2", "a.c=[1, 2]"])
    assert data == {"a": {"b": 1}} and out == {"a": {"b": 2, "c": [1, 2]}}


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("aoi.bboxx=[1,2,3,4]", ["aoi.bboxx", "did you mean 'bbox'"]),
        ("colour=red", ["unknown field `colour`", "allowed:"]),
        ("aoi={bbox: [131, 33, 130, 34]}", ["aoi", "min >= max"]),
        ("aoi={bbox: [130, 33, 131, 95]}", ["aoi", "latitude"]),
        ("dates.end=2020-01-01", ["dates", "before start"]),
        ("bands=[B02, B10]", ["bands", "B10", "available: B01"]),
        ("composite.method=mean", ["composite.method", "'median', 'best' or 'monthly'", "mean"]),
        ("aoi={geojson: nowhere.geojson}", ["aoi.geojson", "nowhere.geojson", "does not exist"]),
        ("stac.api_key=abcdefghijkl", ["stac.api_key", "secret"]),
        ("bands=[B02, B03, B04]", ["features.bands", "B05", "not in `bands`"]),
        ("stac.mgrs_tiles=[XYZ]", ["stac.mgrs_tiles", "MGRS"]),
    ],
)
def test_bad_params_name_the_field(override, needles):
    with pytest.raises(ParamsError) as info:
        load_params(DEMO, [override])
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    assert "Fix:" in msg


def test_geojson_area(tmp_path):
    (tmp_path / "aoi.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        '"geometry": {"type": "Polygon", "coordinates": [[[130.29, 33.52], [130.46, 33.52], '
        '[130.46, 33.67], [130.29, 33.52]]]}}]}')  # covers the demo regions
    text = DEMO.read_text().replace("aoi:\n  bbox: [620000, 3710000, 635360, 3725360]\n  crs: EPSG:32652",
                                    "aoi:\n  geojson: aoi.geojson")
    assert "geojson: aoi.geojson" in text
    (tmp_path / "p.yaml").write_text(text)
    p = load_params(tmp_path / "p.yaml")
    assert p.aoi.lonlat_bbox(tmp_path) == pytest.approx((130.29, 33.52, 130.46, 33.67))
    assert p.aoi.geojson == tmp_path / "aoi.geojson"  # resolved against the params folder


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")


def test_field_reference_covers_every_section():
    ref = field_reference()
    for section in Params.model_fields:
        assert f"`{section}" in ref
    assert "`clouds.cld_prb_thresh`" in ref and "`bands`" in ref


def test_cli_reports_bad_params_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lcgee.cli", "run", str(DEMO), "--set", "dates.end=2020-01-01",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "dates" in proc.stderr and "before start" in proc.stderr
    assert not (tmp_path / "out").exists(), "no work may start on bad params"


def test_all_bands_known():
    assert len(S2_BANDS) == 12 and "B10" not in S2_BANDS
