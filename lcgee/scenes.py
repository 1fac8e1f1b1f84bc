"""Scenes: the scene table, Planetary Computer ↔ Earth Engine ids, processing baselines.

An Earth Engine Sentinel-2 ``system:index`` is
``{datatake sensing start}_{datastrip sensing start}_T{MGRS tile}``, e.g.
``20190101T082331_20190101T084846_T34HCH``. A Planetary Computer item carries the parts in
``s2:datatake_id`` (or its id), ``s2:datastrip_id`` (the ``_S...`` timestamp) and
``s2:mgrs_tile``. Generation times are not compared: Planetary Computer reprocessed many
granules, so they differ from Earth Engine's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from lcgee.errors import DataError

if TYPE_CHECKING:
    from pystac import Item

__all__ = [
    "gee_index", "processing_baseline", "needs_offset", "scene_table", "deduplicate",
    "BASELINE_OFFSET_FROM", "HARMONIZE_OFFSET", "normalize_tile", "granule_identity",
]

#: Processing baseline from which L2A DN carry BOA_ADD_OFFSET = -1000 (from 2022-01-25).
BASELINE_OFFSET_FROM = (4, 0)
HARMONIZE_OFFSET = 1000

_STAMP = r"\d{8}T\d{6}"
_DATATAKE_ID = re.compile(rf"^GS2[A-D]_({_STAMP})_")
_ITEM_ID = re.compile(rf"^S2[A-D]_MSIL2A_({_STAMP})_R\d{{3}}_T(\d{{2}}[A-Z]{{3}})_({_STAMP})")
_DATASTRIP_START = re.compile(rf"_S({_STAMP})_")
_BASELINE = re.compile(r"^(\d{2})\.(\d{2})$")
# MGRS: zone 1-60, latitude band C-X without I/O, 100 km square: column A-Z and row A-V, no I/O.
_TILE = re.compile(r"^T?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "to_dict"):
        return item.to_dict(include_self_link=False, transform_hrefs=False)
    raise TypeError(f"expected a pystac Item or an item dict, got {type(item).__name__}")


def gee_index(item: Item) -> str:
    """The Earth Engine ``system:index`` of a Planetary Computer Sentinel-2 L2A item.

    ``item`` is a :class:`pystac.Item` or an item dict. Raises :class:`DataError` naming the
    property that is missing or malformed.
    """
    d = _as_dict(item)
    props = d.get("properties", {})
    item_id = str(d.get("id", "?"))
    where = f"item {item_id}"
    datatake = None
    m = _DATATAKE_ID.match(str(props.get("s2:datatake_id", "")))
    if m:
        datatake = m.group(1)
    else:
        m = _ITEM_ID.match(item_id)
        datatake = m.group(1) if m else None
    if datatake is None:
        raise DataError("cannot find the datatake start: neither `s2:datatake_id` "
                        "(GS2X_YYYYMMDDTHHMMSS_...) nor an id like S2A_MSIL2A_<start>_R..._T...",
                        where=where, fix="pass a Planetary Computer sentinel-2-l2a item")
    m = _DATASTRIP_START.search(str(props.get("s2:datastrip_id", "")))
    if not m:
        raise DataError("property `s2:datastrip_id` is missing or has no _S<sensing start>_ "
                        "timestamp", where=where,
                        fix="pass a Planetary Computer sentinel-2-l2a item with its s2:* "
                            "properties")
    tile = props.get("s2:mgrs_tile")
    if not tile:
        m_id = _ITEM_ID.match(item_id)
        tile = m_id.group(2) if m_id else None
    if not tile:
        raise DataError("property `s2:mgrs_tile` is missing", where=where,
                        fix="pass a Planetary Computer sentinel-2-l2a item")
    return f"{datatake}_{m.group(1)}_T{str(tile).removeprefix('T')}"


def processing_baseline(item: Item) -> str:
    """``s2:processing_baseline`` (e.g. ``"04.00"``), from the property or the product URI.

    Raises :class:`DataError` naming the item and the property when the value is malformed
    (``"N05.11"``, ``""``, ``5.1``) or missing from both places.
    """
    d = _as_dict(item)
    props = d.get("properties") or {}
    where = f"item {d.get('id', '?')}"
    if "s2:processing_baseline" in props:
        value = props["s2:processing_baseline"]
        if isinstance(value, str) and _BASELINE.match(value):
            return value
        raise DataError(f"property `s2:processing_baseline` is {value!r}, not a baseline like "
                        "'05.11'", where=where,
                        fix="pass Planetary Computer sentinel-2-l2a items, or set "
                            "load.harmonize: false")
    m = re.search(r"_N(\d{2})(\d{2})_", str(props.get("s2:product_uri", "")))
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    raise DataError("property `s2:processing_baseline` is missing and `s2:product_uri` has no "
                    "_Nxxyy_ baseline", where=where,
                    fix="pass Planetary Computer items, or set load.harmonize: false")


def _baseline_key(baseline: str, where: str = "baseline") -> tuple[int, int]:
    m = _BASELINE.match(baseline) if isinstance(baseline, str) else None
    if not m:
        raise DataError(f"{baseline!r} is not a processing baseline like '05.11'", where=where,
                        fix="pass the `s2:processing_baseline` of a Sentinel-2 L2A item")
    return int(m.group(1)), int(m.group(2))


def needs_offset(baseline: str) -> bool:
    """True when DN of that baseline carry the +1000 offset (baseline >= 04.00)."""
    return _baseline_key(baseline) >= BASELINE_OFFSET_FROM


def normalize_tile(text: str) -> str:
    """An MGRS tile as Planetary Computer writes it: ``6VVN``, ``t06vvn`` -> ``06VVN``.

    Raises :class:`DataError` for anything that is not a tile (zone 1-60, a latitude band
    C-X, two 100 km square letters, I and O never used).
    """
    m = _TILE.match(str(text).strip().upper())
    if not m or not 1 <= int(m.group(1)) <= 60:
        raise DataError(f"{text!r} is not an MGRS tile like 52SFC, 06VVN or T06VVN",
                        where="MGRS tile",
                        fix="give the 5-character tile id (zone, band, square), e.g. 52SFC")
    return f"{int(m.group(1)):02d}{m.group(2)}{m.group(3)}{m.group(4)}"


def granule_identity(item: Item) -> tuple[str, str, int, str]:
    """``(platform, datatake sensing start, relative orbit, tile)`` of a Sentinel-2 granule.

    Reprocessed copies of one granule share it, whatever their datastrip or processing
    times say; granules of other orbits (or satellites) over the same tile differ.
    """
    d = _as_dict(item)
    props = d.get("properties") or {}
    item_id = str(d.get("id", "?"))
    m = _ITEM_ID.match(item_id)
    if m:
        orbit = re.search(r"_R(\d{3})_", item_id)
        return item_id[:3], m.group(1), int(orbit.group(1)) if orbit else -1, m.group(2)
    platform = str(props.get("platform", "")).upper().replace("SENTINEL-", "S")
    when = pd.Timestamp(props.get("datetime")).strftime("%Y%m%dT%H%M%S") \
        if props.get("datetime") else ""
    orbit_value = props.get("sat:relative_orbit")
    tile = props.get("s2:mgrs_tile")
    if not (platform and when and orbit_value is not None and tile):
        raise DataError("cannot tell which granule this is: the id is not a Planetary Computer "
                        "id and `platform`, `datetime`, `sat:relative_orbit` or `s2:mgrs_tile` "
                        "is missing", where=f"item {item_id}",
                        fix="pass Planetary Computer sentinel-2-l2a items")
    return platform, when, int(orbit_value), normalize_tile(str(tile))


def _generation(item_id: str) -> str:
    m = _ITEM_ID.match(item_id)
    return m.group(3) if m else ""


def _processing_rank(item: Any) -> tuple[tuple[int, int], str]:
    """Newest processing first: the baseline, then the processing (generation) time."""
    d = _as_dict(item)
    props = d.get("properties") or {}
    where = f"item {d.get('id', '?')}"
    baseline = _baseline_key(processing_baseline(d), where)
    when = props.get("s2:generation_time")
    stamp = pd.Timestamp(when).strftime("%Y%m%dT%H%M%S") if when else _generation(str(d["id"]))
    return baseline, stamp


def deduplicate(items: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """Drop reprocessed copies of one granule, keeping the newest processing.

    A granule is identified by platform, sensing time, relative orbit and tile
    (:func:`granule_identity`); its datastrip may differ between copies (reprocessing gives new
    datastrips whose sensing start can be seconds off). The copy kept has the newest baseline,
    then the latest processing time. Granules of other orbits over one tile on one day stay
    distinct. Returns ``(kept, dropped)`` in the input order.
    """
    items = list(items)
    best: dict[tuple[str, str, int, str], Any] = {}
    for it in items:
        key = granule_identity(it)
        cur = best.get(key)
        if cur is None or _processing_rank(it) > _processing_rank(cur):
            best[key] = it
    kept_ids = {id(v) for v in best.values()}
    return ([it for it in items if id(it) in kept_ids],
            [it for it in items if id(it) not in kept_ids])


def scene_table(items: Iterable[Any]) -> pd.DataFrame:
    """One row per item: id, datetime, tile, cloud cover, baseline, sun angles, gee index."""
    rows = []
    for it in items:
        d = _as_dict(it)
        p = d.get("properties", {})
        rows.append({
            "id": d["id"],
            "datetime": pd.Timestamp(p.get("datetime")),
            "platform": p.get("platform"),
            "tile": p.get("s2:mgrs_tile"),
            "cloud_cover": p.get("eo:cloud_cover"),
            "baseline": processing_baseline(d),
            "sun_azimuth": p.get("s2:mean_solar_azimuth"),
            "sun_zenith": p.get("s2:mean_solar_zenith"),
            "gee_index": gee_index(d),
        })
    columns = ["id", "datetime", "platform", "tile", "cloud_cover", "baseline", "sun_azimuth",
               "sun_zenith", "gee_index"]
    df = pd.DataFrame(rows, columns=columns)
    df["offset"] = df["baseline"].map(needs_offset) if len(df) else pd.Series(dtype=bool)
    return df.sort_values("datetime", kind="stable").reset_index(drop=True)
