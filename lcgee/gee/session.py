"""Earth Engine sessions: an offline one (no network) for building graphs, a live one for running them.

:func:`init_offline` initialises ``earthengine-api`` against the algorithm catalog the package
ships (``ee/tests/algorithms.json``), the way ``ee.apitestcase.ApiTestCase`` does: the Cloud API
resource is never built and ``ee.data.getAlgorithms`` reads the local catalog. Every
``ee.Image`` / ``ee.Classifier`` method then exists and graphs serialise to the same JSON the
service would receive, but nothing can be computed (``getInfo`` would fail).

:func:`init_live` undoes those patches and calls ``ee.Initialize(project=...)`` with
credentials from ``earthengine authenticate`` (or Application Default Credentials), or from a
service-account key named by ``GOOGLE_APPLICATION_CREDENTIALS``. Failures become
:class:`~lcgee.errors.EarthEngineError` with the steps to authenticate; secrets (key contents,
tokens) are never put into messages.

``ee`` comes from :mod:`lcgee.gee.api` (imported on first use).
"""

from __future__ import annotations

import json
import os
from typing import Any

from lcgee.errors import EarthEngineError
from lcgee.gee.api import ee as _ee
from lcgee.gee.api import ee_submodule

__all__ = ["init_offline", "init_live", "session_mode", "OFFLINE_PROJECT", "AUTH_HELP"]

#: Project name used for the offline session (never contacted).
OFFLINE_PROJECT = "lcgee-offline"

#: How to authenticate, appended to every authentication error.
AUTH_HELP = ("run `earthengine authenticate` (or `gcloud auth application-default login`) once "
             "on this machine, or set GOOGLE_APPLICATION_CREDENTIALS to the path of a "
             "service-account JSON key registered for Earth Engine; then give the Cloud project "
             "as ee.project in the params (or project=...)")

# Originals of the ee.data functions that init_offline patches, to restore them for init_live.
_ORIGINALS: dict[str, Any] = {}
_MODE: str | None = None



def session_mode() -> str | None:
    """``"offline"``, ``"live"`` or ``None`` (not initialised by lcgee in this process)."""
    ee = _ee()
    if _MODE is not None and not ee.data.is_initialized():
        return None
    return _MODE


def _offline_algorithms() -> Any:
    return ee_submodule("apitestcase").GetAlgorithms()


def init_offline() -> None:
    """Initialise ``earthengine-api`` with no network, from its shipped algorithm catalog.

    Idempotent: a second call while the offline session is active does nothing. A live session
    in the same process is replaced (call :func:`init_live` again to go back).
    """
    global _MODE
    ee = _ee()
    if _MODE == "offline" and ee.data.is_initialized():
        return
    deprecation = ee_submodule("deprecation")
    if not _ORIGINALS:
        _ORIGINALS.update({
            "_install_cloud_api_resource": ee.data._install_cloud_api_resource,
            "getAlgorithms": ee.data.getAlgorithms,
            "_FetchDataCatalogStac": deprecation._FetchDataCatalogStac,
        })
    ee.Reset()
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = _offline_algorithms
    deprecation._FetchDataCatalogStac = lambda: {}
    try:
        ee.Initialize(None, "", project=OFFLINE_PROJECT)
    except Exception as exc:  # pragma: no cover - depends on the installed earthengine-api
        _restore()
        raise EarthEngineError(
            f"earthengine-api could not be initialised offline ({type(exc).__name__}: {exc})",
            where="init_offline",
            fix="install a supported earthengine-api (1.x) that ships ee/tests/algorithms.json",
        ) from exc
    _MODE = "offline"


def _restore() -> None:
    """Put back the ee.data functions init_offline replaced."""
    global _MODE
    if not _ORIGINALS:
        return
    ee = _ee()
    deprecation = ee_submodule("deprecation")
    ee.data._install_cloud_api_resource = _ORIGINALS["_install_cloud_api_resource"]
    ee.data.getAlgorithms = _ORIGINALS["getAlgorithms"]
    deprecation._FetchDataCatalogStac = _ORIGINALS["_FetchDataCatalogStac"]
    _ORIGINALS.clear()
    _MODE = None


def _service_account_credentials(path: str) -> Any:
    """Credentials from a service-account key file (message never shows the key)."""
    ee = _ee()
    where = "GOOGLE_APPLICATION_CREDENTIALS"
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except OSError as exc:
        raise EarthEngineError(f"the key file it names cannot be read ({type(exc).__name__})",
                               where=where, fix=AUTH_HELP) from None
    except ValueError:
        raise EarthEngineError("the key file it names is not JSON", where=where,
                               fix=AUTH_HELP) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        return None  # an authorized-user ADC file: let google.auth read it
    email = info.get("client_email")
    if not email:
        raise EarthEngineError("the service-account key has no client_email", where=where,
                               fix=AUTH_HELP)
    try:
        return ee.ServiceAccountCredentials(email, key_file=path)
    except Exception as exc:
        raise EarthEngineError(f"the service-account key could not be loaded "
                               f"({type(exc).__name__})", where=where, fix=AUTH_HELP) from None


def _find_credentials() -> Any:
    ee = _ee()
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        credentials = _service_account_credentials(path)
        if credentials is not None:
            return credentials
    try:
        return ee.data.get_persistent_credentials()
    except Exception as exc:
        raise EarthEngineError(f"no Earth Engine credentials were found ({type(exc).__name__})",
                               where="Earth Engine authentication", fix=AUTH_HELP) from None


def init_live(project: str | None, *, credentials: Any = None) -> None:
    """``ee.Initialize(project=...)`` with stored or service-account credentials.

    ``credentials`` may be given explicitly (any ``google.auth`` credentials); otherwise a
    service-account key named by ``GOOGLE_APPLICATION_CREDENTIALS`` is used, else the
    credentials stored by ``earthengine authenticate`` / Application Default Credentials.
    Raises :class:`EarthEngineError` saying how to authenticate when that fails.
    """
    global _MODE
    ee = _ee()
    _restore()
    ee.Reset()
    if credentials is None:
        credentials = _find_credentials()
    if not project and not hasattr(credentials, "service_account_email"):
        quota = getattr(credentials, "quota_project_id", None)
        if not quota:
            raise EarthEngineError("no Cloud project is set for Earth Engine",
                                   where="ee.project",
                                   fix="give ee.project in the params (a Cloud project registered "
                                       "for Earth Engine), or " + AUTH_HELP)
    try:
        ee.Initialize(credentials=credentials, project=project)
    except Exception as exc:
        # Service messages name the project and the missing permission, never a token.
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise EarthEngineError(f"Earth Engine refused to initialise for project {project!r} "
                               f"({text})", where="ee.Initialize", fix=AUTH_HELP) from None
    _MODE = "live"
