"""The one place lcgee imports ``earthengine-api``: :func:`ee` hands the ``ee`` module out.

``earthengine-api`` is a core dependency of lcgee, imported on first use (not when ``lcgee`` is
imported, which keeps ``import lcgee`` fast); a broken install becomes a
:class:`~lcgee.errors.MissingDependencyError` saying how to repair it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lcgee.errors import MissingDependencyError

__all__ = ["ee", "ee_submodule"]

_FIX = "reinstall lcgee (earthengine-api is one of its core dependencies): pip install earthengine-api"


def ee_submodule(name: str = "") -> ModuleType:
    """``ee`` (``name=""``) or one of its submodules, e.g. ``ee_submodule("deprecation")``."""
    module = f"ee.{name}" if name else "ee"
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"earthengine-api cannot be imported ({exc})",
                                     fix=_FIX) from exc


def ee() -> ModuleType:
    """The ``ee`` module of earthengine-api."""
    return ee_submodule()
