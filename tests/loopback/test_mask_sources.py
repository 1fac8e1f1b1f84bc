"""The cloud-mask stage's sources on the small world (loopback STAC API): each scene's mask
equals the reference algorithm run on that scene alone -- :func:`lcgee.clouds.s2cloudless_mask`
(whole scene, no tiles, no Dask) for ``local``, :func:`lcgee.clouds.scl_mask` for ``scl`` --
and scenes go to the fallback when the primary source cannot serve them."""

from __future__ import annotations

import numpy as np
import pytest

from lcgee import clouds, load, masks
from lcgee.params import CloudParams


@pytest.fixture(scope="module")
def items(small_search):
    client, found = small_search
    return client, found[:5]


def _reference(item, grid, cfg, client, chunk):
    """The mask of one scene from the published algorithms on plain numpy arrays.

    Loaded with the stage's chunk size: scenes of the neighbouring UTM zone are warped chunk by
    chunk, and the warp picks a few different nearest neighbours with the chunk size (measured,
    odc-stac path: B08 of one small-world scene differs in 217 of 147456 pixels, SCL in 12,
    between chunks 128 and 384).
    """
    ds = load.load_stack([item], grid, ["B08", "SCL"], chunk=chunk)
    nir = load.reflectance(ds, ["B08"]).sel(band="B08").values[0]
    scl = ds["SCL"].values[0]
    prob, missing = masks.load_probability(client, [item], grid, chunk=chunk)
    if missing:
        return "scl", clouds.scl_mask(scl)
    left, _, _, top = grid.bounds
    azimuth = float(item.properties["s2:mean_solar_azimuth"])
    return "local", clouds.s2cloudless_mask(
        prob.values[0], nir, scl, sun_azimuth=azimuth, resolution=grid.resolution,
        origin=(left, top), anchor=(left, top), **masks.cloud_params(cfg).as_kwargs())


@pytest.mark.parametrize("cfg", [CloudParams(source="local", fallback="scl"),
                                 CloudParams(source="local", fallback="scl", preset="aggressive",
                                             buffer=40)], ids=["tutorial", "aggressive"])
def test_local_masks_equal_the_reference_scene_by_scene(items, small_world, cfg):
    client, found = items
    grid = small_world.grid
    # chunk 128 on the 384 px grid: the tutorial's masks are computed in tiles with halos.
    halo = clouds.halo_pixels(grid.resolution, **masks.cloud_params(cfg).as_kwargs())
    tiled = len(clouds._tile_chunks(grid.width, 128, halo)) > 1
    assert tiled == (cfg.preset == "tutorial")
    got = masks.scene_masks(found, grid, cfg, client=client, chunk=128)
    assert [i for i, _, _ in got] == [it.id for it in found]  # the items' order
    sources = set()
    for (item_id, source, mask), item in zip(got, found, strict=True):
        want_source, want = _reference(item, grid, cfg, client, 128)
        assert source == want_source, item_id
        sources.add(source)
        np.testing.assert_array_equal(mask.values, want, err_msg=item_id)
    assert "local" in sources
    codes = np.unique(np.stack([m.values for _, _, m in got]))
    assert {int(clouds.CLOUD), int(clouds.CLEAR)} <= set(codes.tolist())


def test_unreachable_earth_engine_falls_back_to_scl(items, small_world, caplog):
    client, found = items
    grid = small_world.grid
    cfg = CloudParams(source="gee", fallback="scl")
    with caplog.at_level("WARNING", logger="lcgee.masks"):
        got = masks.scene_masks(found[:2], grid, cfg, client=client, chunk=128)
    assert "cloud source gee unavailable" in caplog.text and "using scl" in caplog.text
    assert [s for _, s, _ in got] == ["scl", "scl"]
    scl = load.load_stack(found[:2], grid, ["SCL"], chunk=128)["SCL"].values
    for k, (_, _, mask) in enumerate(got):
        np.testing.assert_array_equal(mask.values, clouds.scl_mask(scl[k]))
