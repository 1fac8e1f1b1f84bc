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
           "strip_queries", "quiet_signed_urls_in_logs", "stackstac_reader"]

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


_STACKSTAC_READER: Any = None


def _stackstac_reader_class() -> Any:
    """stackstac's reader, signing its URL each time it opens the file (built on first use:
    stackstac is an optional extra)."""
    global _STACKSTAC_READER
    if _STACKSTAC_READER is None:
        import warnings

        from stackstac.nodata_reader import NodataReader, exception_matches
        from stackstac.rio_reader import AutoParallelRioReader

        def _open(self: Any) -> Any:
            # stackstac quotes the URL in errors and warnings: sign it for the open only, and
            # report failures with the query (the token) stripped
            bare, as_nodata = self.url, self.errors_as_nodata
            self.url, self.errors_as_nodata = sign_href(bare), ()
            try:
                return AutoParallelRioReader._open(self)
            except RuntimeError as exc:
                msg = strip_queries(str(exc))
                if exc.__cause__ is not None and exception_matches(exc.__cause__, as_nodata):
                    warnings.warn(msg, stacklevel=2)
                    return NodataReader(dtype=self.dtype, fill_value=self.fill_value)
                raise RuntimeError(msg) from None
            finally:
                self.url, self.errors_as_nodata = bare, as_nodata

        def read(self: Any, window: Any, **kwargs: Any) -> Any:
            try:
                return AutoParallelRioReader.read(self, window, **kwargs)
            except RuntimeError as exc:
                raise RuntimeError(strip_queries(str(exc))) from None

        _STACKSTAC_READER = type("SigningStackstacReader", (AutoParallelRioReader,),
                                 {"_open": _open, "read": read, "__module__": __name__,
                                  "__doc__": "stackstac's reader, signing URLs when opened."})
    return _STACKSTAC_READER


def stackstac_reader() -> Any:
    """A ``reader=`` for ``stackstac.stack`` that signs each URL when the file is opened."""
    return _stackstac_reader_class()


def __getattr__(name: str) -> Any:  # module attribute, so pickles find the class by name
    if name == "SigningStackstacReader":
        return _stackstac_reader_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
