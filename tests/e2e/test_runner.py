"""The papermill runner: stage order, caching and resume, failures, secrets, notebooks' params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lcgee import run as runner
from lcgee.errors import StageError
from lcgee.params import load_params

ROOT = Path(__file__).resolve().parents[2]

# A non-demo params file, so no demo world or server is needed for runner mechanics.
PARAMS = """
name: mechanics
aoi: {bbox: [130.30, 33.50, 130.32, 33.52]}
dates: {start: 2021-05-01, end: 2021-06-01}
stac: {url: "http://127.0.0.1:9/unused"}
"""

HEADER = '''# %% tags=["parameters"]
params_file = "p.yaml"
run_dir = "out"
stac_url = None

'''


def _nb(body: str) -> str:
    return HEADER + "# %%\n" + body + "\n"


@pytest.fixture()
def project(tmp_path):
    (tmp_path / "p.yaml").write_text(PARAMS)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "01_first.py").write_text(_nb(
        "from pathlib import Path\n"
        "import lcgee\n"
        "stage = lcgee.open_stage(params_file, run_dir, stac_url)\n"
        "n = Path(run_dir, 'count_first.txt')\n"
        "n.write_text(str(int(n.read_text()) + 1 if n.exists() else 1))\n"
        "print('grid', stage.grid.shape)"))
    (nbs / "02_second.py").write_text(_nb(
        "from pathlib import Path\n"
        "import os\n"
        "if Path(run_dir, '..', 'fail').exists():\n"
        "    raise RuntimeError('second stage broke on purpose')\n"
        "n = Path(run_dir, 'count_second.txt')\n"
        "n.write_text(str(int(n.read_text()) + 1 if n.exists() else 1))\n"
        "print(os.environ.get('PC_SDK_SUBSCRIPTION_KEY'))"))
    return tmp_path


def _run(project, **kw):
    return runner.run(project / "p.yaml", out_dir=project / "out", notebooks_dir=project / "nbs",
                      progress=False, **kw)


def _count(project, name):
    return int((project / "out" / f"count_{name}.txt").read_text())


def test_runs_in_order_and_records(project):
    res = _run(project)
    assert [s.name for s in res.stages] == ["01_first", "02_second"]
    assert not any(s.cached for s in res.stages)
    rec = json.loads((project / "out" / "run.json").read_text())
    assert rec["params"]["name"] == "mechanics"
    assert [s["name"] for s in rec["stages"]] == ["01_first", "02_second"]
    assert rec["versions"]["papermill"] and rec["finished"]
    for s in rec["stages"]:
        assert s["seconds"] >= 0
    nb = json.loads((project / "out" / "01_first.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert not list((project / "out").glob(".*partial*"))


def test_rerun_uses_cache_and_resumes_after_failure(project):
    (project / "fail").write_text("")
    with pytest.raises(StageError) as info:
        _run(project)
    msg = str(info.value)
    assert "02_second" in msg and "cell" in msg and "second stage broke on purpose" in msg
    assert "02_second.ipynb" in msg
    assert (project / "out" / "02_second.ipynb").is_file()  # the failed notebook is kept
    assert _count(project, "first") == 1
    (project / "fail").unlink()
    res = _run(project)
    assert [s.cached for s in res.stages] == [True, False]
    assert _count(project, "first") == 1 and _count(project, "second") == 1
    res = _run(project)
    assert [s.cached for s in res.stages] == [True, True]
    # A changed param invalidates every stage; --force reruns everything.
    res = runner.run(project / "p.yaml", ["train.num_leaves=7"], out_dir=project / "out",
                     notebooks_dir=project / "nbs", progress=False)
    assert [s.cached for s in res.stages] == [False, False]
    res = _run(project, force=True)
    assert _count(project, "first") == 3


def test_changed_notebook_reruns_it_and_later_ones(project):
    _run(project)
    nb = project / "nbs" / "01_first.py"
    nb.write_text(nb.read_text() + "\nprint('changed')\n")
    res = _run(project)
    assert [s.cached for s in res.stages] == [False, False]


def test_secrets_never_written(project, monkeypatch):
    secret = "pc-key-0123456789abcdef"
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", secret)
    _run(project)
    for path in (project / "out").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore"), path
    assert "redacted" in (project / "out" / "02_second.ipynb").read_text()


def test_cli_failure_is_one_paragraph(project):
    (project / "fail").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "lcgee.cli", "run", str(project / "p.yaml"), "--out",
         str(project / "out"), "--notebooks", str(project / "nbs"), "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=project)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "02_second" in proc.stderr and "RuntimeError" in proc.stderr
    assert "02_second.ipynb" in proc.stderr


def test_every_notebook_parameters_cell_agrees_with_params_model():
    import jupytext
    import papermill as pm

    paths = runner.notebook_paths()
    assert paths, "the suite has notebooks"
    for path in paths:
        nb = jupytext.read(path)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged parameters"
        ipynb = path.with_suffix(".check.ipynb")
        try:
            jupytext.write(nb, ipynb)
            inferred = pm.inspect_notebook(str(ipynb))
        finally:
            ipynb.unlink(missing_ok=True)
        assert tuple(inferred) == runner.NOTEBOOK_PARAMETERS, path.name
        default_params = eval(inferred["params_file"]["default"])  # a string literal
        params = load_params(path.parent / default_params)
        assert params.name == "demo", f"{path.name}: default params must be the demo's"


def test_water_stage_is_skipped_with_a_reason_on_monthly_runs(project):
    """A monthly run's features are per period; notebook 09 would stop the run on them."""
    (project / "nbs" / "09_water.py").write_text(_nb(
        "from pathlib import Path\nPath(run_dir, 'water_ran.txt').write_text('1')"))
    res = runner.run(project / "p.yaml", ["composite.method=monthly"], out_dir=project / "out",
                     notebooks_dir=project / "nbs", progress=False)
    assert [s.name for s in res.stages] == ["01_first", "02_second"]
    assert not (project / "out" / "water_ran.txt").exists()
    rec = json.loads((project / "out" / "run.json").read_text())
    assert "composite.method: monthly" in rec["skipped"]["09_water"]
    # the same notebook runs on a median run
    _run(project)
    assert (project / "out" / "water_ran.txt").exists()
