"""Run the notebook suite with papermill into ``outputs/<run-name>/``.

Each notebook in ``notebooks/`` (jupytext py:percent files, executed in name order) is one
stage. A stage's result is cached under a key hashed from its notebook, the resolved params,
the lcgee source and the previous stage's key, so a rerun after a crash or a kill skips the
stages that finished and redoes the rest. Executed notebooks and ``run.json`` are written
atomically and with every secret redacted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lcgee import files as _io
from lcgee.errors import StageError
from lcgee.layout import RunLayout
from lcgee.params import Params, load_params
from lcgee.procs import kernel_manager_class, run_scope
from lcgee.secrets import redact, secret_values

__all__ = ["run", "RunResult", "StageResult", "notebook_paths", "NOTEBOOK_PARAMETERS",
           "default_notebooks_dir", "missing_extra", "OPTIONAL_STAGES", "resolve_params",
           "PACKAGED_NOTEBOOKS", "not_applicable", "demo_endpoint"]

log = logging.getLogger(__name__)

#: The names every notebook's ``parameters`` cell defines (a test checks each notebook).
NOTEBOOK_PARAMETERS = ("params_file", "run_dir", "stac_url")
_PACKAGES = ("lcgee", "numpy", "xarray", "dask", "odc-stac", "stackstac", "pystac-client",
             "rasterio", "lightgbm", "scikit-learn", "earthengine-api", "papermill", "rustac")


@dataclass
class StageResult:
    name: str
    key: str
    seconds: float
    cached: bool
    notebook: str


@dataclass
class RunResult:
    run_dir: Path
    params: Params
    stages: list[StageResult] = field(default_factory=list)


#: Where the wheel carries the stage notebooks and the demo params (see setup.py).
PACKAGED_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
_CHECKOUT = Path(__file__).resolve().parents[1]


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout lcgee runs from, else the copy installed with the
    package, else ``notebooks/`` of the working directory."""
    for candidate in (_CHECKOUT / "notebooks", PACKAGED_NOTEBOOKS):
        if any(candidate.glob("[0-9][0-9]_*.py")):
            return candidate
    return Path.cwd() / "notebooks"


def resolve_params(params_file: str | Path) -> Path:
    """A params file path; the bare name ``demo`` (when no such file exists) means the demo
    params of the checkout (``params/demo.yaml``) or, installed, the copy shipped with lcgee."""
    path = Path(params_file)
    if str(params_file) != "demo" or path.exists():
        return path
    for candidate in (_CHECKOUT / "params" / "demo.yaml", PACKAGED_NOTEBOOKS / "params" / "demo.yaml"):
        if candidate.is_file():
            return candidate
    return path


def notebook_paths(notebooks_dir: Path | None = None) -> list[Path]:
    """The stage notebooks, in execution order."""
    nb_dir = notebooks_dir or default_notebooks_dir()
    paths = sorted(p for p in nb_dir.glob("[0-9][0-9]_*.py"))
    if not paths:
        raise StageError(f"no notebooks (NN_name.py) found in {nb_dir}", where="runner",
                         fix="reinstall lcgee (the wheel ships them), run from the checkout, "
                         "or pass --notebooks DIR")
    return paths


def _source_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _stage_key(nb_text: str, params: Params, source: str, previous: str) -> str:
    h = hashlib.sha256()
    for part in (nb_text, params.digest(), source, previous):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def demo_endpoint(params: Params, progress: bool) -> Iterator[str | None]:
    """The STAC URL the notebooks use: the demo's loopback server (built and served while the
    block runs), or None (the params' ``stac.url`` decides)."""
    if not params.is_demo:
        yield None
        return
    from lcgee.demo.serve import DemoServer  # demo runs only (heavy)
    from lcgee.demo.world import WorldSpec, build_world  # demo runs only (heavy)

    world = build_world(WorldSpec(seed=params.demo.seed, size=params.demo.size),
                        progress=progress)
    with DemoServer(world.root) as server:
        yield server.stac_url


#: Stages that need an optional extra: notebook stem -> (module, extra).
OPTIONAL_STAGES = {"09_water": ("jax", "water")}


def missing_extra(nb: Path) -> str | None:
    """Why ``nb`` cannot run here (its optional extra is not installed), or None."""
    import importlib.util

    module, extra = OPTIONAL_STAGES.get(nb.stem, (None, None))
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return (f"needs the optional extra '{extra}' ({module} is not installed); "
            f"pip install -e '.[{extra}]' to run it")


def not_applicable(nb: Path, params: Params) -> str | None:
    """Why ``nb`` does not apply to this run's params, or None."""
    if nb.stem == "09_water" and params.composite.method == "monthly":
        return ("the water network reads one composite's bands (water.bands) and this run's "
                "features are per period (composite.method: monthly); use median or best to "
                "map water")
    return None


