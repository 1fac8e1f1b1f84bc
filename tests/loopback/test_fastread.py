"""Direct aligned reads (lcgee.fastread) give exactly odc-stac's values, and the imagery stages'
outputs are bit-identical to the plain reference functions on the small demo world."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lcgee import clouds, fastread, features, load, masks
from lcgee.params import load_params
from lcgee.signing import sign_href

ASSETS = ["B02", "B05", "B09", "B8A", "SCL"]


def _odc_only(monkeypatch, items, grid, assets, **kw):
    monkeypatch.setattr(fastread, "ENABLED", False)
    try:
        return load.load_stack(items, grid, assets, **kw)
    finally:
        monkeypatch.setattr(fastread, "ENABLED", True)


def _is_direct(arr) -> bool:
    return any(str(k).startswith("lcgee-read-") for k in arr.data.dask.layers)


@pytest.mark.parametrize("window", [None, (37, 53, 190, 171)])
def test_direct_reads_equal_odc_stac(small_search, small_world, monkeypatch, window):
    """10, 20 and 60 m bands and SCL, on the full grid and on a window whose edges are not
    on the 20 / 60 m lattice, chunked into uneven tiles."""
    _, items = small_search
    grid = small_world.grid if window is None else small_world.grid.window(*window)
    fast = load.load_stack(items, grid, ASSETS, chunk=128, time_chunk=-1)
    assert all(_is_direct(fast[a]) for a in ASSETS)
    ref = _odc_only(monkeypatch, items, grid, ASSETS, chunk=128, time_chunk=-1)
    assert not any(_is_direct(ref[a]) for a in ASSETS)
    for a in ASSETS:
        assert fast[a].dtype == ref[a].dtype == np.uint16
        assert fast[a].chunks == ref[a].chunks
        np.testing.assert_array_equal(fast[a].values, ref[a].values)
    for c in ("time", "y", "x", "id", "sun_azimuth", "offset"):
        np.testing.assert_array_equal(fast[c].values, ref[c].values)


def test_probability_layer_with_nodata_equals_odc_stac(small_search, small_world, monkeypatch):
    client, items = small_search
    grid = small_world.grid
    fast, _ = masks.load_probability(client, items, grid, chunk=256)
    assert _is_direct(fast)
    monkeypatch.setattr(fastread, "ENABLED", False)
    ref, _ = masks.load_probability(client, items, grid, chunk=256)
    np.testing.assert_array_equal(fast.values, ref.values)


def test_unaligned_grid_keeps_odc_stac(small_search, small_world):
    """A grid off the 10 m lattice (5 m shift) cannot be read directly: odc-stac resamples."""
    _, items = small_search
    g = small_world.grid.window(0, 0, 64, 64)
    a, b, c, d, e, f = g.transform
    shifted = type(g)(g.crs, (a, b, c + 5.0, d, e, f), g.shape)
    assert fastread.asset_layout(items[0], "B02", shifted) is None
    # the demo world, like Planetary Computer, declares no nodata (no raster:bands)
    assert fastread.asset_layout(items[0], "B02", g) == (1, 0, 0, 384, 384, None)
    ds = load.load_stack(items[:2], shifted, ["B02"], chunk=64)
    assert not _is_direct(ds["B02"])


def test_stage_outputs_equal_the_reference_functions(small_search, small_world, tmp_path):
    """Masks (s2cloudless_mask on whole scenes) and composite + count (np.nanmedian over
    masked reflectance from odc-stac-free rasterio reads) from the stage functions."""
    import rasterio

    client, items = small_search
    grid = small_world.grid
    # the reference reads files as they lie on the grid: scenes of the grid's UTM zone only (the
    # other zone's scenes go through odc-stac, compared with direct reads above)
    items = [it for it in items if fastread.asset_layout(it, "B08", grid) is not None]
    assert len(items) >= 12
    params = load_params("params/demo.yaml", {"load.chunk": 128, "clouds.source": "local"})
    got = masks.scene_masks(items, grid, params.clouds, client=client, chunk=128)
    masks.write_masks(got, grid, tmp_path / "masks", key="k", progress=False)
    result = features.build_composite(items, _table(items), grid, params, client=client,
                                      masks_dir=tmp_path / "masks")
    features.write_outputs(result, grid, tmp_path)
    ids = [it.id for it in items]
    lc_masks = masks.read_masks(tmp_path / "masks", ids).values

    def raw(href: str) -> np.ndarray:
        with rasterio.open(sign_href(href)) as src:  # the demo server wants a token
            a = src.read(1)
        f = grid.height // a.shape[0]
        return np.repeat(np.repeat(a, f, 0), f, 1)

    table = _table(items).set_index("id")
    prob_items = {p.id: p for p in masks.fetch_items(
        client, masks.PROBABILITY_COLLECTION, [t for t in table["gee_index"]], required=False)}

    def refl(it, band):
        dn = raw(it.assets[band].href).astype("float32")
        shift = np.float32(1000 if table.loc[it.id, "offset"] else 0)
        v = (np.clip(dn - shift, 0, None) / np.float32(10000)).astype("float32")
        return np.where(dn == 0, np.float32(np.nan), v)

    checked = 0
    for k, it in enumerate(items):
        p = prob_items.get(table.loc[it.id, "gee_index"])
        if p is None:
            continue
        prob = raw(p.assets["probability"].href).astype("float32")
        prob[prob > 100] = np.nan
        ref = clouds.s2cloudless_mask(prob, refl(it, "B08"), raw(it.assets["SCL"].href),
                                      sun_azimuth=float(table.loc[it.id, "sun_azimuth"]),
                                      resolution=grid.resolution,
                                      origin=(grid.bounds[0], grid.bounds[3]),
                                      anchor=(grid.bounds[0], grid.bounds[3]),  # grid corner
                                      **masks.cloud_params(params.clouds).as_kwargs())
        np.testing.assert_array_equal(lc_masks[k], ref, err_msg=it.id)
        checked += 1
    assert checked >= len(items) - 2
    with rasterio.open(tmp_path / "features.tif") as src:
        feats = src.read()
    with rasterio.open(tmp_path / "count.tif") as src:
        count = src.read(1)
    valid = np.ones(lc_masks.shape, bool)
    for b, band in enumerate(params.features.bands):
        stack = np.stack([refl(it, band) for it in items])
        stack[lc_masks != clouds.CLEAR] = np.nan
        valid &= np.isfinite(stack)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(stack, axis=0)
        np.testing.assert_array_equal(feats[b].view("uint32"), expected.view("uint32"))
    np.testing.assert_array_equal(count, valid.sum(0))
    assert 0 < valid.sum(0).mean() < len(items)


def _table(items):
    from lcgee.scenes import scene_table

    return scene_table(items)


def test_masks_from_files_reuse_the_written_masks(small_search, small_world, tmp_path):
    """Notebook 02 compares sources and scores quality on masks read back from its files,
    not recomputed from the imagery (which read every scene's probability, B08 and SCL
    again)."""
    client, items = small_search
    grid = small_world.grid
    cfg = load_params("params/demo.yaml", {"clouds.source": "local"}).clouds
    got = masks.scene_masks(items[:3], grid, cfg, client=client, chunk=128)
    assert any(_is_direct(m) for _, _, m in got)
    masks.write_masks(got, grid, tmp_path, key="k", progress=False)
    again = masks.from_files(got, tmp_path, chunk=128)
    assert [(i, s) for i, s, _ in again] == [(i, s) for i, s, _ in got]
    assert not any(_is_direct(m) for _, _, m in again)
    for (_, _, a), (_, _, b) in zip(got, again):
        assert b.dims == ("y", "x") and b.dtype == np.uint8
        np.testing.assert_array_equal(a.values, b.values)


def test_a_file_off_the_grid_lattice_is_refused_by_name():
    """The STAC item chose the direct path, but the file itself lies 5 m off the grid."""
    from types import SimpleNamespace

    from affine import Affine

    from lcgee.errors import DataError

    corner = (600000.0, 3800000.0, 10.0)
    on = SimpleNamespace(transform=Affine(10, 0, 599990.0, 0, -10, 3800020.0), height=100, width=100)
    assert fastread._file_layout(on, corner, (64, 64), "S2X", "B04", "http://h/B04.tif?sig=x") == (1, 2, 1)
    off = SimpleNamespace(transform=Affine(10, 0, 599995.0, 0, -10, 3800020.0), height=100, width=100)
    with pytest.raises(DataError, match=r"B04 of scene S2X \(http://h/B04.tif\) does not lie"):
        fastread._file_layout(off, corner, (64, 64), "S2X", "B04", "http://h/B04.tif?sig=x")
