"""Live checks against Planetary Computer (skipped unless LCGEE_LIVE=1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcgee.doctor import run_checks
from lcgee.params import load_params

REAL = Path(__file__).resolve().parents[2] / "params" / "fukuoka-kumamoto.yaml"


@pytest.mark.live
def test_doctor_on_planetary_computer():
    checks = {c.name: c for c in run_checks(load_params(REAL), earth_engine_live=False)}
    assert checks["STAC API"].status == "ok"
    assert checks["signed COG header"].status == "ok"
    assert checks["cloud source"].status in ("ok", "warn")
