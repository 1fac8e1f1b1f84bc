"""Unit tests of lcgee.gee.retry: which failures are transient, the waits, and call_with_backoff."""

from __future__ import annotations

import pytest

pytest.importorskip("ee")

import ee

from lcgee.errors import EarthEngineError
from lcgee.gee.retry import (
    TRANSIENT_STATUS,
    RetryPolicy,
    call_with_backoff,
    is_earth_engine_error,
    is_transient,
)


class HttpError(Exception):
    """Shaped like googleapiclient's HttpError: the status sits on ``resp.status``."""

    def __init__(self, status: int | str, message: str = "") -> None:
        super().__init__(message)
        self.resp = type("Resp", (), {"status": status})()


class StatusCodeError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__("")
        self.status_code = status_code


def no_sleep(**kw) -> RetryPolicy:
    return RetryPolicy(sleep=lambda s: None, seed=0, **kw)


# ----------------------------------------------------------------------------- is_transient
@pytest.mark.parametrize("status", sorted(TRANSIENT_STATUS))
def test_transient_statuses(status):
    assert is_transient(HttpError(status)) and is_transient(StatusCodeError(status))
    assert is_transient(HttpError(str(status)))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_client_errors_are_not_transient_whatever_the_message(status):
    # the status decides when there is one: a 400 saying "timed out" is still a bad request
    assert not is_transient(HttpError(status, "Computation timed out."))
    assert not is_transient(StatusCodeError(status))


@pytest.mark.parametrize("message", [
    "Too many concurrent aggregations.",
    "Too Many Requests",
    "Quota exceeded for quota metric 'Number of read requests' and limit 'Number of read requests "
    "per minute per user' of service 'earthengine.googleapis.com'",
    "Service Unavailable",
    "An internal error has occurred (request: 6f1c).",
    "Computation timed out.",
    "Deadline exceeded",
    "Gateway Timeout",
    "HTTP 503",
])
def test_transient_messages(message):
    assert is_transient(ee.EEException(message))


@pytest.mark.parametrize("message", [
    "Image.load: Image asset 'x' not found.",
    "User memory limit exceeded.",
    "Total request size (56623104 bytes) must be less than or equal to 50331648 bytes.",
    "Caller does not have required permission to use project p.",
    "Image.select: Pattern 'B500' did not match any bands.",
])
def test_permanent_messages(message):
    assert not is_transient(ee.EEException(message))


@pytest.mark.parametrize("message", [
    "The service is currently unavailable.",  # 503 UNAVAILABLE with a JSON body
    "Resource has been exhausted (e.g. check quota).",  # 429 RESOURCE_EXHAUSTED
    "Internal Server Error",  # reason phrase of a 500 without a JSON body
    "Bad Gateway",  # reason phrase of a 502
])
def test_standard_google_transient_messages(message):
    # ee.data turns an HttpError into EEException(message): the status is lost, the text is all
    assert is_transient(ee.EEException(message))


def test_timeouts_and_connection_errors_are_transient():
    assert is_transient(TimeoutError("The read operation timed out"))
    assert is_transient(ConnectionResetError(104, "Connection reset by peer"))
    assert is_transient(ConnectionError("anything"))


def test_earth_engine_errors_versus_programming_errors():
    for exc in (ee.EEException("x"), HttpError(500), TimeoutError(), ConnectionError(),
                EarthEngineError("x")):
        assert is_earth_engine_error(exc)
    for exc in (TypeError("x"), ValueError("x"), KeyError("x"), ZeroDivisionError()):
        assert not is_earth_engine_error(exc)


# ----------------------------------------------------------------------------- waits
def test_waits_grow_exponentially_within_jitter_and_cap():
    policy = RetryPolicy(attempts=8, base=0.5, cap=10.0, jitter=0.5, seed=1)
    for k in range(12):
        full = min(10.0, 0.5 * 2**k)
        waits = [policy.wait(k) for _ in range(200)]
        assert all(full * 0.5 < w <= full for w in waits)
        assert max(waits) - min(waits) > 0.3 * full  # really jittered
    exact = RetryPolicy(base=2.0, cap=100.0, jitter=0.0)
    assert [exact.wait(k) for k in range(7)] == [2, 4, 8, 16, 32, 64, 100]


def test_seed_makes_waits_reproducible():
    a, b = RetryPolicy(seed=3), RetryPolicy(seed=3)
    assert [a.wait(k) for k in range(6)] == [b.wait(k) for k in range(6)]
    assert [a.wait(1) for _ in range(3)] != [RetryPolicy(seed=4).wait(1) for _ in range(3)]


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base": -1}, {"cap": -1}, {"jitter": 1.5}])
def test_invalid_policy(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# ----------------------------------------------------------------------------- call_with_backoff
class Flaky:
    """Fails with the given errors in turn, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: object = "ok") -> None:
        self.errors, self.value, self.calls = list(errors), value, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def test_retries_transient_failures_and_reports_each_retry():
    fn = Flaky(ee.EEException("Too many concurrent aggregations."), HttpError(503), TimeoutError())
    slept, seen = [], []
    policy = RetryPolicy(attempts=4, base=1.0, cap=60.0, jitter=0.5, sleep=slept.append, seed=0)
    result = call_with_backoff(fn, 1, 2, key="v", policy=policy,
                               on_retry=lambda k, exc, wait: seen.append((k, type(exc).__name__, wait)))
    assert result == "ok" and fn.calls == [((1, 2), {"key": "v"})] * 4
    assert [k for k, _, _ in seen] == [0, 1, 2]
    assert [name for _, name, _ in seen] == ["EEException", "HttpError", "TimeoutError"]
    assert slept == [w for _, _, w in seen]
    assert all(2**k * 0.5 < w <= 2**k for k, _, w in seen)


def test_exhausted_retries_raise_earth_engine_error_with_attempts():
    fn = Flaky(*[ee.EEException("Service Unavailable")] * 5)
    slept: list[float] = []
    with pytest.raises(EarthEngineError, match="still failed after 3 attempts") as info:
        call_with_backoff(fn, what="tile 7", policy=RetryPolicy(attempts=3, sleep=slept.append, seed=0))
    assert len(fn.calls) == 3 and len(slept) == 2
    assert "tile 7" in str(info.value) and "Service Unavailable" in str(info.value)
    assert isinstance(info.value.__cause__, ee.EEException)


def test_non_transient_errors_are_not_retried():
    fn = Flaky(ee.EEException("Image.load: Image asset 'x' not found."))
    with pytest.raises(EarthEngineError, match=r"was refused.*asset 'x' not found") as info:
        call_with_backoff(fn, policy=no_sleep())
    assert len(fn.calls) == 1 and "not retried" in str(info.value)

    own = EarthEngineError("already explained", where="inner")
    with pytest.raises(EarthEngineError) as again:
        call_with_backoff(Flaky(own), policy=no_sleep())
    assert again.value is own


@pytest.mark.parametrize("error", [TypeError("bad argument"), KeyError("grid"), KeyboardInterrupt()])
def test_programming_errors_and_interrupts_pass_through_untouched(error):
    fn = Flaky(error)
    with pytest.raises(type(error)) as info:
        call_with_backoff(fn, policy=no_sleep())
    assert info.value is error and len(fn.calls) == 1
