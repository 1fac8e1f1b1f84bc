"""`lcgee doctor` and the real-area example params."""

from __future__ import annotations

import time
from pathlib import Path

from lcgee.cli import main
from lcgee.doctor import format_checks, run_checks
from lcgee.params import load_params, validate

REAL = Path(__file__).parents[2] / "params" / "fukuoka-kumamoto.yaml"


def test_real_area_example_passes_params_check(capsys):
    assert main(["params", "check", str(REAL)]) == 0
    assert "valid (run 'fukuoka-kumamoto'" in capsys.readouterr().out
    p = load_params(REAL)
    assert not p.is_demo and p.stac.url.startswith("https://planetarycomputer")
    assert sorted(r.role for r in p.regions.values()) == ["predict", "train", "train"]
    assert p.clouds.source == "auto" and p.labels.source == "planetary-computer"
    assert p.dates.start.year >= 2024
    w, s, e, n = p.aoi.lonlat_bbox()
    for name, lon, lat in (("Fukuoka", 130.40, 33.59), ("Kumamoto", 130.71, 32.80)):
        assert w < lon < e and s < lat < n, name
    for r in p.regions.values():
        rw, rs, re_, rn = r.lonlat_bbox()
        assert w <= rw and re_ <= e and s <= rs and rn <= n


def _small_params(world, url: str):
    return validate({"name": "doc", "aoi": {"bbox": list(world.grid.lonlat_bbox)},
                     "dates": {"start": "2021-04-01", "end": "2022-09-30"},
                     "stac": {"url": url}, "labels": {"source": "demo"}})


def test_doctor_on_a_working_api(small_server, small_world, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no Earth Engine credentials here
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    checks = {c.name: c for c in run_checks(_small_params(small_world, small_server.stac_url))}
    assert checks["STAC API"].status == "ok"
    assert checks["signed COG header"].status == "ok"
    assert "px" in checks["signed COG header"].detail
    assert checks["cloud source"].status == "ok" and "local" in checks["cloud source"].detail
    ee = checks["Earth Engine"]
    assert ee.status == "warn" and "earthengine authenticate" in ee.fix
    assert sum(c.seconds for c in checks.values()) < 60


def test_doctor_reports_an_unreachable_api_quickly(small_world, capsys, tmp_path, monkeypatch):
    from lcgee.demo.serve import free_port

    monkeypatch.setenv("HOME", str(tmp_path))
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    checks = run_checks(_small_params(small_world, url))
    assert time.monotonic() - started < 30
    stac = checks[0]
    assert stac.name == "STAC API" and stac.status == "fail" and "check the URL" in stac.fix
    assert "problem(s) to fix" in format_checks(checks)
    params = tmp_path / "p.yaml"
    params.write_text(REAL.read_text())
    assert main(["doctor", str(params), "--stac-url", url, "--no-ee-login"]) == 3
    out = capsys.readouterr().out
    assert "FAIL STAC API" in out and "fix:" in out
