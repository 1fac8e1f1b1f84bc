"""Sign asset URLs when a tile is read, not when the Dask graph is built.

Planetary Computer's blobs need a SAS token on the URL, and tokens expire (about an hour). If
URLs are signed while the graph is built, a computation that outlives the token fails midway,
and building a graph needs the token service. :class:`SigningRioDriver` is odc-stac's rasterio
reader with one change: every read signs its URL afresh with the Planetary Computer SDK
(``planetary_computer.sas.get_token``), which caches a token per storage container until it is
a minute from expiry. A token already on the URL (items signed at search) is replaced.

Hosts signed: Planetary Computer's blob storage, plus any ``host:port`` listed in the
environment variable ``LCGEE_SIGNED_HOSTS`` (the loopback token service of the tests uses
it; the token endpoint is the SDK's ``PC_SDK_SAS_URL``).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import urlparse, urlunparse

__all__ = ["needs_signing", "sign_href", "SigningRioDriver", "signing_driver", "SIGNED_HOSTS_ENV",
           "strip_queries", "quiet_signed_urls_in_logs"]

SIGNED_HOSTS_ENV = "LCGEE_SIGNED_HOSTS"
_BLOB = ".blob.core.windows.net"
_PUBLIC = "ai4edatasetspublicassets.blob.core.windows.net"


def _extra_hosts() -> set[str]:
    return {h.strip() for h in os.environ.get(SIGNED_HOSTS_ENV, "").split(",") if h.strip()}


def needs_signing(href: str) -> bool:
    """Whether ``href`` is on storage that needs a SAS token."""
    parsed = urlparse(href)
    host = parsed.hostname or ""
    if host.endswith(_BLOB):
        return host != _PUBLIC
    return bool(parsed.netloc) and parsed.netloc in _extra_hosts()


def sign_href(href: str) -> str:
    """``href`` with a current token (from the SDK's cache, or fetched when about to expire)."""
    if not needs_signing(href):
        return href
    from planetary_computer.sas import get_token

    parsed = urlparse(href)
    bare = urlunparse(parsed._replace(query=""))
    container = parsed.path.lstrip("/").split("/", 1)[0]
    host = parsed.hostname or ""
    account = host.split(".", 1)[0] if host.endswith(_BLOB) else parsed.netloc.replace(":", "-")
    return str(get_token(account, container).sign(bare).href)


def _rio_driver_class() -> Any:
    from odc.loader import RioDriver

    return RioDriver


class SigningRioDriver(_rio_driver_class()):  # type: ignore[misc]  # odc-loader's reader
    """odc-stac's rasterio driver, signing each source URL at the moment it is opened."""

    def open(self, src: Any, ctx: Any) -> Any:
        from odc.loader._rio import RioReader

        if needs_signing(src.uri):
            src = src.patch(uri=sign_href(src.uri))
        return RioReader(src, ctx)


def signing_driver() -> SigningRioDriver:
    """A driver for ``odc.stac.load(..., driver=...)`` with STAC metadata parsing."""
    from odc.stac._mdtools import StacAuxReader, StacMDParser

    return SigningRioDriver(md_parser=StacMDParser({}), aux_reader=StacAuxReader())


_URL_QUERY = re.compile(r"""(\b[a-z][a-z0-9+.-]*://[^\s?'"]+)\?[^\s'"]*""", re.IGNORECASE)
_READER_LOGGERS = ("odc.loader._rio", "odc.loader", "rasterio._env")


def strip_queries(text: str) -> str:
    """``text`` with the query string of every URL in it removed (SAS tokens live there)."""
    return _URL_QUERY.sub(r"\1", text)


class _StripQueries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(strip_queries(a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str):
            record.msg = strip_queries(record.msg)
        return True


def quiet_signed_urls_in_logs() -> None:
    """Keep signed URLs out of the readers' log lines (odc-loader logs the URL it failed on)."""
    for name in _READER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _StripQueries) for f in logger.filters):
            logger.addFilter(_StripQueries())
