"""Tests of lcgee.indices: formulas, NaN on division by zero, the ops seam, parsing."""

from __future__ import annotations

import dataclasses
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from lcgee import indices
from lcgee.errors import DataError, ParamsError
from lcgee.indices import INDICES, Band, BinOp, Const, Index, Neg

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


@pytest.fixture
def refl() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {b: rng.uniform(0.01, 0.6, size=(16, 16)) for b in BANDS}


TEXTBOOK = {
    "NDVI": lambda r: (r["B08"] - r["B04"]) / (r["B08"] + r["B04"]),
    "NDWI": lambda r: (r["B08"] - r["B11"]) / (r["B08"] + r["B11"]),          # Gao 1996
    "NDWI_MCF": lambda r: (r["B03"] - r["B08"]) / (r["B03"] + r["B08"]),      # McFeeters 1996
    "MNDWI": lambda r: (r["B03"] - r["B11"]) / (r["B03"] + r["B11"]),
    "NDBI": lambda r: (r["B11"] - r["B08"]) / (r["B11"] + r["B08"]),
    "SAVI": lambda r: (1 + 0.5) * (r["B08"] - r["B04"]) / (r["B08"] + r["B04"] + 0.5),
    "EVI": lambda r: 2.5 * (r["B08"] - r["B04"]) / (r["B08"] + 6 * r["B04"] - 7.5 * r["B02"] + 1),
    "NBR": lambda r: (r["B08"] - r["B12"]) / (r["B08"] + r["B12"]),
}


def test_registry_covers_textbook():
    assert set(TEXTBOOK) == set(INDICES)


@pytest.mark.parametrize("name", sorted(TEXTBOOK))
def test_index_equals_textbook_formula(name, refl):
    np.testing.assert_allclose(indices.evaluate(name, refl), TEXTBOOK[name](refl), rtol=1e-12)


def test_bands_are_derived():
    assert INDICES["NDVI"].bands == ("B08", "B04")
    assert INDICES["EVI"].bands == ("B08", "B04", "B02")
    assert INDICES["NDWI"].bands == ("B08", "B11")
    assert INDICES["NDWI_MCF"].bands == ("B03", "B08")
    with pytest.raises(dataclasses.FrozenInstanceError):
        INDICES["NDVI"].expression = "B04"  # type: ignore[misc]


