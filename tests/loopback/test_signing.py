"""URLs are signed when a tile is read: a computation outlives its token; graphs build offline."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest

from lcgee.demo.tokens import TokenServer
from lcgee.grid import Grid
from lcgee.load import load_stack, reflectance
from lcgee.raster import write_cog
from lcgee.signing import needs_signing, sign_href

DATA = Path(__file__).resolve().parents[1] / "data" / "pc"


@pytest.fixture
def sdk_to(monkeypatch):
    """Point the Planetary Computer SDK (token endpoint, cache) at a loopback server."""
    import planetary_computer.sas as sas
    from planetary_computer.settings import Settings

    def use(server: TokenServer) -> None:
        monkeypatch.setenv("PC_SDK_SAS_URL", server.sas_url)
        monkeypatch.setenv("LCGEE_SIGNED_HOSTS", server.netloc)
        Settings.get.cache_clear()
        sas.TOKEN_CACHE.clear()

    yield use
    Settings.get.cache_clear()
    sas.TOKEN_CACHE.clear()


def _items(root: Path, base_url: str, n: int = 4) -> tuple[list[pystac.Item], Grid]:
    """``n`` copies of a real Planetary Computer item (other dates), B04 on the loopback server."""
    real = next(d for d in json.loads((DATA / "sentinel-2-l2a-items.json").read_text())["features"]
                if "_T47XML_" in d["id"])
    left, top = real["assets"]["B04"]["proj:transform"][2], real["assets"]["B04"]["proj:transform"][5]
    g = Grid("EPSG:32647", (10.0, 0.0, left + 5000, 0.0, -10.0, top - 5000), (64, 64))
    items = []
    for k in range(n):
        d = copy.deepcopy(real)
        d["links"] = []
        d["id"] = real["id"].replace("20240419T095549", f"202404{19 + k}T095549", 1)
        d["properties"]["datetime"] = f"2024-04-{19 + k}T09:55:49Z"
        rel = f"sentinel2-l2/47/X/ML/{k}/B04.tif"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_cog(root / rel, np.full(g.shape, 1100 + 100 * k, "uint16"), g)
        d["assets"] = {"B04": {**d["assets"]["B04"], "href": f"{base_url}/{rel}",
                               "proj:shape": list(g.shape), "proj:transform": list(g.transform)}}
        items.append(pystac.Item.from_dict(d))
    return items, g


def test_graph_builds_without_the_token_service_and_survives_expiry(tmp_path, sdk_to):
    server = TokenServer(tmp_path, valid_seconds=1.5)
    sdk_to(server)
    items, grid = _items(tmp_path, server.url)
    # the service is not even running yet: building the graph must not need it
    ds = load_stack(items, grid, ["B04"], chunk=128)
    slow = reflectance(ds, ["B04"]).map_blocks(lambda b: (time.sleep(1.0), b)[1])
    with server:
        assert server.stats() == {"tokens": 0, "refused": 0}
        started = time.monotonic()
        with dask.config.set(scheduler="synchronous"):
            got = slow.compute().values  # one computation, reads spread over > 4 s
        took = time.monotonic() - started
        stats = server.stats()
    assert took > 2 * server.valid_seconds  # the first token expired mid-computation
    assert stats["tokens"] >= 2 and stats["refused"] == 0
    np.testing.assert_allclose(got[:, 0, 0, 0], [0.01, 0.02, 0.03, 0.04], rtol=1e-6)


def test_expired_token_is_refused_by_the_stand_in(tmp_path, sdk_to):
    import urllib.error
    import urllib.request

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f.tif").write_bytes(b"x" * 10)
    with TokenServer(tmp_path, valid_seconds=0.5) as server:
        sdk_to(server)
        href = f"{server.url}/c/f.tif"
        signed = sign_href(href)
        assert urllib.request.urlopen(signed, timeout=5).read() == b"x" * 10
        time.sleep(0.8)
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(signed, timeout=5)
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(href, timeout=5)
        # re-signing an already signed (expired) URL replaces its token
        assert urllib.request.urlopen(sign_href(signed), timeout=5).read() == b"x" * 10


def test_which_hosts_are_signed(monkeypatch):
    monkeypatch.delenv("LCGEE_SIGNED_HOSTS", raising=False)
    assert needs_signing("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/a/B04.tif")
    assert not needs_signing("https://ai4edatasetspublicassets.blob.core.windows.net/a.png")
    assert not needs_signing("http://127.0.0.1:8000/cogs/a/B04.tif")
    assert not needs_signing("/tmp/a.tif")


def test_signed_urls_stay_out_of_reader_logs_and_read_errors(caplog):
    """odc-loader logs the URL it failed on; GDAL's messages quote it: no SAS token may leak."""
    import logging

    import rasterio.errors

    from lcgee.integrity import guarded_driver, reason
    from lcgee.signing import strip_queries

    url = "https://acct.blob.core.windows.net/c/B04.tif?st=2024&se=2024&sig=SECRETSIG%3D"
    assert strip_queries(f"Failed to load {url} due to x") == (
        "Failed to load https://acct.blob.core.windows.net/c/B04.tif due to x")
    guarded_driver([], [])  # installs the log filter
    with caplog.at_level(logging.ERROR, logger="odc.loader._rio"):
        logging.getLogger("odc.loader._rio").error("Failed to load %s:%d due to rasterio "
                                                    "error: '%s'", url, 1, f"HTTP 403 {url}")
    assert "SECRETSIG" not in caplog.text and "B04.tif" in caplog.text
    assert "SECRETSIG" not in reason(rasterio.errors.RasterioIOError(f"403 for {url}"))
