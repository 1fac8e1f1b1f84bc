"""GDAL's settings for reading Cloud-Optimized GeoTIFFs over HTTP, shared by every reader.

:mod:`lcgee.load` (odc-stac / stackstac), :mod:`lcgee.fastread` (the direct reader) and
:mod:`lcgee.integrity` (the read probe) all call :func:`configure_gdal` before they open a
file; it lives here, below all three, so none of them imports another to reach it.
"""

from __future__ import annotations

import os

__all__ = ["configure_gdal", "GDAL_DEFAULTS"]

#: GDAL configuration options set by :func:`configure_gdal` unless the environment has them.
GDAL_DEFAULTS = {
    "GDAL_HTTP_MAX_RETRY": "8",
    "GDAL_HTTP_RETRY_DELAY": "2",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "VSI_CACHE": "TRUE",
}


def configure_gdal(**overrides: str) -> None:
    """Set GDAL's HTTP retry/timeout options in the environment (workers inherit them).

    GDAL defaults to no HTTP retries; Planetary Computer's blob storage answers 429/503 now
    and then. Values already set in the environment win.
    """
    for key, value in {**GDAL_DEFAULTS, **overrides}.items():
        os.environ.setdefault(key, value)
