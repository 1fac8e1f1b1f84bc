"""Shared fixtures: a small demo world, its loopback servers, and the live-test switch."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LCGEE_LIVE") == "1":
        return
    skip = pytest.mark.skip(reason="needs Planetary Computer / Earth Engine: set LCGEE_LIVE=1")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A 384 x 384 px demo world with 22 scenes (same generator as the full demo)."""
    from lcgee.demo.world import WorldSpec, build_world

    return build_world(WorldSpec(seed=7, size=384, n_scenes=22),
                       tmp_path_factory.mktemp("world-cache"), progress=False)


@pytest.fixture(scope="session")
def small_server(small_world):
    """The small world behind a real STAC API (rustac) and range server on loopback."""
    from lcgee.demo.serve import DemoServer

    with DemoServer(small_world.root) as srv:
        yield srv


@pytest.fixture(scope="session")
def small_search(small_server, small_world):
    """``(client, items)``: every scene of the small world, found through its STAC API."""
    from lcgee import search

    client = search.open_client(small_server.stac_url)
    found = search.search_scenes(client, collection="sentinel-2-l2a",
                                 bbox=small_world.grid.lonlat_bbox,
                                 datetime="2021-04-01/2022-09-30")
    return client, found.items
