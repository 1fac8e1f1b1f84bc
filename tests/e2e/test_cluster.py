"""The imagery stages on a real multi-process Dask cluster (``dask scheduler`` + two
``dask worker`` processes on loopback, started as a user would) give the local run's outputs.

The cluster is reached through ``dask.address`` and :meth:`lcgee.stage.Stage.dask_client`,
the way the notebooks connect; workers read the imagery over HTTP from the small world's
range server and the masks written by the mask stage from the run directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio

from lcgee import features, masks
from lcgee.demo.serve import free_port
from lcgee.params import load_params
from lcgee.scenes import scene_table
from lcgee.stage import Stage

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, small_server):
    """``tcp://`` address of a scheduler with two single-thread worker processes."""
    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
            stderr=(logs / "scheduler.log").open("wb")))
        for i in range(2):
            procs.append(subprocess.Popen(
                [str(DASK), "worker", address, "--nworkers", "1", "--nthreads", "1",
                 "--memory-limit", "2GiB", "--no-dashboard", "--name", f"w{i}",
                 "--local-directory", str(logs / f"w{i}")], env=env, stdout=subprocess.DEVNULL,
                stderr=(logs / f"worker{i}.log").open("wb")))
        _wait_for_workers(address, 2, procs, logs)
        yield address, procs
    finally:
        _stop(procs)


def _wait_for_workers(address: str, n: int, procs: list[subprocess.Popen], logs: Path) -> None:
    from distributed import Client

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            text = "\n".join(f.read_text()[-800:] for f in logs.glob("*.log"))
            raise RuntimeError(f"a dask process exited:\n{text}")
        try:
            with Client(address, timeout=5) as c:
                c.wait_for_workers(n, timeout=10)
                return
        except (OSError, TimeoutError):
            time.sleep(1)
    raise RuntimeError("the Dask cluster did not start in 120 s")


def _run(items, grid, params, client, out: Path) -> None:
    got = masks.scene_masks(items, grid, params.clouds, client=client, chunk=params.load.chunk)
    masks.write_masks(got, grid, out / "masks", key=masks.mask_key(params.clouds, grid),
                      progress=False)
    result = features.build_composite(items, scene_table(items), grid, params, client=client,
                                      masks_dir=out / "masks")
    features.write_outputs(result, grid, out)


def _pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.mark.slow
def test_stages_on_a_multiprocess_cluster_equal_the_local_run(cluster, small_search,
                                                              small_world, small_server,
                                                              tmp_path):
    address, procs = cluster
    client, items = small_search
    grid = small_world.grid
    params = load_params(ROOT / "params/demo.yaml",
                         {"load.chunk": 128, "dask.address": address,
                          "clouds.source": "local"})  # what `auto` resolves to on the demo
    local = tmp_path / "local"
    with dask.config.set(scheduler="threads", num_workers=2):
        _run(items, grid, params, client, local)

    stage = Stage(params=params, params_file=ROOT / "params/demo.yaml",
                  run_dir=tmp_path / "remote", stac_url=small_server.stac_url)
    try:
        from distributed import get_task_stream

        dask_client = stage.dask_client()  # dask.address: connects, starts nothing
        assert dask_client.scheduler.address == address
        assert len(dask_client.scheduler_info()["workers"]) == 2
        with get_task_stream(dask_client) as stream:
            _run(items, grid, params, client, tmp_path / "remote")
        used = {t["worker"] for t in stream.data}
        assert len(used) == 2, f"tasks ran on {used}"
        assert any("lcgee-read" in str(t["key"]) for t in stream.data)
    finally:
        stage.close()
    assert all(p.poll() is None for p in procs), "the cluster outlives the client"
    remote = tmp_path / "remote"
    names = sorted(p.name for p in (local / "masks").glob("*.tif"))
    assert len(names) == len(items)
    for name in names:
        np.testing.assert_array_equal(_pixels(remote / "masks" / name),
                                      _pixels(local / "masks" / name), err_msg=name)
    for name in ("features.tif", "count.tif"):
        a, b = _pixels(remote / name), _pixels(local / name)
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
