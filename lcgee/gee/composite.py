"""The composite built inside Earth Engine, the way :mod:`lcgee.features` builds it locally.

``S2_SR_HARMONIZED`` scenes masked with the s2cloudless + shadow mask
(:mod:`lcgee.gee.cloudmask`, same parameters as the run's ``clouds`` section), reduced with the
run's ``composite.method``:

* ``median`` -- per band median of the clear observations (``ImageCollection.median``);
* ``best`` -- all bands from the clear observation with the lowest cloud probability
  (``qualityMosaic`` on minus the probability, masked where the scene is not CLEAR);
* ``monthly`` -- a median per calendar month, bands and indices prefixed ``mYYYYMM_`` as in
  the local feature stack.

The result holds reflectance (digital numbers / 10,000) with lcgee band names (``B02``...), so
:func:`lcgee.gee.classify.feature_image` adds the indices from the same definitions as locally.

Two ways to choose the scenes: :func:`searched_composite` searches Earth Engine by area,
dates and scene cloud cover (``filterBounds`` + ``filterDate`` + the tutorial's join, for
regions of any size), :func:`scene_composite` takes the ``system:index`` list of the run's STAC
search (the same scenes as the local composite; its graph can be evaluated offline).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from lcgee import clouds
from lcgee.errors import ParamsError
from lcgee.gee import cloudmask
from lcgee.gee.api import ee as _ee
from lcgee.gee.classify import PC_TO_EE_BANDS, S2_BANDS, feature_image
from lcgee.grid import Grid

__all__ = ["METHODS", "reduce_collection", "scene_composite", "searched_composite",
           "monthly_features", "scene_reflectance"]

METHODS = ("median", "best", "monthly")
_QUALITY = "lcgee_quality"



def _check(method: str, bands: Sequence[str]) -> list[str]:
    if method not in METHODS:
        raise ParamsError(f"unknown composite method {method!r}", where="composite.method",
                          fix=f"use one of {', '.join(METHODS)}")
    unknown = [b for b in bands if b not in PC_TO_EE_BANDS]
    if unknown:
        raise ParamsError(f"bands {unknown} are not Sentinel-2 bands", where="features.bands",
                          fix=f"choose from {', '.join(S2_BANDS)}")
    return list(bands)


def _with_bands(image: Any, bands: Sequence[str]) -> Any:
    """``image`` with at least ``bands``: fully masked bands where it has none.

    Reducing an empty collection (a month without scenes) gives an image with no bands, and
    selecting from it fails on the server ("Band pattern ... was applied to an Image with no
    bands", swisstopo/topo-satromo#101). ``addBands(..., overwrite=True)`` onto masked
    constants keeps the reduced bands where they exist.
    """
    ee = _ee()
    names = list(bands)
    empty = ee.Image.constant([0] * len(names)).rename(names).updateMask(0)
    return empty.addBands(image, None, True).select(names)


def scene_reflectance(sr: Any, bands: Sequence[str]) -> Any:
    """A (masked) ``S2_SR_HARMONIZED`` scene as float32 reflectance with lcgee band names,
    computed as :func:`lcgee.load.reflectance` computes it: ``float32(DN) / 10000`` rounded
    to float32 (``toFloat`` before and after the division; a correctly rounded double
    quotient rounded to float32 is the float32 quotient). The scene's properties are kept
    (``addBands`` onto the scene, then ``select``): ``filterDate`` needs
    ``system:time_start``, which arithmetic results are not documented to carry."""
    refl = (sr.select([PC_TO_EE_BANDS[b] for b in bands], list(bands)).toFloat()
            .divide(10000).toFloat())
    return sr.addBands(refl, None, True).select(list(bands))


def _scene(sr: Any, prob: Any, params: clouds.CloudMaskParams | None, crs: Grid | str | None,
           bands: Sequence[str], quality: bool) -> Any:
    """One scene for the composite: masked (not CLEAR -> masked) float32 reflectance, plus
    (``quality``) minus its cloud probability for ``qualityMosaic``, masked like the scene:
    ``qualityMosaic`` orders by the quality band alone, so a cloud, shadow or buffered
    observation, or one missing any of ``bands``, must have no quality value to win with (as
    the local best pixel, which needs every band valid)."""
    clear = cloudmask.mask_codes(sr, prob, params, crs=crs).eq(clouds.CLEAR)
    image = scene_reflectance(sr.updateMask(clear), bands)
    if not quality:
        return image
    score = prob.select("probability").multiply(-1).rename([_QUALITY]).updateMask(clear)
    for band in bands:
        score = score.updateMask(sr.select([PC_TO_EE_BANDS[band]]).mask())
    return image.addBands(score)


def reduce_collection(collection: Any, method: str, bands: Sequence[str]) -> Any:
    """``median`` or ``best`` of a collection of :func:`scene_reflectance` images (``best``:
    with the quality band of :func:`_scene`), float32 reflectance with lcgee band names
    (``monthly``: see :func:`monthly_features`). An empty collection gives the bands fully
    masked. The median of an even count is the mean of the middle two, rounded to float32
    (``toFloat``), which equals the local float32 ``(a + b) / 2``."""
    bands = _check(method, bands)
    if method == "median":
        return _with_bands(collection.median(), bands).toFloat()
    if method == "best":
        return _with_bands(collection.qualityMosaic(_QUALITY), bands).toFloat()
    raise ParamsError("the monthly composite is a feature stack", where="composite.method",
                      fix="use monthly_features for method 'monthly'")


def _months(start: dt.date, end: dt.date) -> list[tuple[str, str, str]]:
    """``(prefix, first day, first day of next month)`` for each calendar month touched."""
    out = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        nxt = (year + month // 12, month % 12 + 1)
        out.append((f"m{year:04d}{month:02d}_", f"{year:04d}-{month:02d}-01",
                    f"{nxt[0]:04d}-{nxt[1]:02d}-01"))
        year, month = nxt
    return out


def monthly_features(collection: Any, start: dt.date, end: dt.date, bands: Sequence[str],
                     index_names: Sequence[str]) -> Any:
    """Median per calendar month with the indices, bands named ``mYYYYMM_<band>`` (as the
    local ``monthly`` feature stack). Months without scenes give fully masked bands."""
    ee = _ee()
    bands = _check("monthly", bands)
    layers = []
    for prefix, first, nxt in _months(start, end):
        month = reduce_collection(collection.filterDate(first, nxt), "median", bands)
        names = list(bands) + list(index_names)
        stack = feature_image(month, names, available_bands=bands)
        layers.append(stack.select(names, [prefix + n for n in names]))
    return ee.Image.cat(layers)


def scene_composite(scene_indices: Sequence[str], *, method: str = "median",
                    bands: Sequence[str] = S2_BANDS, cloud: clouds.CloudMaskParams | None = None,
                    crs: Grid | str | None = None,
                    dates: tuple[dt.date, dt.date] | None = None,
                    index_names: Sequence[str] = ()) -> Any:
    """The composite of exactly these scenes (``system:index`` values, e.g. from the run's STAC
    search via :func:`lcgee.gee_index`), masked with ``cloud`` parameters
    (:func:`lcgee.masks.cloud_params`; the tutorial's when None); ``crs`` (a
    :class:`lcgee.grid.Grid`, or a CRS code) pins the mask's working grids."""
    ee = _ee()
    _check(method, bands)
    images = [_scene(*cloudmask.scene_images(index), cloud, crs, bands, method == "best")
              for index in scene_indices]
    collection = ee.ImageCollection.fromImages(images)
    if method == "monthly":
        if dates is None:
            raise ParamsError("a monthly composite needs the dates", where="scene_composite",
                              fix="pass dates=(start, end)")
        return monthly_features(collection, dates[0], dates[1], bands, index_names)
    return reduce_collection(collection, method, bands)


def searched_composite(lonlat_bbox: Sequence[float], start: dt.date, end: dt.date, *,
                       cloud: clouds.CloudMaskParams, cloud_filter: float, method: str,
                       bands: Sequence[str], index_names: Sequence[str] = (),
                       months: tuple[dt.date, dt.date] | None = None) -> Any:
    """The composite of the scenes Earth Engine finds over a lon/lat box (any region size).

    Scenes: ``S2_SR_HARMONIZED`` over ``lonlat_bbox`` from ``start`` to ``end`` (exclusive, as
    ``filterDate``) with ``CLOUDY_PIXEL_PERCENTAGE <= cloud_filter``, joined with their
    s2cloudless probabilities; masked with ``cloud`` (:func:`lcgee.masks.cloud_params`);
    reduced with ``method``. Returns reflectance with lcgee band names, or (``monthly``) the
    feature stack of the calendar months of ``months`` (default ``(start, end)``).
    :func:`lcgee.ee_stage.composite_for_params` calls it with a run's params.
    """
    region = _ee().Geometry.Rectangle(list(lonlat_bbox), "EPSG:4326", False)
    bands = list(bands)
    base = cloudmask.joined_collection(region, start.isoformat(), end.isoformat(),
                                       cloud_filter=cloud_filter)
    collection = cloudmask.map_scenes(
        base, lambda sr, prob: _scene(sr, prob, cloud, None, bands, method == "best"))
    if method == "best":
        return reduce_collection(collection, "best", bands)
    if method == "monthly":
        first, last = months or (start, end)
        return monthly_features(collection, first, last, bands, list(index_names))
    return reduce_collection(collection, "median", bands)
