"""Process hygiene: `lcgee run` killed at several points leaves no child and no temp folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lcgee import procs

ROOT = Path(__file__).resolve().parents[2]

SLEEPER = '''# %% tags=["parameters"]
params_file = "p.yaml"
run_dir = "out"
stac_url = None

# %%
import time
from pathlib import Path
import lcgee
stage = lcgee.open_stage(params_file, run_dir, stac_url)
Path(run_dir, "started").write_text("yes")
time.sleep(120)
'''

# A 192 px demo world: the run builds it (worker processes) and serves it (rustac + range server).
DEMO = """
name: tiny
aoi: {bbox: [620000, 3723440, 621920, 3725360], crs: EPSG:32652}
dates: {start: 2021-04-01, end: 2022-09-30}
stac: {url: demo}
grid: {resolution: 10, crs: EPSG:32652}
labels: {source: demo}
demo: {seed: %d, size: 192}
"""


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A cache holding the tiny demo world (seed 3), so a run goes straight to its servers."""
    from lcgee.demo.world import WorldSpec, build_world

    cache = tmp_path_factory.mktemp("cache")
    build_world(WorldSpec(seed=3, size=192), cache / "demo", progress=False)
    return cache


def _project(tmp_path: Path, seed: int) -> Path:
    (tmp_path / "p.yaml").write_text(DEMO % seed)
    (tmp_path / "nbs").mkdir()
    (tmp_path / "nbs" / "01_sleep.py").write_text(SLEEPER)
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _start(project: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(project / "tmp"),
           "LCGEE_CACHE": str(cache)}
    env.pop("LCGEE_SCOPE_BASE", None)
    cmd = [sys.executable, "-m", "lcgee.cli", "run", str(project / "p.yaml"), "--out",
           str(project / "out"), "--notebooks", str(project / "nbs"), "--no-progress"]
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"lcgee exited early: {proc.communicate()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never reached the point to kill it at")


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _cmd(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # ended meanwhile
        return ""


def _assert_all_gone(children: list[psutil.Process], timeout: float = 15) -> None:
    _, alive = psutil.wait_procs(children, timeout=timeout)
    assert not alive, [(p.pid, _cmd(p)) for p in alive]


def _kill_and_check(project: Path, proc: subprocess.Popen, sig: int, expect: set[str]) -> None:
    children = _descendants(proc.pid)
    names = " ".join(_cmd(p) for p in children)
    for word in expect:  # the point we kill at really has these children
        assert word in names, names
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    _assert_all_gone(children)
    scope = project / "tmp" / f"lcgee-{os.getuid()}"
    if sig == signal.SIGTERM:  # cleaned up on the way out
        assert proc.returncode == 143, err
        assert "Traceback" not in err and err.strip().startswith("lcgee: terminated"), err
        assert not list(scope.glob("run-*"))
    else:  # nothing could clean up: the next start sweeps the folder
        assert len(list(scope.glob("run-*"))) == 1
        assert len(procs.sweep_stale(scope)) == 1
    leftovers = [p for p in (project / "tmp").rglob("*") if p != scope]
    assert not leftovers, leftovers
    assert not list((project / "out").glob("kernel-*")), list((project / "out").iterdir())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_kill_while_a_stage_runs(tmp_path, tiny_cache, sig):
    project = _project(tmp_path, seed=3)
    proc = _start(project, tiny_cache)
    _wait_for(lambda: (project / "out" / "started").is_file(), proc)
    # the demo's file server is the token-checking one (lcgee.demo.tokens)
    _kill_and_check(project, proc, sig, {"ipykernel", "rustac", "lcgee.demo.tokens"})


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_kill_while_the_world_builds(tmp_path, sig):
    project = _project(tmp_path, seed=4)
    cache = tmp_path / "cache"
    proc = _start(project, cache)

    def rendering() -> bool:
        kids = _descendants(proc.pid)
        return any("spawn_main" in _cmd(p) for p in kids)

    _wait_for(rendering, proc)
    _kill_and_check(project, proc, sig, {"spawn_main"})
    demo = cache / "demo"
    if sig == signal.SIGKILL:  # the half world stays until the next build sweeps it
        assert len(procs.sweep_world_tmp(demo)) == 1
    assert not list(demo.glob(".*tmp*")), list(demo.iterdir())


def test_run_scope_is_removed_and_stale_ones_swept(tmp_path, monkeypatch):
    monkeypatch.setenv("LCGEE_SCOPE_BASE", str(tmp_path))
    dead = tmp_path / "run-999999-deadbeef"  # no lock file, pid not running
    dead.mkdir()
    with procs.run_scope() as folder:
        assert not dead.exists()
        assert os.environ["TMPDIR"] == str(folder)
        import tempfile

        assert Path(tempfile.mkdtemp()).parent == folder
        # A live owner's folder is not swept.
        assert procs.sweep_stale(tmp_path) == []
    assert not folder.exists()
    assert os.environ.get("TMPDIR") != str(folder)


def test_child_popen_kwargs_kill_the_child_with_its_parent(tmp_path):
    """A middle process starts a sleeper with child_popen_kwargs, then is SIGKILLed."""
    code = ("import subprocess, sys, time; from lcgee.procs import child_popen_kwargs; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
            "**child_popen_kwargs()); print(p.pid, flush=True); time.sleep(60)")
    mid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    child = psutil.Process(int(mid.stdout.readline()))
    assert child.is_running()
    mid.kill()
    mid.wait()
    _assert_all_gone([child], timeout=10)


def test_ctrl_c_prints_one_line_and_nothing_from_the_kernel(tmp_path):
    """SIGINT to the whole foreground process group, as a terminal's Ctrl-C sends it."""
    project = _project(tmp_path, seed=3)
    (project / "p.yaml").write_text(
        "name: mechanics\naoi: {bbox: [130.30, 33.50, 130.32, 33.52]}\n"
        "dates: {start: 2021-05-01, end: 2021-06-01}\nstac: {url: 'http://127.0.0.1:9/unused'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(project / "tmp")}
    cmd = [sys.executable, "-m", "lcgee.cli", "run", str(project / "p.yaml"), "--out",
           str(project / "out"), "--notebooks", str(project / "nbs"), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, process_group=0)
    _wait_for(lambda: (project / "out" / "started").is_file(), proc)
    children = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "lcgee: interrupted; finished stages are kept, rerun to resume\n", err
    _assert_all_gone(children)
    assert not [p for p in (project / "tmp").rglob("*") if p.name != f"lcgee-{os.getuid()}"]


def test_cli_main_puts_the_callers_signal_handlers_back(tmp_path):
    """lcgee handles SIGINT/SIGTERM while it runs, then hands them back to an in-process caller."""
    import signal

    from lcgee import cli

    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert cli.main(["params", "check", str(tmp_path / "missing.yaml")]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
