"""Every bad param is caught before any work, with the field, the value and the fix."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcgee import cli
from lcgee.errors import ParamsError
from lcgee.params import Params, load_params

DEMO = Path(__file__).resolve().parents[2] / "params" / "demo.yaml"
# The demo AOI in lon/lat, slightly enlarged: a GeoJSON AOI that holds the demo regions.
AOI_LONLAT = [[130.29, 33.52], [130.47, 33.52], [130.47, 33.67], [130.29, 33.67], [130.29, 33.52]]


def _demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def _polygon(coords=AOI_LONLAT, **extra) -> str:
    return json.dumps({"type": "Feature", "properties": {}, **extra,
                       "geometry": {"type": "Polygon", "coordinates": [coords]}})


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _check(tmp_path, capsys, data: dict | str | bytes, *needles: str) -> str:
    path = tmp_path / "p.yaml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    code, err = _cli(capsys, "params", "check", str(path))
    assert code == 2, err
    assert "Traceback" not in err and "unexpected error" not in err, err
    for needle in needles:
        assert needle in err, err
    assert "Fix:" in err, err
    return err


def _with_geojson(tmp_path, text: str, field: str = "aoi") -> dict:
    (tmp_path / "area.geojson").write_text(text)
    data = _demo()
    if field == "aoi":
        data["aoi"] = {"geojson": "area.geojson"}
    else:
        data["regions"]["train_west"] = {"geojson": "area.geojson", "role": "train"}
    return data


def test_unknown_index_and_index_without_its_bands(tmp_path, capsys):
    data = _demo()
    data["features"] = {"indices": ["NDVI", "FOO"]}
    _check(tmp_path, capsys, data, "features.indices", "'FOO'", "NDWI")
    data["features"] = {"bands": ["B02", "B03", "B04"], "indices": ["NDVI"]}
    _check(tmp_path, capsys, data, "features.indices", "NDVI", "B08")


@pytest.mark.parametrize("text,needles", [
    ("{not json", ["not valid JSON"]),
    (json.dumps({"type": "Point", "coordinates": [130.3, 33.5]}), ["Point", "polygonal"]),
    (json.dumps({"type": "FeatureCollection", "features": []}), ["no features"]),
    (_polygon(crs={"type": "name", "properties": {"name": "EPSG:32652"}}), ["EPSG:32652"]),
    (_polygon([[620000, 3710000], [635360, 3710000], [635360, 3725360], [620000, 3710000]]),
     ["outside lon/lat"]),
    (_polygon([[130.3, 33.5], [130.4, 33.6], [130.4, 33.5], [130.3, 33.6], [130.3, 33.5]]),
     ["invalid polygon"]),
], ids=["not-json", "point", "empty", "projected-crs", "projected-coords", "bowtie"])
def test_bad_geojson_is_named(tmp_path, capsys, text, needles):
    _check(tmp_path, capsys, _with_geojson(tmp_path, text), "aoi.geojson", *needles)


def test_binary_geojson_and_missing_region_file(tmp_path, capsys):
    (tmp_path / "area.geojson").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    data = _demo()
    data["aoi"] = {"geojson": "area.geojson"}
    _check(tmp_path, capsys, data, "aoi.geojson", "cannot be read as text")
    data = _demo()
    data["regions"]["map_south"] = {"geojson": "nowhere.geojson", "role": "predict"}
    _check(tmp_path, capsys, data, "regions.map_south.geojson", "does not exist")


def test_relative_geojson_follows_the_params_file_not_the_output_folder(tmp_path, monkeypatch):
    """The runner writes the resolved params into the run folder; the stages reload them."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "area.geojson").write_text(_polygon())
    data = _demo()
    data["aoi"] = {"geojson": "area.geojson"}
    (tmp_path / "in" / "p.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)  # a relative params path, as typed on the command line
    params = load_params(Path("in") / "p.yaml")
    assert params.aoi.geojson == (tmp_path / "in" / "area.geojson").resolve()
    resolved = tmp_path / "elsewhere" / "run" / "params.yaml"
    resolved.parent.mkdir(parents=True)
    resolved.write_text(yaml.safe_dump(params.to_plain()))
    again = load_params(resolved)
    assert again.aoi.lonlat_bbox() == pytest.approx((130.29, 33.52, 130.47, 33.67))


def test_region_outside_the_aoi_is_named(tmp_path, capsys):
    data = _demo()
    data["regions"]["map_south"]["bbox"] = [640000, 3710640, 646400, 3717040]
    _check(tmp_path, capsys, data, "regions.map_south", "not inside the AOI")


def test_aoi_and_region_smaller_than_a_pixel(tmp_path, capsys):
    data = _demo()
    data["aoi"]["bbox"] = [620000, 3710000, 620005, 3725360]
    data["regions"] = {}
    _check(tmp_path, capsys, data, "aoi", "less than one 10 m pixel")
    data = _demo()
    data["regions"]["map_south"]["bbox"] = [624480, 3710640, 624484, 3717040]
    _check(tmp_path, capsys, data, "regions.map_south", "less than one 10 m pixel")


def test_unknown_crs(tmp_path, capsys):
    data = _demo()
    data["grid"]["crs"] = "EPSG:999999"
    _check(tmp_path, capsys, data, "grid.crs", "EPSG:999999")


def test_params_file_that_is_not_text(tmp_path, capsys):
    _check(tmp_path, capsys, b"\x00\x01\xff\xfe\x89PNG", "not text")


def test_fix_points_to_a_real_command(tmp_path, capsys):
    data = _demo()
    data["train"]["num_leaves"] = 1
    _check(tmp_path, capsys, data, "train.num_leaves", "`lcgee params fields`")
    code, _ = _cli(capsys, "params", "fields")
    assert code == 0


# ---- property-based: any mutation of params/demo.yaml is refused cleanly ----------------------

def _leaf_paths(node, prefix=()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaf_paths(v, (*prefix, str(k)))]
    return [prefix]


def _get(data: dict, path: tuple[str, ...]):
    for part in path:
        data = data[part]
    return data


def _set(data: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


NUMERIC_RANGES = {  # field -> values outside its range
    ("stac", "max_cloud_cover"): st.floats(100.01, 1e9) | st.floats(-1e9, -0.01),
    ("grid", "resolution"): st.floats(-1e6, 0),
    ("train", "num_iterations"): st.integers(-10**6, 0),
    ("train", "learning_rate"): st.floats(1.01, 1e6) | st.floats(-1e6, 0),
    ("dask", "n_workers"): st.integers(-100, 0),
    ("demo", "size"): st.integers(-10**6, 191),
    ("load", "chunk"): st.integers(-10**6, 127) | st.integers(8193, 10**7),
    ("train", "max_depth"): st.integers(31, 10**6),
}
CHOICES = [("clouds", "source"), ("clouds", "preset"), ("composite", "method"),
           ("labels", "source"), ("regions", "train_west", "role")]
BBOXES = [("aoi", "bbox"), ("regions", "train_west", "bbox"), ("regions", "map_south", "bbox")]
SECTIONS = ["stac", "grid", "clouds", "composite", "labels", "train", "dask", "demo"]
_NONNUMERIC = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).map(lambda s: "x" + s)


@st.composite
def mutation(draw) -> tuple[dict, str]:
    """A mutated demo params dict and the field its error must name."""
    data = _demo()
    kind = draw(st.sampled_from(["type", "range", "choice", "unknown", "bounds", "dates",
                                 "index", "region"]))
    if kind == "type":  # a number or date replaced by text, a list or a mapping
        paths = [p for p in _leaf_paths(data)
                 if isinstance(_get(data, p), int | float) or "dates" in p]
        path = draw(st.sampled_from(paths))
        _set(data, path, draw(_NONNUMERIC | st.just([1, 2]) | st.just({"a": 1})))
        return data, ".".join(path)
    if kind == "range":
        path = draw(st.sampled_from(sorted(NUMERIC_RANGES)))
        _set(data, path, draw(NUMERIC_RANGES[path]))
        return data, ".".join(path)
    if kind == "choice":
        path = draw(st.sampled_from(CHOICES))
        _set(data, path, draw(_NONNUMERIC))
        return data, ".".join(path)
    if kind == "unknown":
        section = draw(st.sampled_from(SECTIONS))
        model = Params.model_fields[section].annotation
        name = draw(_NONNUMERIC.filter(lambda k: k not in model.model_fields))
        data.setdefault(section, {})[name] = draw(st.integers() | _NONNUMERIC)
        return data, f"{section}.{name}"
    if kind == "bounds":  # west/east or south/north swapped
        path = draw(st.sampled_from(BBOXES))
        bbox = list(_get(data, path))
        i = draw(st.sampled_from([0, 1]))
        bbox[i], bbox[i + 2] = bbox[i + 2], bbox[i]
        _set(data, path, bbox)
        return data, ".".join(path[:-1])
    if kind == "index":
        from lcgee.indices import INDICES

        name = draw(_NONNUMERIC.map(str.upper).filter(lambda k: k not in INDICES))
        data["features"] = {"indices": ["NDVI", name]}
        return data, "features.indices"
    if kind == "region":  # moved out of the AOI by more than a pixel
        name = draw(st.sampled_from(sorted(data["regions"])))
        dx = draw(st.sampled_from([-1, 1])) * draw(st.integers(16000, 10**5))
        bbox = data["regions"][name]["bbox"]
        data["regions"][name]["bbox"] = [bbox[0] + dx, bbox[1], bbox[2] + dx, bbox[3]]
        return data, f"regions.{name}"
    data["dates"]["start"], data["dates"]["end"] = data["dates"]["end"], data["dates"]["start"]
    return data, "dates"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutation())
def test_any_mutation_of_the_demo_params_is_refused_before_work(case, capsys):
    data, field = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p.yaml").write_text(yaml.safe_dump(data))
        (root / "nbs").mkdir()  # no notebooks: a params file that passed would stop here
        code, err = _cli(capsys, "run", str(root / "p.yaml"), "--out", str(root / "out"),
                         "--notebooks", str(root / "nbs"), "--no-progress")
        assert code == 2, err
        assert "Traceback" not in err and "unexpected error" not in err, err
        assert f"`{field}" in err or f"{field}:" in err or f"{field}." in err, (field, err)
        assert sorted(p.name for p in root.iterdir()) == ["nbs", "p.yaml"]  # nothing written


def test_the_demo_params_themselves_pass():
    assert isinstance(load_params(DEMO), Params)
    with pytest.raises(ParamsError):
        load_params(DEMO, ["features.indices=[FOO]"])
