"""Process hygiene: every child lcgee starts dies with it, and its temp files live in one place.

* :func:`child_popen_kwargs` gives ``subprocess.Popen`` arguments that start a child in its own
  process group (so a terminal's Ctrl-C reaches only lcgee, which then stops its children in
  order) and arm the Linux parent-death signal before ``exec`` (so a ``kill -9`` of lcgee still
  ends the child). :func:`die_with_parent` does the same from inside a Python child we wrote
  (the range server, the demo-world workers) and adds a watchdog thread on the parent pid for
  systems without ``prctl``.
* :func:`run_scope` makes one run-scoped temp folder, points ``TMPDIR``, :mod:`tempfile` and
  Jupyter's runtime directory (kernel connection files, IPC sockets) at it, and removes it at
  exit. A folder whose owner died without cleaning up is swept by the next :func:`run_scope`:
  each folder holds a ``flock``-ed lock file, so "owner alive" is asked of the kernel, not
  guessed from a pid that may have been reused.
* :func:`handle_signals` turns SIGTERM into an exception (so ``finally`` blocks stop servers
  and remove temp folders) and makes SIGINT silence library logging before it unwinds (the
  one line the CLI prints is the only output of a Ctrl-C).
* :func:`kernel_manager_class` is the Jupyter kernel manager the runner uses: IPC transport
  (no TCP port, no "running over TCP without encryption" warning), parent-death signal armed,
  kernel output in the run-scoped folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Terminated", "arm_parent_death", "child_popen_kwargs", "die_with_parent",
           "handle_signals", "kernel_manager_class", "run_scope", "scope_base", "sweep_stale",
           "sweep_world_tmp"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Resolved once here: the child calls it between fork and exec, where it must not import or
# allocate more than necessary.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_LOCK = ".lock"
_WORLD_TMP = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")


class Terminated(KeyboardInterrupt):
    """lcgee received SIGTERM; raised so that cleanup runs as on Ctrl-C."""


# ---- children die with their parent --------------------------------------------------------

def arm_parent_death(parent_pid: int | None = None, sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    ``parent_pid`` closes the race in which the parent died before the signal was armed: the
    process then exits at once. Returns whether the signal could be armed.
    """
    armed = _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    return armed


def child_popen_kwargs() -> dict[str, Any]:
    """``Popen`` arguments for a child that must not outlive lcgee.

    The parent-death signal follows the *thread* that starts the child: start children from a
    thread that lives as long as they should (the main thread, in lcgee).
    """
    return {"start_new_session": True,
            "preexec_fn": functools.partial(arm_parent_death, os.getpid())}


def die_with_parent(parent_pid: int, poll: float = 1.0) -> None:
    """Called inside a Python child: exit when ``parent_pid`` is no longer the parent."""
    arm_parent_death(parent_pid)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="lcgee-parent-watch", daemon=True).start()


# ---- one run-scoped temp folder --------------------------------------------------------------

def scope_base() -> Path:
    """Where run-scoped folders live: ``<system temp>/lcgee-<uid>``."""
    base = os.environ.get("LCGEE_SCOPE_BASE")
    if base:
        return Path(base)
    return Path(tempfile.gettempdir()) / f"lcgee-{os.getuid()}"


def _owner_alive(folder: Path) -> bool:
    import fcntl

    lock = folder / _LOCK
    if not lock.is_file():  # crashed between mkdir and lock: judge by the pid in the name
        match = re.match(r"run-(\d+)-", folder.name)
        return bool(match) and _pid_alive(int(match.group(1)))
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(base: Path | None = None) -> list[Path]:
    """Remove run-scoped folders whose owner is gone; return them."""
    base = base or scope_base()
    removed: list[Path] = []
    for folder in sorted(base.glob("run-*")) if base.is_dir() else []:
        if folder.is_dir() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d stale run folder(s) under %s", len(removed), base)
    return removed


def sweep_world_tmp(cache: Path) -> list[Path]:
    """Remove half-built demo worlds (``.<name>.tmp-<pid>-<hex>``) whose builder is gone."""
    removed: list[Path] = []
    for folder in cache.glob(".*.tmp-*") if cache.is_dir() else []:
        match = _WORLD_TMP.match(folder.name)
        if match and folder.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def run_scope() -> Iterator[Path]:
    """A temp folder for everything this run and its children create; removed at exit."""
    import fcntl

    base = scope_base()
    sweep_stale(base)
    folder = base / f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    lock = (folder / _LOCK).open("w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    saved_env = {k: os.environ.get(k) for k in ("TMPDIR", "JUPYTER_RUNTIME_DIR")}
    saved_tempdir = tempfile.tempdir
    os.environ["TMPDIR"] = str(folder)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(folder / "jupyter")
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)
        lock.close()


# ---- signals ------------------------------------------------------------------------------

def _on_signal(signum: int, frame: Any) -> None:
    logging.disable(logging.CRITICAL)  # libraries' shutdown noise is not the user's business
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def handle_signals() -> Callable[[], None]:
    """SIGINT and SIGTERM unwind the main thread quietly (cleanup runs, no library logs).

    Returns the function that puts the previous handlers back (a caller of ``lcgee.cli.main``
    in the same process, e.g. a test runner, keeps its own handling afterwards).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _on_signal)
    if previous[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)

    return restore


# ---- Jupyter kernels ------------------------------------------------------------------------

def _ipc_prefix() -> str:
    """Where a kernel's IPC sockets go: the run-scoped folder, if the path fits a socket.

    Unix socket paths are limited to ~107 bytes; under a deep temp folder Linux's abstract
    namespace (``@name``: no file at all, gone when the sockets close) is used instead.
    """
    tag = uuid.uuid4().hex[:8]
    path = str(Path(tempfile.gettempdir()) / f"kernel-{tag}-ipc")
    if len(path.encode()) > 96 and sys.platform.startswith("linux"):
        return f"@lcgee-{os.getpid()}-{tag}"
    return path


@functools.cache
def kernel_manager_class() -> type:
    """An ``AsyncKernelManager`` over IPC whose kernel dies with lcgee and writes to a file."""
    from jupyter_client.manager import AsyncKernelManager

    class LcgeeKernelManager(AsyncKernelManager):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)
            if self.transport == "ipc" and not os.path.isabs(self.ip):
                self.ip = _ipc_prefix()  # the default is relative to the output folder

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw.update(child_popen_kwargs())
            log_file = Path(tempfile.gettempdir()) / f"kernel-{uuid.uuid4().hex[:8]}.log"
            with log_file.open("ab") as out:  # the kernel keeps its own handle
                kw.setdefault("stdout", out)
                kw.setdefault("stderr", out)
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return LcgeeKernelManager
