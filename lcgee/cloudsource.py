"""Which cloud-mask source a run uses, decided before any pixel is downloaded.

``clouds.source: auto`` (the default) picks, in order:

1. ``gee`` — s2cloudless from Earth Engine, when ``ee.project`` is set and credentials are on
   this machine (a service-account key in ``GOOGLE_APPLICATION_CREDENTIALS``, the file written
   by ``earthengine authenticate`` or gcloud's application-default credentials);
2. ``local`` — the tutorial's algorithm over a cloud-probability layer, only where the STAC API
   holds one (the demo world does; Planetary Computer does not);
3. ``scl`` — Sen2Cor's scene classification, which every L2A item carries.

An explicit ``local`` on an API without a probability layer is refused with the fix. After the
masks are made, :func:`source_table` says which source masked each scene and
:func:`warn_if_mostly_fallback` warns loudly when most scenes fell back.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lcgee.errors import DataWarning, ParamsError

if TYPE_CHECKING:
    from pystac_client import Client

    from lcgee.params import Params

__all__ = ["SourceChoice", "resolve_source", "earth_engine_ready", "has_probability_layer",
           "source_table", "warn_if_mostly_fallback", "PROBABILITY_COLLECTION"]

log = logging.getLogger(__name__)

PROBABILITY_COLLECTION = "s2-cloud-probability"


@dataclass(frozen=True)
class SourceChoice:
    """The source the masks come from, and why (one sentence for the notebook and logs)."""

    source: str
    reason: str


def _credential_files() -> list[Path]:
    home = Path.home()
    files = [home / ".config" / "earthengine" / "credentials",
             home / ".config" / "gcloud" / "application_default_credentials.json"]
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        files.insert(0, Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]))
    return files


def earth_engine_ready(project: str | None) -> tuple[bool, str]:
    """Whether Earth Engine can be used (a project and a credentials file); no network."""
    if not project:
        return False, "no ee.project in the params"
    found = [p for p in _credential_files() if p.is_file()]
    if not found:
        return False, "no Earth Engine credentials on this machine"
    return True, f"Earth Engine project {project!r}, credentials in {found[0]}"


def has_probability_layer(client: Client | None, collection: str = PROBABILITY_COLLECTION) -> bool:
    """Whether the STAC API behind ``client`` holds the cloud-probability collection."""
    try:
        return client.get_collection(collection) is not None
    except Exception:  # pystac-client raises on 404; servers differ in how they say "no"
        return False


def resolve_source(params: Params, client: Client | None) -> SourceChoice:
    """The cloud source for this run (``params.clouds.source`` with ``auto`` resolved).

    Raises :class:`ParamsError` for ``local`` on an API without a probability layer.
    """
    asked = params.clouds.source
    if asked == "local":
        if not has_probability_layer(client):
            raise ParamsError(
                f"clouds.source is local, but the STAC API {params.stac.url} has no "
                f"{PROBABILITY_COLLECTION!r} collection (Planetary Computer has none)",
                where="clouds.source",
                fix="use clouds.source: auto (Earth Engine when configured, else SCL), scl, or "
                    "gee with ee.project and credentials")
        return SourceChoice("local", f"clouds.source: local ({PROBABILITY_COLLECTION} found)")
    if asked != "auto":
        return SourceChoice(asked, f"clouds.source: {asked}")
    ready, why = earth_engine_ready(params.ee.project)
    if ready:
        return SourceChoice("gee", f"auto: Earth Engine ({why})")
    if has_probability_layer(client):
        return SourceChoice("local", f"auto: {why}; the STAC API holds "
                                     f"{PROBABILITY_COLLECTION}, so s2cloudless runs locally")
    return SourceChoice("scl", f"auto: {why} and the STAC API has no cloud-probability layer, "
                               "so Sen2Cor's SCL masks the clouds (set ee.project and "
                               "authenticate for s2cloudless from Earth Engine)")


def source_table(table: pd.DataFrame, scene_masks: Sequence[tuple[str, str, Any]]) -> pd.DataFrame:
    """The scene table with a ``mask_source`` column (the source that masked each scene)."""
    by_id = {i: s for i, s, _ in scene_masks}
    out = table.copy()
    out["mask_source"] = out["id"].map(by_id)
    return out


def warn_if_mostly_fallback(scene_masks: Sequence[tuple[str, str, Any]], primary: str) -> int:
    """Warn (loudly: a :class:`DataWarning` and a log warning) when most scenes were masked by
    another source than ``primary``; returns how many fell back."""
    fell = sum(1 for _, s, _ in scene_masks if s != primary)
    if scene_masks and fell * 2 > len(scene_masks):
        text = (f"{fell} of {len(scene_masks)} scenes were NOT masked by the chosen cloud source "
                f"{primary!r} but by the fallback: check clouds.source (auto picks what the "
                "data supports)")
        log.warning(text)
        warnings.warn(text, DataWarning, stacklevel=2)
    return fell
