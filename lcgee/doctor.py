"""``lcgee doctor``: check in seconds what a real run will need, before a long run starts.

Checks, in order: the params, the STAC API (reachable, the collection there), one asset's COG
header read through a signed URL (as the loader will), the cloud source ``auto`` would pick,
WorldCover labels, and Earth Engine (credentials and project). Each check says what works,
what does not and how to fix it. Nothing is downloaded beyond one COG header.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lcgee import search
from lcgee.cloudsource import earth_engine_ready, resolve_source
from lcgee.errors import LcgeeError
from lcgee.gee.session import AUTH_HELP, init_live
from lcgee.params import Params
from lcgee.signing import needs_signing, sign_href

__all__ = ["Check", "run_checks", "format_checks"]

_TIMEOUT = 15.0


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` is ``ok``, ``warn`` or ``fail``."""

    name: str
    status: str
    detail: str
    fix: str = ""
    seconds: float = 0.0


def _timed(name: str, fn: Callable[[], tuple[str, str, str]]) -> Check:
    start = time.monotonic()
    try:
        status, detail, fix = fn()
    except LcgeeError as exc:
        status, detail, fix = "fail", exc.what, exc.fix or ""
    except Exception as exc:  # a doctor reports, it does not crash
        status, detail, fix = "fail", f"{type(exc).__name__}: {exc}", "rerun with --debug"
    return Check(name, status, detail, fix, time.monotonic() - start)


def run_checks(params: Params, *, stac_url: str | None = None, earth_engine_live: bool = True
               ) -> list[Check]:
    """Every check for ``params``; ``stac_url`` overrides
    ``stac.url`` (the demo's loopback API, tests)."""
    url = stac_url or params.stac.url
    checks: list[Check] = []
    state: dict[str, Any] = {}

    def stac() -> tuple[str, str, str]:
        if url == "demo":
            return ("ok", "the demo world is served on loopback when the run starts", "")
        client = search.open_client(url, sign=params.stac.sign, retries=1, timeout=_TIMEOUT)
        state["client"] = client
        try:
            client.get_collection(params.stac.collection)
        except Exception as exc:
            return ("fail", f"{url} answers, but has no collection {params.stac.collection!r} "
                    f"({type(exc).__name__})", "check stac.collection (sentinel-2-l2a)")
        return ("ok", f"{url} answers; collection {params.stac.collection} found", "")

    checks.append(_timed("STAC API", stac))
    client = state.get("client")
    if client is not None:
        checks.append(_timed("signed COG header", lambda: _cog_header(client, params)))
        checks.append(_timed("cloud source", lambda: _cloud_source(client, params)))
    checks.append(_timed("Earth Engine", lambda: _earth_engine(params, earth_engine_live)))
    return checks


def _cog_header(client: Any, params: Params) -> tuple[str, str, str]:
    import rasterio

    bbox = params.aoi.lonlat_bbox()
    found = list(client.search(collections=[params.stac.collection], bbox=list(bbox),
                               datetime=params.dates.interval, max_items=1).items())
    if not found:
        return ("fail", f"no {params.stac.collection} item over the AOI in "
                f"{params.dates.interval}", "check `aoi` and `dates`")
    item = found[0]
    band = next((b for b in params.bands if b in item.assets), None)
    if band is None:
        return ("fail", f"item {item.id} has none of the bands {list(params.bands)}",
                "choose `bands` from the item's assets")
    href = item.assets[band].href
    signed = sign_href(href)
    env = {"GDAL_HTTP_TIMEOUT": str(int(_TIMEOUT)), "GDAL_HTTP_MAX_RETRY": "1",
           "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    with rasterio.Env(**env), rasterio.open(signed) as src:
        shape, crs = (src.height, src.width), src.crs
    how = "signed at read time" if needs_signing(href) else "no signing needed"
    return ("ok", f"{item.id} {band}: {shape[0]} x {shape[1]} px, {crs} ({how})", "")


def _cloud_source(client: Any, params: Params) -> tuple[str, str, str]:
    choice = resolve_source(params, client)
    if choice.source == "scl" and params.clouds.source == "auto":
        return ("warn", choice.reason, "set ee.project and authenticate for s2cloudless masks")
    return ("ok", f"{choice.source}: {choice.reason}", "")


def _earth_engine(params: Params, live: bool) -> tuple[str, str, str]:
    ready, why = earth_engine_ready(params.ee.project)
    if not ready:
        needed = params.clouds.source == "gee"
        return ("fail" if needed else "warn",
                f"{why}; needed to classify in Earth Engine and for clouds.source gee",
                AUTH_HELP)
    if not live:
        return ("ok", why + " (not contacted)", "")
    init_live(params.ee.project)
    return ("ok", f"{why}; ee.Initialize succeeded", "")


def format_checks(checks: list[Check]) -> str:
    """The report, one line per check plus its fix."""
    marks = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"{marks[c.status]} {c.name:<18} {c.detail} ({c.seconds:.1f} s)")
        if c.fix and c.status != "ok":
            lines.append(f"     {'':<18} fix: {c.fix}")
    bad = sum(c.status == "fail" for c in checks)
    lines.append("ready for a real run" if not bad else f"{bad} problem(s) to fix before a run")
    return "\n".join(lines)
