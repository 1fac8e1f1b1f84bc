"""The loopback HTTP pieces of the demo's servers: a byte-range file handler, a free port,
waiting for a server process to answer and stopping it.

:mod:`lcgee.demo.serve` (the range server of the unsigned demo) and :mod:`lcgee.demo.tokens`
(the SAS token server, a range handler that wants a token) both build on them; they live here
so that neither server module imports the other's internals.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lcgee.errors import StacError

__all__ = ["RangeHandler", "free_port", "serve_files", "wait_http", "terminate"]

log = logging.getLogger(__name__)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single byte ranges (what GDAL's /vsicurl/ asks for)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("range server: " + format, *args)

    def send_head(self):  # type: ignore[no-untyped-def]  # stdlib signature
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return None
        size = path.stat().st_size
        header = self.headers.get("Range")
        match = _RANGE.match(header.strip()) if header else None
        start, end = 0, size - 1
        if match:
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last) if last else size - 1, size - 1)
            elif last:
                start = max(0, size - int(last))
            if start > end or start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f = path.open("rb")
        f.seek(start)
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):  # type: ignore[no-untyped-def]  # stdlib signature
        remaining = getattr(self, "_remaining", None)
        while remaining is None or remaining > 0:
            chunk = source.read(65536 if remaining is None else min(65536, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)


def serve_files(root: Path, port: int) -> None:
    """Serve ``root`` on 127.0.0.1:``port`` with byte ranges until killed."""
    handler = partial(RangeHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float, what: str,
               accept: tuple[int, ...] = (200,), log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = log_path.read_text(errors="replace")[-500:] if log_path else ""
            raise StacError(f"{what} exited with code {proc.returncode} {err}".strip(),
                            where=url)
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in accept:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in accept:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    terminate(proc)
    raise StacError(f"{what} did not answer within {timeout:.0f} s", where=url,
                    fix="check that nothing else uses the port and retry")


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
