"""A loopback stand-in for Planetary Computer's SAS token service and token-checking storage.

:class:`TokenServer` runs, in its own process on 127.0.0.1,

* ``GET /api/sas/v1/token/<account>/<container>`` answering like Planetary Computer
  (``{"msft:expiry": ..., "token": "st=...&se=...&sp=rl&sig=..."}``), and
* byte-range file serving under ``/<container>/...`` that answers 403 unless the URL carries a
  token issued by this service that has not expired yet,
* ``GET /stats``: how many tokens were issued and requests refused.

Tokens are valid ``valid_seconds``; the expiry they announce is ``valid_seconds + 60`` s away,
because the Planetary Computer SDK renews a cached token when less than 60 s remain: the SDK
then renews exactly when the storage starts refusing, as it does with real hour-long tokens.
Point the SDK at it with ``PC_SDK_SAS_URL`` and list its ``host:port`` in
``LCGEE_SIGNED_HOSTS`` (:mod:`lcgee.signing`). With ``imagery_only=True`` (the demo world's
server, :class:`lcgee.demo.serve.DemoServer`) only GeoTIFFs need a token; previews and
metadata files stay open, like Planetary Computer's thumbnails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from lcgee.demo._http import RangeHandler, free_port, terminate, wait_http
from lcgee.procs import child_popen_kwargs, die_with_parent
from lcgee.signing import strip_queries

__all__ = ["TokenServer"]

_SECRET = b"lcgee-loopback-only"
_SDK_MARGIN = 60.0
_IMAGERY = (".tif", ".tiff")


def _sig(expiry: str) -> str:
    return hmac.new(_SECRET, expiry.encode(), hashlib.sha256).hexdigest()[:32]


class _Stats:
    lock = threading.Lock()
    tokens = 0
    refused = 0


class _TokenHandler(RangeHandler):
    valid_seconds = 60.0
    imagery_only = False

    def log_message(self, format: str, *args: object) -> None:
        super().log_message(format, *(strip_queries(a) if isinstance(a, str) else a
                                      for a in args))

    def _guarded(self, path: str) -> bool:
        return not self.imagery_only or path.lower().endswith(_IMAGERY)

    def do_GET(self) -> None:  # stdlib name
        url = urlparse(self.path)
        if url.path.startswith("/api/sas/v1/token/"):
            return self._token()
        if url.path == "/stats":
            return self._json({"tokens": _Stats.tokens, "refused": _Stats.refused})
        if self._guarded(url.path) and not self._token_ok(parse_qs(url.query)):
            with _Stats.lock:
                _Stats.refused += 1
            self.send_error(403, "token missing or expired")
            return None
        return super().do_GET()

    def do_HEAD(self) -> None:  # stdlib name
        url = urlparse(self.path)
        if self._guarded(url.path) and not self._token_ok(parse_qs(url.query)):
            self.send_error(403, "token missing or expired")
            return None
        return super().do_HEAD()

    def _token_ok(self, qs: dict[str, list[str]]) -> bool:
        se, sig = qs.get("se", [""])[0], qs.get("sig", [""])[0]
        if not se or not hmac.compare_digest(sig, _sig(se)):
            return False
        return float(se) >= time.time()

    def _token(self) -> None:
        now = time.time()
        se = f"{now + self.valid_seconds:.3f}"
        expiry = datetime.now(UTC) + timedelta(seconds=self.valid_seconds + _SDK_MARGIN)
        with _Stats.lock:
            _Stats.tokens += 1
        self._json({"msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "token": f"st={now:.0f}&se={se}&sp=rl&sig={_sig(se)}"})

    def _json(self, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_tokens(root: Path, port: int, valid_seconds: float, imagery_only: bool = False) -> None:
    """Serve tokens and token-checked files from ``root`` until killed."""
    handler = partial(type("H", (_TokenHandler,), {"valid_seconds": valid_seconds,
                                                   "imagery_only": imagery_only}),
                      directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


class TokenServer:
    """The token service and token-checking storage over ``root``, in a child process."""

    def __init__(self, root: Path, *, valid_seconds: float = 60.0, port: int = 0,
                 imagery_only: bool = False) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.netloc = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.netloc}"
        self.sas_url = f"{self.url}/api/sas/v1/token"
        self.valid_seconds = valid_seconds
        self.imagery_only = imagery_only
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TokenServer:
        cmd = [sys.executable, "-m", "lcgee.demo.tokens", str(self.root), str(self.port),
               str(self.valid_seconds), "imagery" if self.imagery_only else "all",
               str(os.getpid())]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      **child_popen_kwargs())
        wait_http(f"{self.url}/stats", self._proc, 20.0, "token server")
        return self

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as resp:
            return json.loads(resp.read())


if __name__ == "__main__":  # python -m lcgee.demo.tokens ROOT PORT SECONDS [imagery|all [PID]]
    if len(sys.argv) not in (4, 5, 6) or sys.argv[4:5] not in ([], ["imagery"], ["all"]):
        sys.exit("usage: python -m lcgee.demo.tokens ROOT PORT VALID_SECONDS [imagery|all "
                 "[PARENT_PID]]")
    if len(sys.argv) == 6:
        die_with_parent(int(sys.argv[5]))
    serve_tokens(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                 imagery_only=sys.argv[4:5] == ["imagery"])
