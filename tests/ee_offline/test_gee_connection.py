"""The one declared seam to Earth Engine: both implementations, and that calls go through it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from lcgee.errors import EarthEngineError
from lcgee.gee import live
from lcgee.gee.connection import EarthEngineConnection, LiveEarthEngine, live_or
from lcgee.gee.emulator import OfflineEarthEngine
from lcgee.grid import Grid

GEE = Path(__file__).resolve().parents[2] / "lcgee" / "gee"
GRID = Grid("EPSG:32634", (10.0, 0.0, 300000.0, 0.0, -10.0, 6300000.0), (4, 4))


class RecordingConnection:
    """Answers task calls and records them; pixels and info are not expected."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def compute_pixels(self, request):
        raise AssertionError("no pixels expected")

    def get_info(self, query):
        raise AssertionError("no info expected")

    def start_task(self, task):
        self.calls.append(("start", task.name))
        task.id = f"ID_{task.name}"

    def task_status(self, task):
        self.calls.append(("status", task.name))
        return {"state": "COMPLETED"}


class BareTask:
    """Has no start()/status(): only a connection can run it."""

    def __init__(self, name):
        self.name, self.id, self.config = name, None, {"description": name}


def test_both_implementations_satisfy_the_protocol():
    assert isinstance(LiveEarthEngine(), EarthEngineConnection)
    assert isinstance(OfflineEarthEngine(GRID, lambda asset_id: ({}, {})), EarthEngineConnection)
    assert not isinstance(object(), EarthEngineConnection)
    assert isinstance(live_or(None), LiveEarthEngine)
    conn = RecordingConnection()
    assert live_or(conn) is conn


def test_tasks_go_through_the_connection():
    conn = RecordingConnection()
    tasks = [BareTask("a"), BareTask("b")]
    table = live.start_tasks(tasks, connection=conn)
    assert list(table["task_id"]) == ["ID_a", "ID_b"]
    assert conn.calls == [("start", "a"), ("start", "b"), ("status", "a"), ("status", "b")]
    done = live.wait_tasks(tasks, connection=conn, sleep=lambda s: None)
    assert list(done["state"]) == ["COMPLETED", "COMPLETED"]


def test_the_stand_in_refuses_tasks_with_a_way_out():
    stand_in = OfflineEarthEngine(GRID, lambda asset_id: ({}, {}))
    with pytest.raises(EarthEngineError, match="not emulated") as info:
        live.start_tasks([BareTask("a")], connection=stand_in)
    assert "ee.project" in info.value.fix


def test_the_stand_in_answers_pixels_through_the_seam():
    stand_in = OfflineEarthEngine(GRID, lambda asset_id: ({"B8": np.full(GRID.shape, 7.0)}, {}))
    request = {"expression": {"result": "0", "values": {"0": {"functionInvocationValue": {
        "functionName": "Image.load", "arguments": {"id": {"constantValue": "x/y"}}}}}},
        "fileFormat": "NUMPY_NDARRAY", "grid": {
            "dimensions": {"width": 2, "height": 2}, "crsCode": GRID.crs,
            "affineTransform": dict(zip(("scaleX", "shearX", "translateX", "shearY", "scaleY",
                                         "translateY"), GRID.transform, strict=True))}}
    out = live_or(stand_in).compute_pixels(request)
    assert out.shape == (2, 2) and np.all(out["B8"] == 7)


def _attribute_calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}


def test_only_the_live_adapter_calls_the_service():
    service_calls = {"computePixels", "getInfo"}
    users = {p.name: sorted(_attribute_calls(p) & service_calls) for p in GEE.glob("*.py")}
    assert {k: v for k, v in users.items() if v} == {"connection.py": ["computePixels",
                                                                        "getInfo"]}