def run(params_file: str | Path, overrides: list[str] | None = None, *,
        out_dir: str | Path | None = None, notebooks_dir: Path | None = None,
        force: bool = False, progress: bool = True) -> RunResult:
    """Validate params, then execute every stage notebook that is not already done."""
    params_file = resolve_params(params_file)
    params = load_params(params_file, overrides or [])  # fails before any work
    notebooks = notebook_paths(notebooks_dir)
    run_dir = Path(out_dir) if out_dir else Path("outputs") / params.name
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = RunLayout(run_dir).params
    _io.write_text(resolved, yaml.safe_dump(params.to_plain(), sort_keys=False))
    result = RunResult(run_dir=run_dir, params=params)
    record = _start_record(params, params_file, overrides)
    source, previous = _source_digest(), ""
    with run_scope(), demo_endpoint(params, progress) as stac_url:
        for nb in _progress(notebooks, progress):
            missing = missing_extra(nb) or not_applicable(nb, params)
            if missing:
                log.warning("stage %s skipped: %s", nb.stem, missing)
                record.setdefault("skipped", {})[nb.stem] = missing
                continue
            text = nb.read_text()
            key = _stage_key(text, params, source, previous)
            stage = _run_stage(nb, text, key, run_dir, resolved, stac_url, force, progress)
            result.stages.append(stage)
            record["stages"].append(stage.__dict__)
            _write_record(run_dir, record)
            previous = key
    record["finished"] = dt.datetime.now(dt.UTC).isoformat()
    _write_record(run_dir, record)
    return result


def _progress(items: list[Path], enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="lcgee stages", unit="stage")


def _start_record(params: Params, params_file: str | Path, overrides: list[str] | None) -> dict:
    return {
        "name": params.name,
        "params_file": str(params_file),
        "overrides": list(overrides or []),
        "params": params.to_plain(),
        "params_digest": params.digest(),
        "lcgee_commit": _git_commit(),
        "versions": _versions(),
        "started": dt.datetime.now(dt.UTC).isoformat(),
        "finished": None,
        "stages": [],
    }


def _write_record(run_dir: Path, record: dict) -> None:
    _io.write_text(RunLayout(run_dir).run_record, redact(json.dumps(record, indent=2, default=str)) + "\n")


def _run_stage(nb: Path, text: str, key: str, run_dir: Path, resolved: Path,
               stac_url: str | None, force: bool, progress: bool) -> StageResult:
    name = nb.stem
    out_nb, marker = RunLayout(run_dir).notebook(name), RunLayout(run_dir).stage_marker(name)
    if not force and marker.is_file() and out_nb.is_file():
        done = json.loads(marker.read_text())
        if done.get("key") == key:
            log.info("stage %s: cached (key %s)", name, key[:12])
            return StageResult(name, key, done.get("seconds", 0.0), True, str(out_nb))
    t0 = time.perf_counter()
    _execute(nb, text, out_nb, run_dir, resolved, stac_url, progress)
    seconds = round(time.perf_counter() - t0, 2)
    _io.write_json(marker, {"key": key, "seconds": seconds,
                            "finished": dt.datetime.now(dt.UTC).isoformat()})
    return StageResult(name, key, seconds, False, str(out_nb))


def _execute(nb: Path, text: str, out_nb: Path, run_dir: Path, resolved: Path,
             stac_url: str | None, progress: bool) -> None:
    import jupytext
    import nbformat
    import papermill as pm

    notebook = jupytext.reads(text, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    parameters = {"params_file": str(resolved.resolve()), "run_dir": str(run_dir.resolve()),
                  "stac_url": stac_url}
    secrets = secret_values()
    src = run_dir / f".{nb.stem}.input.ipynb"
    partial = run_dir / f".{nb.stem}.partial.ipynb"
    nbformat.write(notebook, src)
    try:
        pm.execute_notebook(str(src), str(partial), parameters=parameters,
                            cwd=str(run_dir.resolve()), kernel_name="python3",
                            kernel_manager_class=kernel_manager_class(),
                            progress_bar={"desc": nb.stem, "leave": False} if progress else False)
    except pm.PapermillExecutionError as exc:
        _publish(partial, out_nb, secrets)
        raise StageError(_failure_paragraph(nb.stem, exc, out_nb), where=f"stage {nb.stem}",
                         fix="correct the cause above and rerun; finished stages are kept"
                         ) from exc
    finally:
        src.unlink(missing_ok=True)
    _publish(partial, out_nb, secrets)


def _publish(partial: Path, out_nb: Path, secrets: list[str]) -> None:
    """Redact secrets from an executed notebook and move it into place atomically."""
    if not partial.is_file():
        return
    _io.write_text(out_nb, redact(partial.read_text(encoding="utf-8"), secrets))
    partial.unlink()


def _failure_paragraph(stage: str, exc: Any, out_nb: Path) -> str:
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    first = next((ln for ln in source if ln.strip() and not ln.startswith("#")), "")
    return (f"the notebook {stage} failed in cell {exc.cell_index} (`{first[:80]}`) with "
            f"{exc.ename}: {str(exc.evalue).rstrip('.')}. The executed notebook, with the error in place, is "
            f"{out_nb}")
