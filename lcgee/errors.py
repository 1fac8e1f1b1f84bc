"""Every exception and warning lcgee raises.

Messages follow one pattern: what is wrong, where (the field, file, item or asset), and how to
fix it. Build them with :func:`LcgeeError.__init__`'s ``where`` and ``fix`` arguments so the
command line can print one readable paragraph instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "LcgeeError",
    "ParamsError",
    "DataError",
    "NoScenesError",
    "StacError",
    "StageError",
    "ModelError",
    "EarthEngineError",
    "MissingDependencyError",
    "LcgeeWarning",
    "DataWarning",
    "require",
]


class LcgeeError(Exception):
    """Base class: a problem the user can fix, described as what / where / fix."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what.rstrip(".") + "."]
        if self.where:
            parts.insert(0, f"{self.where}:")
        if self.fix:
            parts.append(f"Fix: {self.fix.rstrip('.')}.")
        return " ".join(parts)


class ParamsError(LcgeeError, ValueError):
    """A params file or ``--set`` override is invalid; raised before any work starts."""


class DataError(LcgeeError):
    """Input data (imagery, labels, a model) cannot be used as given."""


class NoScenesError(DataError):
    """A search found no scenes for the area, dates and cloud limit."""


class StacError(LcgeeError):
    """A STAC API could not be reached or answered badly."""


class StageError(LcgeeError):
    """A notebook stage of a run failed."""


class ModelError(LcgeeError):
    """A trained model cannot be used (feature mismatch, unsupported splits)."""


class EarthEngineError(LcgeeError):
    """Earth Engine is unreachable, unauthenticated, or refused a request."""


class MissingDependencyError(LcgeeError, ImportError):
    """An optional dependency is not installed."""


class LcgeeWarning(UserWarning):
    """Base class of lcgee's warnings."""


class DataWarning(LcgeeWarning):
    """Something in the data deserves attention but does not stop the run."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise an error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the optional dependency '{module}' is not installed ({exc})",
            fix=f"pip install 'lcgee[{extra}]'",
        ) from exc
