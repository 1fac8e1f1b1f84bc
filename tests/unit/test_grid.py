"""The one grid: construction, alignment and conversions."""

from __future__ import annotations

import pytest

from lcgee.errors import ParamsError
from lcgee.grid import Grid, utm_epsg


def test_utm_zone_for_fukuoka():
    assert utm_epsg(130.4, 33.6) == 32652
    assert utm_epsg(-70.0, -33.0) == 32719


def test_from_bbox_picks_utm_and_snaps():
    g = Grid.from_bbox((130.3, 33.5, 130.45, 33.65), 10)
    assert g.crs == "EPSG:32652"
    left, _, _, top = g.bounds
    assert left % 10 == 0 and top % 10 == 0
    west, south, east, north = g.lonlat_bbox
    assert west <= 130.3 and east >= 130.45 and south <= 33.5 and north >= 33.65


def test_crop_is_aligned_and_offset():
    g = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (1536, 1536))
    sub = g.crop((620640, 3718320, 627040, 3724720))
    assert sub.shape == (640, 640)
    assert sub.offset_in(g) == (64, 64)
    assert sub.resolution == 10


def test_ee_params_and_geobox():
    g = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (20, 30))
    ee = g.ee_params()
    assert ee == {"crs": "EPSG:32652", "crsTransform": [10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0],
                  "dimensions": "30x20"}
    gb = g.geobox
    assert gb.shape == (20, 30) and gb.crs.epsg == 32652
    assert Grid.from_dict(g.to_dict()) == g
    assert len(g.xs) == 30 and g.xs[0] == 620005.0 and g.ys[0] == 3725355.0


def test_bad_grid_rejected():
    with pytest.raises(ParamsError):
        Grid("EPSG:32652", (10.0, 0.0, 0.0, 0.0, 10.0, 0.0), (5, 5))
    g = Grid("EPSG:32652", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), (5, 5))
    with pytest.raises(ParamsError, match="do not overlap"):
        g.crop((1000, 1000, 2000, 2000))


def test_offset_in_misaligned_grids_is_a_clear_error():
    from lcgee.errors import DataError

    g = Grid("EPSG:32652", (10.0, 0.0, 620000.0, 0.0, -10.0, 3725360.0), (100, 100))
    shifted = Grid("EPSG:32652", (10.0, 0.0, 620005.0, 0.0, -10.0, 3725360.0), (10, 10))
    with pytest.raises(DataError, match="not on a pixel corner") as err:
        shifted.offset_in(g)
    assert err.value.where == "Grid.offset_in" and err.value.fix
    coarse = Grid("EPSG:32652", (20.0, 0.0, 620000.0, 0.0, -20.0, 3725360.0), (10, 10))
    with pytest.raises(DataError, match="differ in resolution or CRS"):
        coarse.offset_in(g)
