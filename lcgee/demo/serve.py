"""Serve the demo world on loopback: a real STAC API and a real HTTP range server.

:class:`DemoServer` starts

* a threaded HTTP server with byte-range support (``206 Partial Content``) over the world's
  files, so GDAL reads the COGs over HTTP exactly as it reads Planetary Computer's blobs, and
* ``rustac serve`` (the PyPI package ``rustac``, in-memory backend) loaded with the world's
  collections, their asset hrefs rewritten to the range server's URL.

Both listen on 127.0.0.1 only and stop when the context exits. rustac does not implement the
query/filter extensions, so lcgee's search filters cloud cover client-side as well.

With ``signed=True`` (the default) the files are served like Planetary Computer's blobs: every
GeoTIFF read needs a SAS token (:class:`lcgee.demo.tokens.TokenServer`, answering 403
without one), and while the server runs ``PC_SDK_SAS_URL`` and ``LCGEE_SIGNED_HOSTS`` point
the Planetary Computer SDK at its token endpoint -- in this process and in every child started
meanwhile (papermill kernels, Dask workers) -- so every read is signed at read time
(:mod:`lcgee.signing`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from lcgee.demo._http import free_port, serve_files, terminate, wait_http
from lcgee.demo.tokens import TokenServer
from lcgee.errors import StacError
from lcgee.procs import child_popen_kwargs, die_with_parent
from lcgee.signing import SIGNED_HOSTS_ENV

__all__ = ["DemoServer", "RangeHTTPServer", "free_port", "SAS_URL_ENV"]

SAS_URL_ENV = "PC_SDK_SAS_URL"

log = logging.getLogger(__name__)


class RangeHTTPServer:
    """A loopback HTTP server with byte-range support over one directory, in its own process.

    A separate process, not a thread: GDAL holds the GIL while it opens a remote file, so a
    server thread in the reading process would deadlock.
    """

    def __init__(self, root: Path, port: int = 0, *, startup_timeout: float = 20.0) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RangeHTTPServer:
        cmd = [sys.executable, "-m", "lcgee.demo.serve", "files", str(self.root), str(self.port),
               str(os.getpid())]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      **child_popen_kwargs())
        wait_http(f"{self.url}/", self._proc, self.startup_timeout, "demo range server",
                   accept=(200, 404))
        return self

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None


def _rustac_executable() -> str:
    candidates = [Path(sys.executable).with_name("rustac"), shutil.which("rustac")]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    raise StacError("the `rustac` command is not installed", where="demo STAC API",
                    fix="pip install rustac (it is a dependency of lcgee)")


class DemoServer:
    """The demo world behind a loopback STAC API and range server.

    Use as a context manager::

        with DemoServer(world.root) as srv:
            client = pystac_client.Client.open(srv.stac_url)
    """

    collections = ("sentinel-2-l2a", "esa-worldcover", "s2-cloud-probability")

    def __init__(self, world_root: Path, *, startup_timeout: float = 30.0, signed: bool = True,
                 token_seconds: float = 900.0) -> None:
        self.root = Path(world_root)
        self.startup_timeout = startup_timeout
        self.signed = signed
        self.token_seconds = token_seconds
        self.files: Any = None  # RangeHTTPServer, or TokenServer when signed
        self._env_before: dict[str, str | None] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log = Path(os.devnull)
        self.stac_url = ""

    def __enter__(self) -> DemoServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="lcgee-stac-")
        if self.signed:
            self.files = TokenServer(self.root, valid_seconds=self.token_seconds,
                                     imagery_only=True)
        else:
            self.files = RangeHTTPServer(self.root)
        hrefs = self._write_served_json(Path(self._tmp.name), self.files.url)
        self.files.start()
        if self.signed:
            self._point_sdk_at(self.files.sas_url, self.files.netloc)
        port = free_port()
        self.stac_url = f"http://127.0.0.1:{port}"
        cmd = [_rustac_executable(), "serve", "--addr", f"127.0.0.1:{port}", *hrefs]
        log.info("starting demo STAC API: %s", " ".join(cmd))
        self._log = Path(self._tmp.name) / "rustac.log"
        with self._log.open("wb") as log_file:  # the child keeps its own handle
            self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file,
                                          env={**os.environ, "RUST_LOG": "warn"},
                                          **child_popen_kwargs())
        self._wait_ready()

    def _write_served_json(self, tmp: Path, base_url: str) -> list[str]:
        """Collections and item collections with asset hrefs pointing at the range server."""
        hrefs: list[str] = []
        for cid in self.collections:
            src = self.root / "stac" / cid
            if not (src / "collection.json").is_file():
                raise StacError(f"the demo world has no collection {cid!r}", where=str(src),
                                fix="delete the demo cache directory so it is generated again")
            collection = json.loads((src / "collection.json").read_text())
            collection["links"] = [ln for ln in collection.get("links", [])
                                   if ln.get("rel") not in ("item", "child", "self", "root")]
            items = json.loads((src / "items.json").read_text())
            for item in items["features"]:
                item["links"] = []
                for asset in item.get("assets", {}).values():
                    href = asset["href"]
                    if "://" not in href:
                        asset["href"] = f"{base_url}/{href.lstrip('/')}"
            (tmp / f"{cid}.collection.json").write_text(json.dumps(collection))
            (tmp / f"{cid}.items.json").write_text(json.dumps(items))
            hrefs += [str(tmp / f"{cid}.collection.json"), str(tmp / f"{cid}.items.json")]
        return hrefs

    def _wait_ready(self) -> None:
        url = f"{self.stac_url}/collections/{self.collections[0]}"
        wait_http(url, self._proc, self.startup_timeout, "rustac serve", log_path=self._log)

    def _point_sdk_at(self, sas_url: str, netloc: str) -> None:
        """Sign reads of ``netloc`` with tokens from ``sas_url`` (here and in children)."""

        self._env_before = {k: os.environ.get(k) for k in (SAS_URL_ENV, SIGNED_HOSTS_ENV)}
        hosts = [h for h in os.environ.get(SIGNED_HOSTS_ENV, "").split(",") if h.strip()]
        os.environ[SAS_URL_ENV] = sas_url
        os.environ[SIGNED_HOSTS_ENV] = ",".join([*hosts, netloc])
        _forget_sdk_settings()

    def _restore_env(self) -> None:

        if self._env_before is None or self.files is None:
            return
        netloc = self.files.netloc
        if os.environ.get(SAS_URL_ENV) == self.files.sas_url:
            _set_env(SAS_URL_ENV, self._env_before[SAS_URL_ENV])
        hosts = [h for h in os.environ.get(SIGNED_HOSTS_ENV, "").split(",")
                 if h.strip() and h != netloc]
        _set_env(SIGNED_HOSTS_ENV, ",".join(hosts) or None)
        self._env_before = None
        _forget_sdk_settings()

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None
        self._restore_env()
        if self.files is not None:
            self.files.stop()
            self.files = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _forget_sdk_settings() -> None:
    """Make the Planetary Computer SDK read its settings again and drop its cached tokens."""
    import planetary_computer.sas as sas
    from planetary_computer.settings import Settings

    Settings.get.cache_clear()
    sas.TOKEN_CACHE.clear()


if __name__ == "__main__":  # python -m lcgee.demo.serve files ROOT PORT [PARENT_PID]
    if len(sys.argv) in (4, 5) and sys.argv[1] == "files":
        if len(sys.argv) == 5:
            die_with_parent(int(sys.argv[4]))
        serve_files(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: python -m lcgee.demo.serve files ROOT PORT [PARENT_PID]")
