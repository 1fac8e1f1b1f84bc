"""Search Sentinel-2 L2A scenes on a STAC API (Planetary Computer by default, or the demo's).

pystac-client does the talking, with urllib3 retries on 429/5xx and timeouts, and Planetary
Computer signing plugged in as the client's ``modifier``. Filters the server cannot apply
(rustac and many small servers lack the query/filter extensions) are applied client-side too,
so results are the same everywhere. Reprocessed duplicates of a granule are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd

from lcgee.errors import DataError, NoScenesError, StacError
from lcgee.files import atomic_path, write_json
from lcgee.layout import RunLayout
from lcgee.scenes import deduplicate, normalize_tile, scene_table

if TYPE_CHECKING:
    from pystac import Item
    from pystac_client import Client
    from shapely.geometry.base import BaseGeometry

__all__ = ["SearchResult", "open_client", "search_scenes", "signer_for", "footprints",
           "fetch_items", "save_scenes"]

log = logging.getLogger(__name__)

_PC_HOSTS = ("planetarycomputer.microsoft.com",)
_RETRY_STATUS = (429, 500, 502, 503, 504)


@dataclass
class SearchResult:
    """Scenes found: pystac items (deduplicated, by time), their table, and what was dropped."""

    items: list[Any]
    table: pd.DataFrame
    dropped: list[Any] = field(default_factory=list)
    server_filtered: bool = False


def signer_for(url: str, sign: str = "auto") -> Callable[[Any], Any] | None:
    """Planetary Computer's in-place signer for its hosts (or when asked), else None."""
    host = urlparse(url).hostname or ""
    if sign == "none" or (sign == "auto" and not host.endswith(_PC_HOSTS)):
        return None
    import planetary_computer

    return planetary_computer.sign_inplace


def open_client(url: str, *, sign: str = "auto", retries: int = 5, timeout: float = 60.0
                ) -> Client:
    """A pystac-client ``Client`` with retries and (for Planetary Computer) signing."""
    import pystac_client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(total=retries, backoff_factor=1.0, status_forcelist=_RETRY_STATUS,
                  allowed_methods=None)
    io = StacApiIO(max_retries=retry, timeout=timeout)
    try:
        return pystac_client.Client.open(url, modifier=signer_for(url, sign), stac_io=io)
    except Exception as exc:
        raise StacError(f"cannot open the STAC API ({type(exc).__name__}: {exc})", where=url,
                        fix="check the URL and your network, or retry later") from exc


def search_scenes(client: Client, *, collection: str, bbox: Sequence[float], datetime: str,
                  max_cloud_cover: float = 100.0, mgrs_tiles: Sequence[str] = (),
                  limit: int = 10_000) -> SearchResult:
    """Items intersecting ``bbox`` (lon/lat) in ``datetime`` with cloud cover <= the limit."""
    supports_query = _conforms(client, "QUERY")
    query: dict[str, Any] = {}
    if supports_query:
        query["eo:cloud_cover"] = {"lte": max_cloud_cover}
        if mgrs_tiles:
            query["s2:mgrs_tile"] = {"in": list(mgrs_tiles)}
    try:
        search = client.search(collections=[collection], bbox=list(bbox), datetime=datetime,
                               query=query or None, max_items=limit)
        found = list(search.items())
    except Exception as exc:
        raise StacError(f"the search failed ({type(exc).__name__}: {exc})",
                        where=getattr(client, "self_href", None) or "STAC API",
                        fix="retry later; if it persists check the collection id and URL"
                        ) from exc
    kept = [it for it in found if _cloud_ok(it, max_cloud_cover) and _tile_ok(it, mgrs_tiles)]
    if not kept:
        raise NoScenesError(
            f"no {collection} scenes for bbox {[round(v, 5) for v in bbox]}, dates {datetime}, "
            f"cloud cover <= {max_cloud_cover:g} %"
            + (f", tiles {list(mgrs_tiles)}" if mgrs_tiles else "")
            + f" ({len(found)} found before the cloud/tile filter)",
            where="search",
            fix="widen `dates`, raise `stac.max_cloud_cover`, or check `aoi` and "
                "`stac.mgrs_tiles`")
    kept, dropped = deduplicate(kept)
    if dropped:
        log.info("dropped %d reprocessed duplicate(s): %s", len(dropped),
                 ", ".join(d.id for d in dropped))
    kept.sort(key=lambda it: (it.datetime, it.id))
    return SearchResult(items=kept, table=scene_table(kept), dropped=dropped,
                        server_filtered=supports_query)


def _conforms(client: Any, name: str) -> bool:
    from pystac_client.conformance import ConformanceClasses

    try:
        return bool(client.conforms_to(ConformanceClasses[name]))
    except (KeyError, AttributeError):
        return False


def _cloud_ok(item: Any, limit: float) -> bool:
    cc = item.properties.get("eo:cloud_cover")
    return cc is None or float(cc) <= limit


def _tile_ok(item: Any, tiles: Sequence[str]) -> bool:
    if not tiles:
        return True
    try:
        tile = normalize_tile(str(item.properties.get("s2:mgrs_tile", "")))
    except DataError:
        return False
    return tile in {normalize_tile(t) for t in tiles}


def footprints(items: Sequence[Item]) -> list[tuple[str, BaseGeometry]]:
    """The items' footprints as a GeoDataFrame-like list of (id, shapely geometry)."""
    from shapely.geometry import shape

    return [(it.id, shape(it.geometry)) for it in items]


def fetch_items(client: Client, collection: str, ids: Sequence[str], *,
                required: bool = True) -> list[Any]:
    """Items of ``collection`` by id, in the order of ``ids`` (fresh, so freshly signed).

    Later stages keep only the scene table and fetch items again: URLs signed for Planetary
    Computer expire, and the demo's loopback ports change between runs. With ``required``
    a missing id is an error; otherwise missing ids are skipped.
    """
    ids = list(ids)
    if not ids:
        return []
    try:
        found = {it.id: it for it in client.search(collections=[collection], ids=ids,
                                                   max_items=len(ids) * 2).items()}
    except Exception as exc:
        raise StacError(f"fetching {len(ids)} item(s) failed ({type(exc).__name__}: {exc})",
                        where=f"collection {collection}", fix="retry later") from exc
    missing = [i for i in ids if i not in found]
    if missing and required:
        raise StacError(f"{len(missing)} item(s) are no longer in the catalog: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                        where=f"collection {collection}",
                        fix="rerun the search stage (lcgee run ... --force)")
    return [found[i] for i in ids if i in found]


def save_scenes(result: SearchResult, run_dir: Path) -> Path:
    """The scene table as Parquet (atomically), with the dropped duplicates beside it."""
    layout = RunLayout(run_dir)
    with atomic_path(layout.scenes) as tmp:
        result.table.to_parquet(tmp, index=False)
    write_json(layout.duplicates,
               [{"id": d.id, "reason": "reprocessed copy of a kept granule"} for d in result.dropped])
    return layout.scenes
