"""Tiled Earth Engine downloads against a local stand-in for ``ee.data.computePixels``.

The stand-in serves demo-world arrays (the s2cloudless mask of a demo scene, its probability
and NIR bands) and answers each request from the request itself: the window is located from
``grid.affineTransform`` + ``dimensions`` + ``crsCode``, never from tile numbers. It injects
429s, 503s and timeouts, counts requests in flight, and checks every request against the
service limits. No network is used.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("ee")

import ee
from ee_fakes import pixels  # tests/ee_fakes.py

from lcgee import clouds
from lcgee.errors import DataError, EarthEngineError, ParamsError
from lcgee.gee import download, session
from lcgee.gee.download import (
    MAX_BANDS,
    MAX_REQUEST_BYTES,
    MAX_SIDE,
    cache_key,
    download_image,
    pixel_request,
    plan_tiles,
)
from lcgee.gee.retry import RetryPolicy
from lcgee.grid import Grid

# What the service answers, as ee.data raises it (an EEException carrying the message only).
QUOTA_429 = "Too many concurrent aggregations."
QUOTA_429_RATE = ("Quota exceeded for quota metric 'Number of read requests' and limit 'Number of "
                  "read requests per minute per user' of service 'earthengine.googleapis.com'")
UNAVAILABLE_503 = "Service Unavailable"  # reason of a 503 without a JSON body
MISSING_ASSET = "Image.load: Image asset 'x' not found."
SERVICE_BYTE_LIMIT = 50_331_648  # "Total request size (...) must be less than or equal to 50331648 bytes"


# ----------------------------------------------------------------------------- the stand-in
Fault = Callable[[tuple[int, int, int, int], int], BaseException | None]


class PixelService:
    """A local ``computePixels``: serves named ``(H, W)`` arrays on ``grid`` as structured arrays.

    ``fault(window, attempt)`` may return an exception to raise instead of answering (attempt
    counts from 1 per window). Every request is recorded and checked against the limits.
    """

    def __init__(self, bands: dict[str, np.ndarray], grid: Grid, *, fault: Fault | None = None,
                 delay: float = 0.004) -> None:
        self.bands, self.grid, self.fault, self.delay = bands, grid, fault, delay
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.served: list[tuple[int, int, int, int]] = []
        self.raised: Counter[str] = Counter()
        self.attempts: Counter[tuple[int, int, int, int]] = Counter()
        self.in_flight = self.max_in_flight = 0

    def locate(self, params: dict) -> tuple[int, int, int, int]:
        """``(row, col, height, width)`` of the requested window on the served grid."""
        assert params["fileFormat"] == "NUMPY_NDARRAY"
        grid = params["grid"]
        assert grid["crsCode"] == self.grid.crs
        at = grid["affineTransform"]
        a, _, c, _, e, f = self.grid.transform
        assert (at["scaleX"], at["shearX"], at["shearY"], at["scaleY"]) == (a, 0.0, 0.0, e)
        col, row = (at["translateX"] - c) / a, (at["translateY"] - f) / e
        assert col == round(col) and row == round(row), "window not aligned with the grid"
        h, w = grid["dimensions"]["height"], grid["dimensions"]["width"]
        r0, c0 = int(round(row)), int(round(col))
        assert 0 <= r0 and 0 <= c0 and r0 + h <= self.grid.height and c0 + w <= self.grid.width
        return r0, c0, h, w

    def check_limits(self, params: dict, h: int, w: int) -> list[str]:
        names = params.get("bandIds", list(self.bands))
        size = h * w * sum(self.bands[n].dtype.itemsize + 1 for n in names)  # + 1 mask byte
        assert size <= MAX_REQUEST_BYTES <= SERVICE_BYTE_LIMIT, f"request of {size} bytes sent"
        assert max(h, w) <= MAX_SIDE and len(names) <= MAX_BANDS
        return names

    def __call__(self, params: dict) -> np.ndarray:
        with self.lock:
            self.requests.append(params)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            window = self.locate(params)
            names = self.check_limits(params, window[2], window[3])
            with self.lock:
                self.attempts[window] += 1
                attempt = self.attempts[window]
            time.sleep(self.delay)  # let requests overlap
            error = self.fault(window, attempt) if self.fault else None
            if error is not None:
                with self.lock:
                    self.raised[_kind(error)] += 1
                raise error
            r, c, h, w = window
            out = np.empty((h, w), dtype=[(n, self.bands[n].dtype) for n in names])
            for n in names:
                out[n] = self.bands[n][r:r + h, c:c + w]
            with self.lock:
                self.served.append(window)
            return out
        finally:
            with self.lock:
                self.in_flight -= 1


def _kind(error: BaseException) -> str:
    text = str(error)
    return "429" if text in (QUOTA_429, QUOTA_429_RATE) else "503" if text == UNAVAILABLE_503 \
        else type(error).__name__


def _hash(window: tuple[int, int, int, int]) -> int:
    return int(hashlib.sha256(f"{window[0]},{window[1]}".encode()).hexdigest(), 16)


def flaky(window: tuple[int, int, int, int], attempt: int) -> BaseException | None:
    """Deterministic faults by window position: 429 once, 503 then timeout, timeout once, none."""
    kind = _hash(window) % 4
    if kind == 0 and attempt == 1:
        return ee.EEException(QUOTA_429 if _hash(window) % 8 == 0 else QUOTA_429_RATE)
    if kind == 1 and attempt <= 2:
        if attempt == 1:
            return ee.EEException(UNAVAILABLE_503)
        return TimeoutError("The read operation timed out")
    if kind == 2 and attempt == 1:
        return TimeoutError("timed out")
    return None


def no_wait(waits: list[float] | None = None, attempts: int = 6) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=(waits.append if waits is not None else lambda s: None),
                       seed=0)


def coverage(windows, shape) -> np.ndarray:
    count = np.zeros(shape, np.int32)
    for r, c, h, w in windows:
        count[r:r + h, c:c + w] += 1
    return count


# ----------------------------------------------------------------------------- demo scene
def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def scene(small_world):
    """The cloudiest demo scene with a nodata strip: its bands and the local s2cloudless mask."""
    world = small_world
    s = max((s for s in world.scenes() if s["duplicate_of"] is None and s["nodata_fraction"] > 0),
            key=lambda s: s["cloud_fraction"])
    prob = _read(world.root / "cogs" / s["system_index"] / "probability.tif")
    dn = _read(world.root / "cogs" / s["item_id"] / "B08.tif")
    scl = _read(world.root / "cogs" / s["item_id"] / "SCL.tif").repeat(2, 0).repeat(2, 1)
    nir = np.where(dn == 0, np.nan, (dn.astype(np.float32) - s["offset"]) / 10000).astype(np.float32)
    left, _, _, top = world.grid.bounds
    mask = clouds.s2cloudless_mask(prob.astype(np.float32), nir, scl, sun_azimuth=s["sun_azimuth"],
                                   resolution=world.grid.resolution, origin=(left, top),
                                   **clouds.TUTORIAL)
    assert set(np.unique(mask)) == {clouds.CLEAR, clouds.CLOUD, clouds.SHADOW, clouds.NODATA}
    return {"grid": world.grid, "mask": mask, "probability": prob, "B08": dn, "id": s["item_id"]}


def expression(scene, what: str = "s2cloudless") -> dict:
    return {"image": scene["id"], "mask": what}  # stands for an ee.Image (JSON-serialisable)


# ----------------------------------------------------------------------------- downloads
def test_download_is_complete_and_equals_local_mask_despite_faults(scene, tmp_path, capsys):
    grid, mask = scene["grid"], scene["mask"]
    service = PixelService({"mask": mask}, grid, fault=flaky)
    waits: list[float] = []
    got = download_image(expression(scene), grid, cache_dir=tmp_path, n_bands=1, dtype="uint8",
                         connection=pixels(service), workers=3, tile=100, policy=no_wait(waits),
                         description="cloud mask")
    assert got.shape == (1, *grid.shape) and got.dtype == np.uint8
    assert np.array_equal(got[0], mask)
    # 16 tiles of 96 x 96 px, each served exactly once, together covering the grid once
    assert len(service.served) == 16 and set(service.served) == {(r, c, 96, 96) for r in range(0, 384, 96)
                                                                 for c in range(0, 384, 96)}
    assert (coverage(service.served, grid.shape) == 1).all()
    # every fault kind happened and each was followed by one retry
    assert service.raised["429"] > 0 and service.raised["503"] > 0 and service.raised["TimeoutError"] > 0
    assert len(waits) == sum(service.raised.values()) == len(service.requests) - 16
    assert all(0 < w <= 60 for w in waits)
    assert 1 < service.max_in_flight <= 3
    assert len(list(tmp_path.glob("*/*.npy"))) == 16
    assert "cloud mask" in capsys.readouterr().err  # the progress bar

    # a second run is served from the cache: a service that refuses everything is never asked
    refusing = PixelService({"mask": mask}, grid, fault=lambda w, a: ee.EEException(MISSING_ASSET))
    again = download_image(expression(scene), grid, cache_dir=tmp_path, n_bands=1, dtype="uint8",
                           connection=pixels(refusing), tile=100, progress=False)
    assert np.array_equal(again, got) and refusing.requests == []


def test_bands_of_different_types_arrive_in_requested_order(scene, tmp_path):
    grid = scene["grid"]
    bands = {"probability": scene["probability"], "B08": scene["B08"], "mask": scene["mask"]}
    service = PixelService(bands, grid)
    order = ["mask", "B08", "probability"]
    got = download_image(expression(scene, "bands"), grid, cache_dir=tmp_path, n_bands=3,
                         dtype="float32", band_ids=order, connection=pixels(service), workers=4, tile=128,
                         policy=no_wait(), progress=False)
    assert got.dtype == np.float32
    for i, name in enumerate(order):
        assert np.array_equal(got[i], bands[name].astype(np.float32))
    assert all(r["bandIds"] == order for r in service.requests)

    # uint16 / float32 bands do not fit uint8: refused without retrying, nothing cached wrongly
    strict = PixelService(bands, grid)
    with pytest.raises(DataError, match="do not fit uint8"):
        download_image(expression(scene, "bands"), grid, cache_dir=tmp_path / "u8", n_bands=3,
                       dtype="uint8", band_ids=order, connection=pixels(strict), workers=1, tile=128,
                       policy=no_wait(), progress=False)
    assert len(strict.requests) == 1 and list((tmp_path / "u8").glob("*/*.npy")) == []


@pytest.mark.parametrize("interruption", ["refused", "keyboard"])
def test_interrupted_download_resumes_with_only_missing_tiles(scene, tmp_path, interruption):
    grid, mask = scene["grid"], scene["mask"]
    k, lock, served = 5, threading.Lock(), [0]

    def stop_after_k(window, attempt):
        with lock:
            served[0] += 1
            if served[0] <= k:
                return None
        return ee.EEException(MISSING_ASSET) if interruption == "refused" else KeyboardInterrupt()

    first = PixelService({"mask": mask}, grid, fault=stop_after_k)
    args = dict(cache_dir=tmp_path, n_bands=1, dtype="uint8", workers=2, tile=100,
                policy=no_wait(), progress=False)
    if interruption == "refused":
        with pytest.raises(EarthEngineError) as info:
            download_image(expression(scene), grid, connection=pixels(first), **args)
        message = str(info.value)
        assert MISSING_ASSET in message and f"{k} of 16 tiles are cached" in message
        assert "resumes" in message
        assert max(first.attempts.values()) == 1  # a refusal is not retried
    else:
        with pytest.raises(KeyboardInterrupt):
            download_image(expression(scene), grid, connection=pixels(first), **args)
    assert len(first.served) == k and len(list(tmp_path.glob("*/*.npy"))) == k

    second = PixelService({"mask": mask}, grid)
    got = download_image(expression(scene), grid, connection=pixels(second), **args)
    assert np.array_equal(got[0], mask)
    assert len(second.requests) == 16 - k
    assert set(second.served).isdisjoint(first.served)
    assert (coverage(first.served + second.served, grid.shape) == 1).all()


def test_exhausted_retries_and_refusals_become_earth_engine_errors(scene, tmp_path):
    grid, mask = scene["grid"], scene["mask"]
    def one_tile_down(window, attempt):
        return ee.EEException(UNAVAILABLE_503) if window[:2] == (96, 192) else None

    always_503 = PixelService({"mask": mask}, grid, fault=one_tile_down)
    with pytest.raises(EarthEngineError, match="still failed after 3 attempts") as info:
        download_image(expression(scene), grid, cache_dir=tmp_path, n_bands=1, dtype="uint8",
                       connection=pixels(always_503), workers=2, tile=100, policy=no_wait(attempts=3),
                       progress=False)
    assert always_503.attempts[(96, 192, 96, 96)] == 3
    n_cached = len(list(tmp_path.glob("*/*.npy")))
    assert n_cached == len(always_503.served) < 16
    message = str(info.value)
    assert "rows 96-192 cols 192-288" in message and UNAVAILABLE_503 in message
    assert f"{n_cached} of 16 tiles are cached" in message and "rerunning" in message

    refused = PixelService({"mask": mask}, grid, fault=lambda w, a: ee.EEException(MISSING_ASSET))
    with pytest.raises(EarthEngineError, match="was refused") as info:
        download_image(expression(scene), grid, cache_dir=tmp_path / "refused", n_bands=1,
                       dtype="uint8", connection=pixels(refused), workers=1, tile=100, policy=no_wait(),
                       progress=False)
    # not retried, and no request starts after the first failure
    assert MISSING_ASSET in str(info.value) and len(refused.requests) == 1


def test_answers_of_the_wrong_shape_are_data_errors(scene, tmp_path):
    grid, mask = scene["grid"], scene["mask"]
    service = PixelService({"mask": mask}, grid)

    def short(params):
        return service(params)[:-1]

    with pytest.raises(DataError, match=r"1 band\(s\) of shape \(95, 96\), expected 1 of \(96, 96\)"):
        download_image(expression(scene), grid, cache_dir=tmp_path, n_bands=1, dtype="uint8",
                       connection=pixels(short), workers=1, tile=100, policy=no_wait(), progress=False)
    with pytest.raises(DataError, match="not a numpy array"):
        download_image(expression(scene), grid, cache_dir=tmp_path, n_bands=1, dtype="uint8",
                       connection=pixels(lambda p: b"\x89PNG"), workers=1, tile=100, policy=no_wait(),
                       progress=False)
    # plain arrays (H, W, bands) are accepted as well as structured ones
    plain = download_image(expression(scene), grid, cache_dir=tmp_path / "plain", n_bands=1,
                           dtype="uint8", connection=pixels(lambda p: service(p)["mask"][..., None]),
                           tile=100, progress=False)
    assert np.array_equal(plain[0], mask)


def test_cache_is_keyed_by_the_request(scene, tmp_path):
    grid, mask = scene["grid"], scene["mask"]
    args = dict(cache_dir=tmp_path, n_bands=1, dtype="uint8", tile=100, progress=False)
    download_image(expression(scene), grid, connection=pixels(PixelService({"mask": mask}, grid)), **args)
    other = PixelService({"mask": (mask == clouds.CLOUD).astype(np.uint8)}, grid)
    got = download_image(expression(scene, "clouds only"), grid, connection=pixels(other), **args)
    assert len(other.requests) == 16 and np.array_equal(got[0], mask == clouds.CLOUD)
    assert len(list(tmp_path.iterdir())) == 2

    key = cache_key(expression(scene), grid, dtype="uint8", n_bands=1)
    assert key == cache_key(json.loads(json.dumps(expression(scene))), grid, dtype=np.uint8, n_bands=1)
    assert key != cache_key(expression(scene), grid.window(0, 0, 100, 100), dtype="uint8", n_bands=1)
    assert key != cache_key(expression(scene), grid, dtype="uint16", n_bands=1)
    with pytest.raises(ParamsError, match="cannot key"):
        cache_key(object(), grid, dtype="uint8", n_bands=1)


# ----------------------------------------------------------------------------- real client
class _FakeCall:
    def __init__(self, answer):
        self.answer = answer

    def execute(self, num_retries=None):
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class _FakeCloudImage:
    """Stands for the Cloud API resource under ``ee.data.computePixels``: answers NPY bytes."""

    def __init__(self, service: PixelService, status: dict):
        self.service, self.status = service, status

    def computePixels(self, project, body):  # the Cloud API's name
        from googleapiclient.errors import HttpError
        from httplib2 import Response

        assert body["fileFormat"] == "NPY" and "values" in body["expression"]  # encoded ee graph
        code = self.status.pop(tuple(sorted(body["grid"]["affineTransform"].items())), None)
        if code is not None:
            content = json.dumps({"error": {"code": code, "message": QUOTA_429}}).encode()
            return _FakeCall(HttpError(Response({"status": code}), content))
        buf = io.BytesIO()
        np.save(buf, self.service({**body, "fileFormat": "NUMPY_NDARRAY"}))
        return _FakeCall(buf.getvalue())


def test_default_compute_goes_through_earthengine_api(scene, tmp_path, monkeypatch):
    """With connection=None the real ``ee.data.computePixels`` builds the call (offline session)."""
    session.init_offline()
    grid, mask = scene["grid"], scene["mask"]
    service = PixelService({"mask": mask}, grid)
    first_tile = pixel_request(None, grid.window(0, 0, 96, 96), n_bands=1, dtype="uint8")
    status = {tuple(sorted(first_tile["grid"]["affineTransform"].items())): 429}
    fake = _FakeCloudImage(service, status)
    monkeypatch.setattr(ee.data, "_get_cloud_projects_raw",
                        lambda: type("P", (), {"image": lambda self: fake})())
    image = ee.Image(f"COPERNICUS/S2_CLOUD_PROBABILITY/{scene['id']}").gt(50).toUint8()
    got = download_image(image, grid, cache_dir=tmp_path, n_bands=1, dtype="uint8", tile=100,
                         workers=4, policy=no_wait(), progress=False)
    assert np.array_equal(got[0], mask)
    assert status == {} and len(service.requests) == 16  # the 429 (an EEException) was retried
    assert len(list(tmp_path.iterdir())) == 1
    assert (tmp_path / cache_key(image, grid, dtype="uint8", n_bands=1)).is_dir()


# ----------------------------------------------------------------------------- limits
def test_tiles_of_a_huge_grid_are_within_limits_and_cover_it_once():
    grid = Grid("EPSG:32633", (10.0, 0.0, 300_000.0, 0.0, -10.0, 6_000_000.0), (150_000, 200_000))
    tiles = plan_tiles(grid, n_bands=12, dtype="float64")
    rows: dict[int, int] = {}
    cols: dict[int, int] = {}
    seen = set()
    for t in tiles:
        assert t.crs == grid.crs and t.transform[0] == 10.0 and t.transform[4] == -10.0
        assert t.height * t.width * 12 * (8 + 1) <= 48_000_000 and max(t.shape) <= 32_768
        r, c = t.offset_in(grid)
        assert rows.setdefault(r, t.height) == t.height and cols.setdefault(c, t.width) == t.width
        assert (r, c) not in seen
        seen.add((r, c))
    # the row and column intervals each partition the grid and every pair is one tile
    for starts, sizes, total in ((sorted(rows), rows, grid.height), (sorted(cols), cols, grid.width)):
        assert starts[0] == 0 and all(a + sizes[a] == b for a, b in itertools.pairwise(starts))
        assert starts[-1] + sizes[starts[-1]] == total
    assert len(tiles) == len(rows) * len(cols) == len(seen)
    assert sum(t.height * t.width for t in tiles) == grid.height * grid.width
    # tiles use the budget: no more than 5 % more requests than the byte limit forces
    assert len(tiles) <= 1.05 * math.ceil(grid.height * grid.width * 12 * 9 / 48_000_000)


def test_side_limit_and_tile_cap():
    strip = Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (10, 100_000))
    tiles = plan_tiles(strip, n_bands=1, dtype="uint8")
    assert [t.width for t in tiles] == [25_000] * 4 and all(t.height == 10 for t in tiles)
    small = Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (384, 384))
    assert [t.shape for t in plan_tiles(small, n_bands=1, dtype="uint8")] == [(384, 384)]
    assert {t.shape for t in plan_tiles(small, n_bands=1, dtype="uint8", tile=100)} == {(96, 96)}
    with pytest.raises(ParamsError, match="bands cannot be requested"):
        plan_tiles(small, n_bands=MAX_BANDS + 1, dtype="uint8")
    with pytest.raises(ParamsError, match="exceed Earth Engine's limits"):
        plan_tiles(small, n_bands=1, dtype="uint8", max_bytes=60_000_000)


def test_pixel_request_format_and_refusals():
    grid = Grid("EPSG:32652", (10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0), (8000, 8000))
    tile = grid.window(4000, 2000, 4000, 6000)
    req = pixel_request("EXPR", tile, n_bands=1, dtype="uint8", band_ids=["mask"])
    assert req == {
        "expression": "EXPR", "fileFormat": "NUMPY_NDARRAY", "bandIds": ["mask"],
        "grid": {"dimensions": {"width": 6000, "height": 4000}, "crsCode": "EPSG:32652",
                 "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": 520_000.0,
                                     "shearY": 0.0, "scaleY": -10.0, "translateY": 3_960_000.0}},
    }
    # exactly at the limit: 4000 x 6000 px x (1 + 1 mask byte) = 48,000,000 bytes
    assert download.request_bytes(4000, 6000, 1, "uint8") == MAX_REQUEST_BYTES
    with pytest.raises(ParamsError, match="over the limit"):
        pixel_request("EXPR", grid.window(4000, 1999, 4000, 6001), n_bands=1, dtype="uint8")
    with pytest.raises(ParamsError, match="over the limit"):
        pixel_request("EXPR", grid.window(0, 0, 3000, 3000), n_bands=1, dtype="float64")
    wide = Grid("EPSG:32652", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (1, 40_000))
    with pytest.raises(ParamsError, match="px a side"):
        pixel_request("EXPR", wide, n_bands=1, dtype="uint8")
    with pytest.raises(ParamsError, match="one id per band"):
        pixel_request("EXPR", tile, n_bands=2, dtype="uint8", band_ids=["mask"])
    wkt = Grid('PROJCS["custom"]', grid.transform, (10, 10))
    assert "crsWkt" in pixel_request("EXPR", wkt, n_bands=1, dtype="uint8")["grid"]


def test_requests_are_sized_to_fit_and_oversized_ones_never_sent(tmp_path):
    # one float64 band of 2600 x 2600 px is 60.8 MB as Earth Engine counts it: two tiles at least
    grid = Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (2600, 2600))
    values = np.random.default_rng(0).random(grid.shape)
    service = PixelService({"v": values}, grid, delay=0)  # asserts every request is within limits
    got = download_image("EXPR", grid, cache_dir=tmp_path, n_bands=1, dtype="float64",
                         connection=pixels(service), tile=None, progress=False)
    assert np.array_equal(got[0], values) and len(service.requests) == 2
    calls: list = []
    with pytest.raises(ParamsError, match="bands cannot be requested"):
        download_image("EXPR", grid, cache_dir=tmp_path, n_bands=MAX_BANDS + 1, dtype="uint8",
                       connection=pixels(calls.append), progress=False)
    assert calls == []
