"""Typed values between the stages and the Earth Engine layer (frozen dataclasses, one
docstring per field as odc-stac's ``loader/types.py``)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lcgee import clouds, ee_stage, masks
from lcgee.errors import ParamsError
from lcgee.gee import cloudmask, session
from lcgee.gee.connection import EarthEngineOptions
from lcgee.grid import Grid
from lcgee.params import CloudParams, load_params

GRID = Grid("EPSG:32634", (10.0, 0.0, 300000.0, 0.0, -10.0, 6300000.0), (4, 4))
DEMO_PARAMS = Path(__file__).resolve().parents[2] / "params" / "demo.yaml"
TYPES = [clouds.CloudMaskParams, EarthEngineOptions, ee_stage.EarthEngineAccess,
         ee_stage.DryRunResult]


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_frozen_with_a_docstring_per_field(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    documented = {a.target.id for a, doc in itertools.pairwise(body)
                  if isinstance(a, ast.AnnAssign) and isinstance(doc, ast.Expr)
                  and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}
    assert documented == {f.name for f in dataclasses.fields(cls)}


def test_cloud_mask_params_from_presets_and_checked():
    tutorial = clouds.CloudMaskParams.from_mapping(clouds.TUTORIAL)
    assert tutorial == clouds.CloudMaskParams()  # the defaults are the tutorial's
    assert "cloud_filter" not in tutorial.as_kwargs()  # a search setting, not a mask one
    aggressive = clouds.CloudMaskParams.from_mapping(clouds.AGGRESSIVE)
    assert (aggressive.cld_prb_thresh, aggressive.cld_prj_dist, aggressive.buffer) == (40, 2, 100)
    with pytest.raises(ParamsError, match="cld_prb_thresh"):
        clouds.CloudMaskParams(cld_prb_thresh=150)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tutorial.buffer = 10  # type: ignore[misc]


def test_cloud_params_of_the_params_file_are_typed():
    cfg = CloudParams(preset="aggressive", buffer=30.5, exact_buffer=True)
    got = masks.cloud_params(cfg)
    assert got == clouds.CloudMaskParams(cld_prb_thresh=40, nir_drk_thresh=0.15,
                                         cld_prj_dist=2, buffer=30.5, exact_buffer=True)
    # the mask cache key is unchanged by the typing (values measured before the change)
    assert masks.mask_key(CloudParams(), GRID) == "7662d2d9c6dc4af4"
    assert masks.mask_key(cfg, GRID) == "e159fb36669ed1fb"


def test_mask_graph_takes_typed_params_only():
    session.init_offline()
    sr, prob = cloudmask.scene_images("X")
    with pytest.raises(TypeError):
        cloudmask.mask_codes(sr, prob, cloud_filter=60)  # was accepted and ignored
    with pytest.raises(TypeError):
        cloudmask.mask_codes(sr, prob, cld_prb_thresh=40)
    params = clouds.CloudMaskParams(cld_prb_thresh=40, buffer=100)
    text = cloudmask.mask_codes(sr, prob, params).serialize()
    assert text != cloudmask.mask_codes(sr, prob).serialize()
    assert text == cloudmask.mask_codes(sr, prob, clouds.CloudMaskParams.from_mapping(
        {**clouds.TUTORIAL, "cld_prb_thresh": 40, "buffer": 100})).serialize()


def test_earth_engine_options_leave_unset_fields_to_the_callee(tmp_path):
    assert EarthEngineOptions().as_kwargs() == {}
    opts = EarthEngineOptions(cache_dir=tmp_path, workers=3)
    assert opts.as_kwargs() == {"cache_dir": tmp_path, "workers": 3}


def test_earth_engine_options_without_project_or_demo_world(tmp_path):
    params = load_params(DEMO_PARAMS)
    access = ee_stage.earth_engine_options(params.model_copy(
        update={"ee": params.ee.model_copy(update={"project": None})}), cache_dir=tmp_path)
    assert access.options is None and session.AUTH_HELP in access.label


def test_dry_run_result_sums_the_table():
    table = pd.DataFrame({"check": ["a", "b"], "compared": [5, 7], "disagreements": [0, 2]})
    result = ee_stage.DryRunResult(table=table, spec=None, route="inline", region=GRID,
                                   local_map=np.zeros((4, 4), np.uint8),
                                   ee_map=np.zeros((4, 4), np.uint8), feature_diff={})
    assert result.disagreements == 2


def test_live_classification_without_project_sends_nothing(tmp_path):
    params = load_params(DEMO_PARAMS)
    params = params.model_copy(update={"ee": params.ee.model_copy(update={"project": None})})
    table = pd.DataFrame({"check": [], "compared": [], "disagreements": []})
    dry = ee_stage.DryRunResult(table=table, spec=None, route="inline", region=GRID,
                                local_map=np.zeros((4, 4), np.uint8),
                                ee_map=np.zeros((4, 4), np.uint8), feature_diff={})
    run = ee_stage.classify_in_earth_engine(params, GRID, dry, cache_dir=tmp_path)
    assert not run.ran and run.export_table is None and run.pixels is None
    assert "no ee.project" in run.message and session.AUTH_HELP in run.message
    assert not any(tmp_path.iterdir())
