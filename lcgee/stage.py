"""What a notebook stage needs to start: its params, run directory, grid and data endpoints.

Every notebook opens with::

    stage = lcgee.open_stage(params_file, run_dir, stac_url)

The runner passes the resolved params file, the run directory and (for the demo) the URL of
the loopback STAC API it started. Run standalone, a notebook on the demo params starts its own
demo server, so each notebook also works on its own.
"""

from __future__ import annotations

import atexit
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcgee.grid import Grid
from lcgee.layout import RunLayout, Window, region_grid, region_window, region_windows
from lcgee.params import Params, load_params
from lcgee.rungrid import area_grid, build_grid  # re-exported: lcgee.stage.build_grid stays

if TYPE_CHECKING:
    from distributed import Client as DaskClient

__all__ = ["Stage", "open_stage", "build_grid", "area_grid"]

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """The context of one notebook stage."""

    params: Params
    params_file: Path
    run_dir: Path
    stac_url: str
    world: Any = None  #: the demo world (``lcgee.demo.world.World``) on demo runs
    _servers: list[Any] = field(default_factory=list, repr=False)
    _client: Any = field(default=None, repr=False)

    @functools.cached_property
    def grid(self) -> Grid:
        return build_grid(self.params, self.params_file.parent)

    @functools.cached_property
    def layout(self) -> RunLayout:
        """Every artifact path of the run directory."""
        return RunLayout(self.run_dir)

    def region_grid(self, name: str) -> Grid:
        """The sub-grid of a named region, pixel-aligned with :attr:`grid`."""
        return region_grid(self.params, self.grid, name, self.params_file.parent)

    def window(self, name: str) -> Window:
        """Where region ``name`` sits in :attr:`grid` (slices arrays with ``.cut``)."""
        return region_window(self.params, self.grid, name, self.params_file.parent)

    def windows(self, role: str) -> list[Window]:
        """The windows of the regions with ``role`` (``train`` / ``predict``)."""
        return region_windows(self.params, self.grid, role, self.params_file.parent)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (parents created)."""
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def folder(self, *parts: str) -> Path:
        """A directory inside the run directory (created)."""
        p = self.run_dir.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def dask_client(self) -> DaskClient:
        """A Dask client: the scheduler at ``dask.address``, or a local cluster per params."""
        from distributed import Client, LocalCluster

        if self._client is not None:
            return self._client
        cfg = self.params.dask
        if cfg.address:
            self._client = Client(cfg.address)
        else:
            cluster = LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                                   memory_limit=cfg.memory_limit, dashboard_address=None,
                                   processes=cfg.n_workers > 1)
            self._client = Client(cluster)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for srv in self._servers:
            srv.stop()
        self._servers.clear()


def open_stage(params_file: str | Path, run_dir: str | Path, stac_url: str | None = None,
               overrides: dict[str, Any] | None = None) -> Stage:
    """Load params and connect a notebook stage to its data (starting the demo if needed)."""
    params_file = Path(params_file)
    params = load_params(params_file, overrides or {})
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stage = Stage(params=params, params_file=params_file, run_dir=run_dir,
                  stac_url=stac_url or params.stac.url)
    if params.is_demo:
        from lcgee.demo.world import WorldSpec, build_world  # demo runs only (heavy)

        stage.world = build_world(WorldSpec(seed=params.demo.seed, size=params.demo.size))
        if not stac_url:
            from lcgee.demo.serve import DemoServer  # demo runs only (heavy)

            server = DemoServer(stage.world.root)
            server.start()
            stage._servers.append(server)
            stage.stac_url = server.stac_url
    atexit.register(stage.close)
    return stage
