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
from typing import Any

import pandas as pd

from lcgee.errors import DataError

__all__ = [
    "gee_index", "processing_baseline", "needs_offset", "scene_table", "deduplicate",
    "BASELINE_OFFSET_FROM", "HARMONIZE_OFFSET",
]

#: Processing baseline from which L2A DN carry BOA_ADD_OFFSET = -1000 (from 2022-01-25).
BASELINE_OFFSET_FROM = (4, 0)
HARMONIZE_OFFSET = 1000

_STAMP = r"\d{8}T\d{6}"
_DATATAKE_ID = re.compile(rf"^GS2[A-D]_({_STAMP})_")
_ITEM_ID = re.compile(rf"^S2[A-D]_MSIL2A_({_STAMP})_R\d{{3}}_T(\d{{2}}[A-Z]{{3}})_({_STAMP})")
_DATASTRIP_START = re.compile(rf"_S({_STAMP})_")


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "to_dict"):
        return item.to_dict(include_self_link=False, transform_hrefs=False)
    raise TypeError(f"expected a pystac Item or an item dict, got {type(item).__name__}")


def gee_index(item: Any) -> str:
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


def processing_baseline(item: Any) -> str:
    """``s2:processing_baseline`` (e.g. ``"04.00"``), from the property or the product URI."""
    props = _as_dict(item).get("properties", {})
    value = props.get("s2:processing_baseline")
    if value:
        return str(value)
    m = re.search(r"_N(\d{2})(\d{2})_", str(props.get("s2:product_uri", "")))
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    raise DataError("no `s2:processing_baseline` and no _Nxxyy_ in `s2:product_uri`",
                    where=f"item {_as_dict(item).get('id')}",
                    fix="pass Planetary Computer items, or set load.harmonize: false")


def needs_offset(baseline: str) -> bool:
    """True when DN of that baseline carry the +1000 offset (baseline >= 04.00)."""
    major, _, minor = baseline.partition(".")
    return (int(major), int(minor or 0)) >= BASELINE_OFFSET_FROM


def _generation(item_id: str) -> str:
    m = _ITEM_ID.match(item_id)
    return m.group(3) if m else ""


def deduplicate(items: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """Drop reprocessed copies of one granule (same ``system:index``), keeping the newest.

    Two granules of one tile on one day with different datastrips stay distinct.
    Returns ``(kept, dropped)`` in the input order.
    """
    items = list(items)
    best: dict[str, Any] = {}
    for it in items:
        key = gee_index(it)
        cur = best.get(key)
        if cur is None or _generation(_as_dict(it)["id"]) > _generation(_as_dict(cur)["id"]):
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
