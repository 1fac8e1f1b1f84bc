"""The wheel ships the notebooks and the demo params, so `lcgee run demo` works outside a checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lcgee import run

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_installed_copy_is_found_outside_a_checkout(tmp_path, monkeypatch):
    shipped = tmp_path / "site-packages" / "lcgee" / "notebooks"
    (shipped / "params").mkdir(parents=True)
    (shipped / "00_overview.py").write_text("# %%\n")
    (shipped / "params" / "demo.yaml").write_text("name: demo\n")
    monkeypatch.setattr(run, "_CHECKOUT", tmp_path / "site-packages")  # no notebooks/ there
    monkeypatch.setattr(run, "PACKAGED_NOTEBOOKS", shipped)
    monkeypatch.chdir(tmp_path)
    assert run.default_notebooks_dir() == shipped
    assert run.notebook_paths() == [shipped / "00_overview.py"]
    assert run.resolve_params("demo") == shipped / "params" / "demo.yaml"
    (tmp_path / "demo").write_text("a file named demo wins\n")
    assert run.resolve_params("demo") == Path("demo")
    assert run.resolve_params("params/x.yaml") == Path("params/x.yaml")


def test_in_a_checkout_the_checkout_wins():
    assert run.default_notebooks_dir() == ROOT / "notebooks"
    assert run.resolve_params("demo") == ROOT / "params" / "demo.yaml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("lcgee", "notebooks", "params"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(out.glob("lcgee-*.whl"))


@pytest.mark.slow
def test_wheel_carries_the_notebooks_and_the_demo_params(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for nb in NOTEBOOKS:
            assert z.read(f"lcgee/notebooks/{nb}") == (ROOT / "notebooks" / nb).read_bytes()
        assert z.read("lcgee/notebooks/params/demo.yaml") == (ROOT / "params/demo.yaml").read_bytes()
    assert "lcgee/run.py" in names and "lcgee/layout.py" in names


@pytest.mark.slow
def test_installed_wheel_finds_its_notebooks_from_an_empty_directory(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel installs by unpacking
        z.extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import json, lcgee, lcgee.run as r; from lcgee.params import load_params; "
            "print(json.dumps([lcgee.__file__, str(r.default_notebooks_dir()), "
            "len(r.notebook_paths()), load_params(r.resolve_params('demo')).name]))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, nb_dir, count, name = json.loads(proc.stdout)
    assert Path(module).is_relative_to(site)
    assert nb_dir == str(site / "lcgee" / "notebooks") and count == len(NOTEBOOKS)
    assert name == "demo"


def test_params_check_accepts_the_demo_name(capsys, tmp_path, monkeypatch):
    from lcgee import cli

    monkeypatch.chdir(tmp_path)  # no file named demo here
    assert cli.main(["params", "check", "demo"]) == 0
    assert "demo: valid (run 'demo'" in capsys.readouterr().out
