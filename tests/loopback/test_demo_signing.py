"""The demo world's imagery is served like Planetary Computer's: reads need a SAS token.

Every test and demo run that uses :class:`lcgee.demo.serve.DemoServer` therefore goes through
read-time signing (:mod:`lcgee.signing`, the Planetary Computer SDK's token cache).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import numpy as np
import pytest

from lcgee.signing import SIGNED_HOSTS_ENV, needs_signing, sign_href


def _get(url: str, ranged: bool = True) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Range": "bytes=0-15"} if ranged else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def test_demo_server_refuses_unsigned_imagery_and_serves_signed(small_server, small_search):
    _, items = small_search
    href = items[0].assets["B04"].href
    assert href.startswith(small_server.files.url)
    assert needs_signing(href)  # the server told the SDK and lcgee about itself
    with pytest.raises(urllib.error.HTTPError, match="403"):
        _get(href)
    signed = sign_href(href)
    assert "sig=" in signed
    assert _get(signed) == (206, (small_server.root / href.split("/", 3)[3]).read_bytes()[:16])
    # previews are open, like Planetary Computer's thumbnails
    preview = items[0].assets["rendered_preview"].href
    assert _get(preview, ranged=False)[0] == 200


def test_load_through_lcgee_signs_and_equals_the_files(small_server, small_search, small_world):
    import planetary_computer.sas as sas

    from lcgee.load import load_stack

    _, items = small_search
    items = items[:3]
    sas.TOKEN_CACHE.clear()
    before = small_server.files.stats()
    got = load_stack(items, small_world.grid, ["B04", "SCL"], chunk=192).compute()
    after = small_server.files.stats()
    assert after["tokens"] >= before["tokens"] + 1
    assert after["refused"] == before["refused"]  # no read went out unsigned
    local = []
    for it in items:
        it = it.clone()
        for a in ("B04", "SCL"):
            it.assets[a].href = str(small_world.root / it.assets[a].href.split("/", 3)[3])
        local.append(it)
    ref = load_stack(local, small_world.grid, ["B04", "SCL"], chunk=192).compute()
    for band in ("B04", "SCL"):
        assert int(got[band].max()) > 0
        np.testing.assert_array_equal(got[band].values, ref[band].values)


def test_stopping_the_server_restores_the_environment(small_world, monkeypatch):
    from lcgee.demo.serve import SAS_URL_ENV, DemoServer

    monkeypatch.setenv(SIGNED_HOSTS_ENV, "example.org:1")
    monkeypatch.delenv(SAS_URL_ENV, raising=False)
    with DemoServer(small_world.root) as srv:
        assert os.environ[SAS_URL_ENV] == srv.files.sas_url
        assert os.environ[SIGNED_HOSTS_ENV] == f"example.org:1,{srv.files.netloc}"
    assert SAS_URL_ENV not in os.environ
    assert os.environ[SIGNED_HOSTS_ENV] == "example.org:1"
    with DemoServer(small_world.root, signed=False) as srv:
        rel = next(small_world.root.glob("cogs/*/B04.tif")).relative_to(small_world.root)
        href = f"{srv.files.url}/{rel}"
        assert not needs_signing(href)
        assert _get(href)[0] == 206


def test_stackstac_engine_signs_and_keeps_tokens_out_of_errors(small_server, small_search,
                                                               small_world):
    pytest.importorskip("stackstac")
    from lcgee.load import load_stack

    _, items = small_search
    it = items[0].clone()
    it.assets["B04"].href = it.assets["B04"].href.replace("B04.tif", "missing.tif")
    got = load_stack([items[0]], small_world.grid, ["B04"], engine="stackstac", chunk=192)
    assert int(got["B04"].max().compute()) > 0  # would be a 403 without a token
    with pytest.warns(UserWarning, match=r"missing\.tif") as warned:  # stackstac: 404 = no data
        load_stack([it], small_world.grid, ["B04"], engine="stackstac", chunk=192).compute()
    assert not any("sig=" in str(w.message) for w in warned)
