"""Unreadable imagery: name the file, the scene and the fix, or drop the scene when asked.

* :func:`guarded_driver` is the odc-stac reader driver :func:`lcgee.load.load_stack` uses: a
  failed read raises :class:`~lcgee.errors.DataError` naming the asset href (query string,
  i.e. any signature, removed), the scene id, the asset and what to do, instead of rasterio's
  ``Read failed. See previous exception for details.``
* :func:`unreadable_assets` probes each asset cheaply (open the file, read its first and its
  last full-resolution block: in a Cloud-Optimized GeoTIFF the last block is the last bytes
  of the file, so a truncated download fails there), and :func:`drop_unreadable` removes the
  scenes it finds from a search result with one :class:`~lcgee.errors.DataWarning` listing
  them. The search notebook does this when ``load.skip_bad_scenes`` is true, so every later
  stage sees the same scene list.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from odc.stac._mdtools import StacAuxReader, StacMDParser

from lcgee.errors import DataError, DataWarning
from lcgee.gdal import configure_gdal
from lcgee.signing import SigningRioDriver, quiet_signed_urls_in_logs, sign_href, strip_queries

if TYPE_CHECKING:
    from lcgee.search import SearchResult

__all__ = ["BadAsset", "GuardedDriver", "drop_unreadable", "guarded_driver", "read_error",
           "reason", "unreadable_assets", "without_query"]

log = logging.getLogger(__name__)

_FIX = ("rerun to retry if the cause was the network; if the file is a local or cached copy, "
        "delete it so it is fetched again; or exclude the scene: set `load.skip_bad_scenes: "
        "true` (drops unreadable scenes after the search), or narrow `dates` / "
        "`stac.max_cloud_cover` so it is not selected")


@dataclasses.dataclass(frozen=True)
class BadAsset:
    """One asset that could not be read."""

    item_id: str
    asset: str
    href: str  #: without query string (no signature)
    reason: str


def without_query(href: str) -> str:
    """``href`` without its query string and fragment (signed URLs carry secrets there)."""
    parts = urlsplit(href)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) if parts.scheme else href


def reason(exc: BaseException) -> str:
    """The most specific message in an exception chain (GDAL's, not rasterio's summary)."""
    messages = []
    seen: BaseException | None = exc
    while seen is not None and len(messages) < 5:
        messages.append(str(seen).strip())
        seen = seen.__cause__ or seen.__context__
    useful = [m for m in messages if m and "See previous exception" not in m]
    return strip_queries(useful[-1] if useful else messages[0] or type(exc).__name__)[:300]


def read_error(bad: BadAsset, stage: str = "load") -> DataError:
    """The error a failed read raises."""
    return DataError(f"cannot read asset {bad.asset} of scene {bad.item_id} ({bad.href}): "
                     f"{bad.reason}", where=stage, fix=_FIX)


def _sources(items: Iterable[Any], assets: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``href without query -> (item id, asset)`` for the assets a load reads."""
    return {without_query(it.assets[a].href): (it.id, a)
            for it in items for a in assets if a in it.assets}


# ---- the reader driver ------------------------------------------------------------------------

class GuardedDriver(SigningRioDriver):  # type: ignore[misc]
    """odc-stac's rasterio driver that signs each URL when it is opened (:mod:`lcgee.signing`)
    and whose readers turn read errors into named DataErrors."""

    def __init__(self, sources: dict[str, tuple[str, str]]) -> None:
        super().__init__(md_parser=StacMDParser({}), aux_reader=StacAuxReader())
        self.sources = sources

    def open(self, src: Any, ctx: Any) -> Any:
        return _GuardedReader(super().open(src, ctx), src.uri, self.sources)


def guarded_driver(items: Iterable[Any], assets: Sequence[str]) -> GuardedDriver:
    """An odc-stac reader driver whose read errors name their source."""
    quiet_signed_urls_in_logs()
    return GuardedDriver(_sources(items, assets))


class _GuardedReader:
    def __init__(self, reader: Any, uri: str, sources: dict[str, tuple[str, str]]) -> None:
        self._reader, self._uri, self._sources = reader, uri, sources

    def read(self, *args: Any, **kwargs: Any) -> Any:
        import rasterio.errors

        try:
            return self._reader.read(*args, **kwargs)
        except rasterio.errors.RasterioError as exc:
            href = without_query(self._uri)
            item_id, asset = self._sources.get(href, ("?", "?"))
            raise read_error(BadAsset(item_id, asset, href, reason(exc)),
                             "load (odc-stac)") from None


# ---- probing and dropping -----------------------------------------------------------------------

def _probe(href: str) -> str | None:
    """None if the first and last full-resolution blocks of band 1 read, else the reason."""
    import rasterio

    try:
        with rasterio.open(href) as src:
            rows = list(src.block_windows(1))
            for _, window in (rows[0], rows[-1]):
                src.read(1, window=window)
    except (rasterio.errors.RasterioError, OSError) as exc:
        return reason(exc)
    return None


def unreadable_assets(items: Sequence[Any], assets: Sequence[str], *,
                      workers: int = 8) -> list[BadAsset]:
    """Assets of ``items`` (those of ``assets`` they have) that cannot be read."""
    configure_gdal()
    jobs = [(it.id, a, it.assets[a].href) for it in items for a in assets if a in it.assets]
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="lcgee-probe") as pool:
        reasons = list(pool.map(lambda j: _probe(sign_href(j[2])), jobs))
    return [BadAsset(i, a, without_query(h), r) for (i, a, h), r in zip(jobs, reasons, strict=True)
            if r is not None]


def drop_unreadable(result: SearchResult, assets: Sequence[str], *, workers: int = 8
                    ) -> SearchResult:
    """``result`` (a :class:`lcgee.search.SearchResult`) without scenes whose assets fail."""
    bad = unreadable_assets(result.items, assets, workers=workers)
    if not bad:
        return result
    ids = sorted({b.item_id for b in bad})
    listing = "; ".join(f"{b.item_id} {b.asset} ({b.href}): {b.reason}" for b in bad)
    warnings.warn(f"load.skip_bad_scenes: dropped {len(ids)} unreadable scene(s) "
                  f"{', '.join(ids)} -- {listing}", DataWarning, stacklevel=2)
    log.warning("dropped unreadable scenes: %s", ", ".join(ids))
    keep = [it for it in result.items if it.id not in ids]
    table = result.table[~result.table["id"].isin(ids)].reset_index(drop=True)
    return dataclasses.replace(result, items=keep, table=table)
