"""A fake Earth Engine service for the offline tests (shared by the test_gee_* modules)."""

from __future__ import annotations


class FakeService:
    """An :class:`lcgee.gee.connection.EarthEngineConnection` answering with given functions."""

    def __init__(self, compute_pixels=None, get_info=None):
        self._compute, self._info = compute_pixels, get_info

    def compute_pixels(self, request):
        return self._compute(request)

    def get_info(self, query):
        return self._info(query)

    def start_task(self, task):
        raise AssertionError("no task expected")

    def task_status(self, task):
        raise AssertionError("no task expected")


def pixels(fn):
    """A service whose computePixels is ``fn``."""
    return FakeService(compute_pixels=fn)


def info(fn):
    """A service whose getInfo is ``fn``."""
    return FakeService(get_info=fn)
