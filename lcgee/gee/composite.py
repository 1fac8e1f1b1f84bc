"""The composite built inside Earth Engine, the way :mod:`lcgee.features` builds it locally.

``S2_SR_HARMONIZED`` scenes masked with the s2cloudless + shadow mask
(:mod:`lcgee.gee.cloudmask`, same parameters as the run's ``clouds`` section), reduced with the
run's ``composite.method``:

* ``median`` -- per band median of the clear observations (``ImageCollection.median``);
* ``best`` -- all bands from the clear observation with the lowest cloud probability
  (``qualityMosaic`` on minus the probability, masked where the scene is not CLEAR);
* ``monthly`` -- a median per period (``period``: calendar months by default, ``NM`` windows
  or meteorological seasons, as ``composite.period``), bands and indices prefixed as in the
  local feature stack (``m202104_``, ``m202103p2_``, ``s2021JJA_``: :func:`period_windows`);
  with ``fill_empty`` a period's pixel without a clear observation takes the median of the
  whole collection there (``composite.empty_period: fill``).

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

import numpy as np

from lcgee import clouds
from lcgee.composite import period_label
from lcgee.errors import ParamsError
from lcgee.gee import cloudmask
from lcgee.gee.api import ee as _ee
from lcgee.gee.classify import PC_TO_EE_BANDS, S2_BANDS, feature_image
from lcgee.grid import Grid

__all__ = ["METHODS", "reduce_collection", "scene_composite", "searched_composite",
           "monthly_features", "scene_reflectance", "PERIODS", "period_windows",
           "period_features"]

METHODS = ("median", "best", "monthly")
#: Periods of the ``monthly`` method (``composite.period``): N-month windows starting in
#: January, or meteorological seasons (DJF, MAM, JJA, SON).
PERIODS = ("1M", "2M", "3M", "4M", "6M", "12M", "season")
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


def _period_length(period: str | None) -> tuple[str, int, int]:
    """``(period, months per window, month index 0-11 a window starts at)``."""
    period = period or "1M"
    if period not in PERIODS:
        raise ParamsError(f"period {period!r} is not a composite period",
                          where="composite.period", fix=f"use one of {', '.join(PERIODS)}")
    if period == "season":
        return period, 3, 11  # DJF opens in December
    return period, int(period.removesuffix("M")), 0


def _label(month_index: int, period: str) -> str:
    """The feature-name prefix of the period starting at ``month_index`` (months since year 0),
    as the local feature stack names it (:func:`lcgee.composite.period_label`)."""
    year, month = divmod(month_index, 12)
    return period_label(year, month + 1, period)


#: a date, a datetime (aware ones are taken in UTC) or a ``numpy.datetime64``
DateLike = dt.date | np.datetime64


def _month_index(when: DateLike) -> int:
    """Months since year 0 of a date, datetime (aware ones in UTC) or ``numpy.datetime64``."""
    if isinstance(when, np.datetime64):
        return int(when.astype("datetime64[M]").astype(np.int64)) + 1970 * 12
    if isinstance(when, dt.datetime) and when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.year * 12 + when.month - 1


def period_windows(start: DateLike | None, end: DateLike | None, period: str | None = "1M", *,
                   times: Sequence[DateLike] | None = None) -> list[tuple[str, str, str]]:
    """``(label, first day, first day after)`` of each period touching ``start``..``end``
    (both inclusive), in time order; the dates are ISO strings for ``filterDate`` (start
    inclusive, end exclusive, UTC).

    Periods as :func:`lcgee.composite.period_median` forms them: ``NM`` windows of N calendar
    months starting in January, ``season`` = DJF (December opens the next year's), MAM, JJA,
    SON. With ``times`` (acquisition times of the scenes) only the periods holding at least one
    of them are kept, as the local composite has one period per period with a scene; ``start``
    and ``end`` may then be None (the first and last time).
    """
    period, n, anchor = _period_length(period)
    keep = None
    if times is not None:
        keep = {_month_index(t) for t in times}
        if not keep:
            raise ParamsError("no scene times given", where="period_windows",
                              fix="pass the scenes' acquisition times, or times=None")
    elif start is None or end is None:
        raise ParamsError("period windows need start and end dates (or times)",
                          where="period_windows", fix="pass start, end")
    first = _month_index(start) if start is not None else min(keep or [0])
    last = _month_index(end) if end is not None else max(keep or [0])
    out = []
    k = first - (first - anchor) % n
    while k <= last:
        if keep is None or any(k <= m < k + n for m in keep):
            (y0, m0), (y1, m1) = divmod(k, 12), divmod(k + n, 12)
            out.append((_label(k, period), f"{y0:04d}-{m0 + 1:02d}-01",
                        f"{y1:04d}-{m1 + 1:02d}-01"))
        k += n
    return out


def period_features(collection: Any, windows: Sequence[tuple[str, str, str]],
                    bands: Sequence[str], index_names: Sequence[str], *,
                    fill_empty: bool = False) -> Any:
    """Median per window (:func:`period_windows`) with the indices, bands named
    ``<label>_<band or index>`` in window order, bands then indices (the local feature stack's
    order, :func:`lcgee.features.features_from_stack`).

    A window without scenes gives fully masked bands (never a band-less image). With
    ``fill_empty`` (``composite.empty_period: fill``) every masked pixel of a window's bands
    takes the median of the whole ``collection`` there (``unmask(whole, sameFootprint=False)``,
    before the indices, as the local ``fill_empty``); without it gaps stay masked. Dropping
    periods that are empty everywhere (``empty_period: drop``) depends on the data and is not
    done in the graph: a classifier selects its features by name, so those periods (not
    among the model's features) are never read.
    """
    ee = _ee()
    bands = _check("monthly", bands)
    if not windows:
        raise ParamsError("no composite period to build", where="composite.period",
                          fix="check the dates (or scene times) cover at least one period")
    whole = reduce_collection(collection, "median", bands) if fill_empty else None
    names = list(bands) + list(index_names)
    layers = []
    for label, first, after in windows:
        image = reduce_collection(collection.filterDate(first, after), "median", bands)
        if whole is not None:
            image = image.unmask(whole, False)
        stack = feature_image(image, names, available_bands=bands)
        layers.append(stack.select(names, [f"{label}_{n}" for n in names]))
    return ee.Image.cat(layers)


def monthly_features(collection: Any, start: dt.date, end: dt.date, bands: Sequence[str],
                     index_names: Sequence[str], *, period: str | None = "1M",
                     fill_empty: bool = False, times: Sequence[Any] | None = None) -> Any:
    """Median per period (calendar months by default) with the indices, bands named
    ``<label>_<band>`` (as the local ``monthly`` feature stack): :func:`period_features` over
    :func:`period_windows` of ``start``..``end`` (and ``times``). Periods without scenes give
    fully masked bands, or with ``fill_empty`` the whole collection's median."""
    return period_features(collection, period_windows(start, end, period, times=times), bands,
                           index_names, fill_empty=fill_empty)


def scene_composite(scene_indices: Sequence[str], *, method: str = "median",
                    bands: Sequence[str] = S2_BANDS, cloud: clouds.CloudMaskParams | None = None,
                    crs: Grid | str | None = None,
                    dates: tuple[dt.date, dt.date] | None = None,
                    index_names: Sequence[str] = (), period: str | None = "1M",
                    fill_empty: bool = False, times: Sequence[Any] | None = None) -> Any:
    """The composite of exactly these scenes (``system:index`` values, e.g. from the run's STAC
    search via :func:`lcgee.gee_index`), masked with ``cloud`` parameters
    (:func:`lcgee.masks.cloud_params`; the tutorial's when None); ``crs`` (a
    :class:`lcgee.grid.Grid`, or a CRS code) pins the mask's working grids.

    ``monthly``: the periods (``period``, ``fill_empty``: :func:`period_features`) touching
    ``dates``, or with ``times`` (the scenes' acquisition times) exactly the periods holding
    a scene, as the local composite forms them."""
    ee = _ee()
    _check(method, bands)
    images = [_scene(*cloudmask.scene_images(index), cloud, crs, bands, method == "best")
              for index in scene_indices]
    collection = ee.ImageCollection.fromImages(images)
    if method == "monthly":
        if dates is None and times is None:
            raise ParamsError("a monthly composite needs the dates", where="scene_composite",
                              fix="pass dates=(start, end) or the scenes' times=")
        start, end = dates if dates is not None else (None, None)
        return monthly_features(collection, start, end, bands, index_names, period=period,
                                fill_empty=fill_empty, times=times)
    return reduce_collection(collection, method, bands)


def searched_composite(lonlat_bbox: Sequence[float], start: dt.date, end: dt.date, *,
                       cloud: clouds.CloudMaskParams, cloud_filter: float, method: str,
                       bands: Sequence[str], index_names: Sequence[str] = (),
                       months: tuple[dt.date, dt.date] | None = None,
                       period: str | None = "1M", fill_empty: bool = False) -> Any:
    """The composite of the scenes Earth Engine finds over a lon/lat box (any region size).

    Scenes: ``S2_SR_HARMONIZED`` over ``lonlat_bbox`` from ``start`` to ``end`` (exclusive, as
    ``filterDate``) with ``CLOUDY_PIXEL_PERCENTAGE <= cloud_filter``, joined with their
    s2cloudless probabilities; masked with ``cloud`` (:func:`lcgee.masks.cloud_params`);
    reduced with ``method``. Returns reflectance with lcgee band names, or (``monthly``) the
    feature stack of the periods (``period``, ``fill_empty``: :func:`period_features`) touching
    ``months`` (default ``(start, end)``); the whole-range median of ``fill_empty`` is the
    median of every scene found.
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
        return monthly_features(collection, first, last, bands, list(index_names),
                                period=period, fill_empty=fill_empty)
    return reduce_collection(collection, "median", bands)
