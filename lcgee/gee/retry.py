"""Retries with exponential backoff for Earth Engine calls (429 quota, 5xx, timeouts).

Earth Engine answers an over-quota request (more than ~40 concurrent or ~100 per second) with
HTTP 429, and busy backends with 500/502/503/504 or a timeout. :func:`call_with_backoff` retries
those with exponentially growing, jittered waits and turns the final failure into one
:class:`~lcgee.errors.EarthEngineError` saying what was tried; any other Earth Engine error
(bad request, missing asset, permission) is reported at once without retrying. Programming
errors (``TypeError`` ...) pass through untouched.

``ee`` is not imported here: errors are recognised by their HTTP status (``resp.status``,
``status_code``, ``code``) or by the status / phrases in their message, which is what
``ee.EEException`` carries.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lcgee.errors import EarthEngineError

__all__ = ["TRANSIENT_STATUS", "RetryPolicy", "is_transient", "is_earth_engine_error",
           "call_with_backoff"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth retrying.
TRANSIENT_STATUS: frozenset[int] = frozenset({429, 500, 502, 503, 504})

_TRANSIENT_TEXT = re.compile(
    r"\b(429|500|502|503|504)\b|too many (concurrent )?(requests|aggregations)|rate ?limit"
    r"|resource (has been )?exhausted|resource_exhausted|quota exceeded|service unavailable"
    r"|service is currently unavailable|internal (server )?error|bad gateway|gateway timeout"
    r"|backend error"
    r"|timed? ?out|deadline exceeded|temporarily unavailable|connection (reset|aborted)",
    re.IGNORECASE)


def _status(exc: BaseException) -> int | None:
    for owner in (exc, getattr(exc, "resp", None), getattr(exc, "response", None)):
        for name in ("status", "status_code", "code"):
            value = getattr(owner, name, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
            if isinstance(value, str) and value.isdigit():
                return int(value)
    return None


def is_earth_engine_error(exc: BaseException) -> bool:
    """An error from the Earth Engine client or its HTTP stack (not a programming error)."""
    if isinstance(exc, TimeoutError | ConnectionError | EarthEngineError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"EEException", "HttpError", "HTTPError", "TransportError",
                         "RequestException", "Timeout", "ProtocolError"})


def is_transient(exc: BaseException) -> bool:
    """True for 429 (quota), 5xx and timeouts: failures a later retry may not see."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    status = _status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    return bool(_TRANSIENT_TEXT.search(str(exc)))


class RetryPolicy:
    """How often and how long to retry: ``attempts`` tries, waits ``base * 2**k`` (capped at
    ``cap`` seconds) times a random factor in ``[1 - jitter, 1]``.

    ``sleep`` and ``seed`` are there for tests (no real waiting, reproducible jitter).
    """

    def __init__(self, attempts: int = 6, base: float = 1.0, cap: float = 60.0,
                 jitter: float = 0.5, *, sleep: Callable[[float], None] = time.sleep,
                 seed: int | None = None) -> None:
        if attempts < 1 or base < 0 or cap < 0 or not 0 <= jitter <= 1:
            raise ValueError("attempts >= 1, base >= 0, cap >= 0 and 0 <= jitter <= 1")
        self.attempts, self.base, self.cap, self.jitter = attempts, base, cap, jitter
        self.sleep = sleep
        self._random = random.Random(seed)

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        delay = min(self.cap, self.base * 2.0 ** attempt)
        return delay * (1.0 - self.jitter * self._random.random())


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def call_with_backoff(fn: Callable[..., T], *args: Any, what: str = "Earth Engine request",
                      policy: RetryPolicy | None = None,
                      on_retry: Callable[[int, BaseException, float], None] | None = None,
                      **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried on transient Earth Engine failures.

    Raises :class:`EarthEngineError` (what / after how many attempts / how to go on) when the
    retries run out or the error is not transient. ``on_retry(attempt, error, wait)`` is called
    before each wait (e.g. to update a progress bar).
    """
    policy = policy or RetryPolicy()
    for attempt in range(policy.attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_earth_engine_error(exc):
                raise
            if isinstance(exc, EarthEngineError) and not is_transient(exc):
                raise
            if not is_transient(exc):
                raise EarthEngineError(f"{what} was refused ({_short(exc)})",
                                       where="Earth Engine",
                                       fix="check the asset ids, the project's permissions and "
                                           "the request; this error is not retried") from exc
            if attempt + 1 == policy.attempts:
                raise EarthEngineError(
                    f"{what} still failed after {policy.attempts} attempts ({_short(exc)})",
                    where="Earth Engine",
                    fix="wait a few minutes and rerun (finished work is kept), lower the number "
                        "of parallel requests, or check the project's quota in the Cloud "
                        "console") from exc
            delay = policy.wait(attempt)
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, _short(exc),
                        attempt + 1, policy.attempts - 1, delay)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            policy.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
