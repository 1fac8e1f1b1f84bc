"""clouds.source: auto, decided before any download; `local` refused where no layer exists."""

from __future__ import annotations

import warnings

import pytest

from lcgee import cloudsource
from lcgee.errors import DataWarning, ParamsError
from lcgee.params import CloudParams, validate

BASE = {"name": "t", "aoi": {"bbox": [130.0, 32.0, 130.5, 33.0]},
        "dates": {"start": "2024-01-01", "end": "2024-12-31"}}


class _Api:
    """A STAC client stand-in with or without the probability collection."""

    def __init__(self, has_layer: bool):
        self.has_layer = has_layer
        self.asked: list[str] = []

    def get_collection(self, cid):
        self.asked.append(cid)
        if self.has_layer and cid == cloudsource.PROBABILITY_COLLECTION:
            return object()
        raise KeyError(cid)  # pystac-client raises on a 404

    def search(self, **_):
        raise AssertionError("no search, no download before the source is decided")


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


def test_auto_is_the_default():
    assert CloudParams().source == "auto"


def test_auto_is_scl_on_an_api_without_probability_and_no_earth_engine(no_credentials):
    p = validate({**BASE, "stac": {"url": "https://example.org/stac"}})
    choice = cloudsource.resolve_source(p, _Api(False))
    assert choice.source == "scl" and "SCL" in choice.reason and "ee.project" in choice.reason


def test_auto_is_local_where_the_api_holds_probability(no_credentials):
    p = validate({**BASE, "stac": {"url": "demo"}})
    assert cloudsource.resolve_source(p, _Api(True)).source == "local"


def test_auto_is_earth_engine_with_project_and_credentials(monkeypatch, tmp_path):
    key = tmp_path / "sa.json"
    key.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    p = validate({**BASE, "ee": {"project": "my-project"}})
    api = _Api(True)
    choice = cloudsource.resolve_source(p, api)
    assert choice.source == "gee" and "my-project" in choice.reason
    # a project without credentials is not enough
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cloudsource.resolve_source(p, _Api(False)).source == "scl"


def test_local_on_an_api_without_probability_is_refused_with_the_fix(no_credentials):
    p = validate({**BASE, "stac": {"url": "https://example.org/stac"},
                  "clouds": {"source": "local"}})
    with pytest.raises(ParamsError, match=r"clouds\.source.*no 's2-cloud-probability'.*Fix: "
                                          r"use clouds\.source: auto"):
        cloudsource.resolve_source(p, _Api(False))


def test_local_on_planetary_computer_is_refused_by_params_validation():
    with pytest.raises(ParamsError, match="Planetary Computer has none"):
        validate({**BASE, "clouds": {"source": "local"}})
    with pytest.raises(ParamsError, match="Planetary Computer has none"):
        validate({**BASE, "clouds": {"source": "scl", "fallback": "local"}})
    assert validate(BASE).clouds.source == "auto"


def test_scene_sources_and_loud_warning_when_most_fall_back():
    import pandas as pd

    table = pd.DataFrame({"id": ["a", "b", "c"]})
    got = [("a", "scl", None), ("b", "scl", None), ("c", "gee", None)]
    assert list(cloudsource.source_table(table, got)["mask_source"]) == ["scl", "scl", "gee"]
    with pytest.warns(DataWarning, match="2 of 3 scenes were NOT masked by .*'gee'"):
        assert cloudsource.warn_if_mostly_fallback(got, "gee") == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cloudsource.warn_if_mostly_fallback(got, "scl") == 1


def test_demo_api_holds_the_layer(small_server, no_credentials):
    from lcgee import search

    client = search.open_client(small_server.stac_url)
    p = validate({**BASE, "stac": {"url": "demo"}})
    assert cloudsource.resolve_source(p, client).source == "local"
    assert not cloudsource.has_probability_layer(client, "no-such-collection")