def test_division_by_zero_is_nan_everywhere():
    zero = {"B08": np.zeros(3), "B04": np.zeros(3)}
    assert np.isnan(indices.evaluate("NDVI", zero)).all()
    one = {"B08": np.array([0.0, 0.2]), "B04": np.array([0.0, 0.2])}
    np.testing.assert_array_equal(indices.evaluate("NDVI", one), [np.nan, 0.0])
    assert np.isnan(indices.evaluate("NDVI", {"B08": 0.0, "B04": 0}))
    # 1 / 0 is NaN too (not inf), e.g. NDBI where B11 = -B08
    assert np.isnan(indices.evaluate("NDBI", {"B11": np.array([0.1]), "B08": np.array([-0.1])}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy = indices.evaluate("NDVI", {"B08": da.zeros(4, chunks=2), "B04": da.zeros(4)})
        assert isinstance(lazy, da.Array) and np.isnan(lazy.compute()).all()
        x = xr.DataArray(np.zeros(3, np.float32), dims="x", coords={"x": [1, 2, 3]})
        out = indices.evaluate("SAVI", {"B08": x, "B04": x - 0.5})  # 0.75 / 0
        assert isinstance(out, xr.DataArray) and out.dtype == np.float32
        assert np.isnan(out.values).all() and list(out["x"].values) == [1, 2, 3]


class Recorder:
    """An ExprOps that builds nested tuples instead of computing."""

    def add(self, a, b):
        return ("add", a, b)

    def sub(self, a, b):
        return ("sub", a, b)

    def mul(self, a, b):
        return ("mul", a, b)

    def div(self, a, b):
        return ("div", a, b)

    def neg(self, a):
        return ("neg", a)

    def const(self, value):
        return ("const", value)


def test_ops_recorder_builds_tree_from_single_definition():
    rec = Recorder()
    names = {b: b for b in BANDS}
    assert indices.evaluate("NDVI", names, ops=rec) == (
        "div", ("sub", "B08", "B04"), ("add", "B08", "B04"))
    assert indices.evaluate("SAVI", names, ops=rec) == (
        "div", ("mul", ("const", 1.5), ("sub", "B08", "B04")),
        ("add", ("add", "B08", "B04"), ("const", 0.5)))
    # the same tree that walk() hands to serializers
    assert indices.walk("NDVI") == BinOp("/", BinOp("-", Band("B08"), Band("B04")),
                                         BinOp("+", Band("B08"), Band("B04")))


def test_recorder_replays_to_same_numbers(refl):
    """Interpreting the recorded graph numerically gives the default evaluation."""
    ops = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "neg": np.negative}

    def run(node):
        if isinstance(node, str):
            return refl[node]
        if node[0] == "const":
            return node[1]
        return ops[node[0]](*(run(n) for n in node[1:]))

    for name in INDICES:
        graph = indices.evaluate(name, {b: b for b in BANDS}, ops=Recorder())
        np.testing.assert_allclose(run(graph), indices.evaluate(name, refl), rtol=1e-12)


def test_parse_language():
    assert indices.parse("-B08") == Neg(Band("B08"))
    assert indices.parse("-0.5 * B08") == BinOp("*", Const(-0.5), Band("B08"))
    assert indices.parse("((B08))") == Band("B08")
    assert indices.parse("2 - -B04") == BinOp("-", Const(2.0), Neg(Band("B04")))


@pytest.mark.parametrize(
    ("expression", "token"),
    [
        ("B08 ** 2", "'**'"),
        ("abs(B08)", "'abs(B08)'"),
        ("B08 % 2", "'%'"),
        ("B08 < B04", "'<'"),
        ("+B08", "'+'"),
        ("__import__('os')", "__import__"),
        ("B08.real", "'B08.real'"),
        ("True * B08", "'True'"),
        ("B08 +", "invalid syntax"),
        ("1e999 * B08", "'1e999'"),
    ],
)
def test_bad_expressions_rejected(expression, token):
    with pytest.raises(ParamsError) as info:
        Index("BAD", expression, "a bad one")
    message = str(info.value)
    assert "index BAD" in message and token in message
    assert "Fix:" in message


def test_unknown_index_and_missing_band():
    with pytest.raises(ParamsError, match=r"unknown index 'NDXI'.*NDVI"):
        indices.evaluate("NDXI", {})
    with pytest.raises(DataError, match=r"NDVI needs bands \['B04'\]"):
        indices.evaluate("NDVI", {"B08": np.ones(2)})
    with pytest.raises(ParamsError, match="not a valid band name"):
        Index("my index", "B08")


def test_custom_index():
    ratio = Index("RATIO", "B08 / B04", "simple ratio")
    assert ratio.bands == ("B08", "B04")
    np.testing.assert_allclose(indices.evaluate(ratio, {"B08": 0.4, "B04": 0.2}), 2.0)


def composite(lazy: bool = False) -> xr.DataArray:
    rng = np.random.default_rng(1)
    data = rng.uniform(0.0, 0.5, size=(2, len(BANDS), 5, 6))
    arr = xr.DataArray(data, dims=("time", "band", "y", "x"),
                       coords={"time": [0, 1], "band": list(BANDS),
                               "y": np.arange(5.0), "x": np.arange(6.0)})
    return arr.chunk({"time": 1}) if lazy else arr


@pytest.mark.parametrize("lazy", [False, True])
def test_compute_indices_names_and_dtype(lazy):
    comp = composite(lazy)
    out = indices.compute_indices(comp, ["NDVI", "MNDWI", INDICES["SAVI"]])
    assert out.dims == comp.dims and out.dtype == np.float32
    assert list(out["band"].values) == [*BANDS, "NDVI", "MNDWI", "SAVI"]
    assert (out.chunks is not None) == lazy
    r = {b: comp.sel(band=b).values for b in BANDS}
    np.testing.assert_allclose(out.sel(band="NDVI").values, TEXTBOOK["NDVI"](r), rtol=1e-6)
    np.testing.assert_allclose(out.sel(band="B08").values, r["B08"], rtol=1e-6)
    single = indices.compute_indices(comp.isel(time=0), ["NDBI"])
    assert single.dims == ("band", "y", "x") and single.sizes["band"] == len(BANDS) + 1


def test_compute_indices_errors():
    comp = composite()
    with pytest.raises(ParamsError, match="already exist"):
        indices.compute_indices(indices.compute_indices(comp, ["NDVI"]), ["NDVI"])
    with pytest.raises(DataError, match="needs bands"):
        indices.compute_indices(comp.sel(band=["B02", "B03"]), ["NDVI"])
    with pytest.raises(DataError, match="no 'band'"):
        indices.compute_indices(comp.isel(band=0), ["NDVI"])


def test_feature_names():
    assert indices.feature_names(["B02", "B08"], ["NDVI", INDICES["NBR"]]) == [
        "B02", "B08", "NDVI", "NBR"]
    with pytest.raises(ParamsError, match="duplicate"):
        indices.feature_names(["B02", "NDVI"], ["NDVI"])
    with pytest.raises(ParamsError, match="unknown index"):
        indices.feature_names(["B02"], ["XYZ"])
