"""The one seam between lcgee and the Earth Engine service: :class:`EarthEngineConnection`.

Everything lcgee sends to Earth Engine goes through these four calls: pixels
(``computePixels``), small answers (``getInfo``), and export tasks (start, status). Two
implementations: :class:`LiveEarthEngine` (the service, through an initialised ``ee`` session)
and :class:`lcgee.gee.emulator.OfflineEarthEngine` (local arrays: the demo's stand-in and the
tests'). Functions taking ``connection=None`` use :class:`LiveEarthEngine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lcgee.gee.api import ee

__all__ = ["EarthEngineConnection", "LiveEarthEngine", "live_or", "EarthEngineOptions"]


@runtime_checkable
class EarthEngineConnection(Protocol):
    """What lcgee asks of Earth Engine."""

    def compute_pixels(self, request: Mapping[str, Any]) -> Any:
        """``ee.data.computePixels(request)``: the pixels of one grid (a NumPy structured
        array for ``fileFormat: NUMPY_NDARRAY``)."""

    def get_info(self, query: Any) -> Any:
        """``query.getInfo()``: a computed object (``ee.ComputedObject``) as Python values."""

    def start_task(self, task: Any) -> None:
        """``task.start()`` for an ``ee.batch.Task`` (it then has an ``id``)."""

    def task_status(self, task: Any) -> dict[str, Any]:
        """``task.status()``: at least ``state``, and ``error_message`` when it failed."""


class LiveEarthEngine:
    """The Earth Engine service, through the ``ee`` session of this process
    (:func:`lcgee.gee.session.init_live`)."""

    def compute_pixels(self, request: Mapping[str, Any]) -> Any:
        return ee().data.computePixels(dict(request))

    def get_info(self, query: Any) -> Any:
        return query.getInfo()

    def start_task(self, task: Any) -> None:
        task.start()

    def task_status(self, task: Any) -> dict[str, Any]:
        return task.status()


def live_or(connection: EarthEngineConnection | None) -> EarthEngineConnection:
    """``connection``, or the live service when it is None."""
    return LiveEarthEngine() if connection is None else connection


@dataclass(frozen=True)
class EarthEngineOptions:
    """How a stage reaches Earth Engine: the connection and the download settings.

    Given to :func:`lcgee.masks.scene_masks` (``gee`` cloud source) and
    :func:`lcgee.labels.load_worldcover` (``earth-engine`` labels); made for a run by
    :func:`lcgee.ee_stage.earth_engine_options`. ``None`` fields leave the callee's default.
    """

    connection: EarthEngineConnection | None = None
    """Who answers the requests; None: the live service of this process's session."""

    cache_dir: Path | None = None
    """Parent folder of the resumable tile cache (None: a temporary folder)."""

    workers: int | None = None
    """Requests in flight at most (``ee.workers``)."""

    retries: int | None = None
    """Attempts per request on 429 / 5xx answers (``ee.retries``)."""

    progress: bool | None = None
    """Show progress bars."""

    def as_kwargs(self) -> dict[str, Any]:
        """The fields that are set, as keyword arguments of the download functions."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}
