"""The s2cloudless + shadow cloud mask of the Earth Engine tutorial, as Earth Engine graphs.

Mirrors :func:`lcgee.clouds.s2cloudless_mask` step by step, with the same parameter names
(``cld_prb_thresh``, ``nir_drk_thresh``, ``cld_prj_dist``, ``buffer``, ``exact_buffer``) and the
same output codes (:class:`lcgee.clouds.MaskCode`: 0 clear, 1 cloud, 2 shadow, 255 nodata):

1. ``COPERNICUS/S2_SR_HARMONIZED`` and ``COPERNICUS/S2_CLOUD_PROBABILITY`` images of one
   ``system:index`` (:func:`scene_images`; for collections the tutorial's ``saveFirst`` join,
   :func:`joined_collection`);
2. clouds = probability > ``cld_prb_thresh``; dark = B8 < ``nir_drk_thresh`` x 10,000 and
   SCL != 6 (water);
3. ``directionalDistanceTransform(90 - MEAN_SOLAR_AZIMUTH_ANGLE, cld_prj_dist * 10)`` evaluated
   at 100 m (``reproject``), shadows = projected and dark;
4. ``focalMin(2)`` then ``focalMax(buffer * 2 / 20)`` (``buffer / 20`` with ``exact_buffer``)
   evaluated at 20 m, once for clouds alone and once for clouds or shadows, to tell the codes
   apart.

Two deliberate differences from the tutorial's literal code, neither changing pixels inside a
scene: masked pixels are made explicit before the projection and the morphology (clouds and dark
pixels are 0 there, and the erosion ignores them) so the result does not depend on how focal
operations treat masked neighbours, which Earth Engine does not document; and ``crs`` can pin the
working grids to the CRS the mask is downloaded in (the tutorial uses each image's own
projection, ``img.select(0).projection()``). Pixels without probability or B8 are NODATA.

Everything here only builds graphs; :mod:`lcgee.gee.offline` evaluates them on local arrays and
:mod:`lcgee.gee.download` fetches them onto a grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.std import tqdm

from lcgee import clouds
from lcgee.errors import EarthEngineError
from lcgee.gee.api import ee as _ee
from lcgee.gee.connection import EarthEngineConnection, live_or
from lcgee.gee.download import download_image
from lcgee.gee.retry import RetryPolicy, call_with_backoff
from lcgee.grid import Grid
from lcgee.scenes import gee_index

__all__ = [
    "SR_COLLECTION",
    "PROBABILITY_COLLECTION",
    "MASK_BAND",
    "scene_images",
    "mask_codes",
    "tutorial_mask",
    "masked_image",
    "joined_collection",
    "masked_collection",
    "map_scenes",
    "scene_collection",
    "confirm_matches",
    "download_masks",
]

SR_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
PROBABILITY_COLLECTION = "COPERNICUS/S2_CLOUD_PROBABILITY"
MASK_BAND = "cloud_mask"
_SCL_WATER = 6
_SR_SCALE = 10000



def scene_images(index: str) -> tuple[Any, Any]:
    """``(S2_SR_HARMONIZED, S2_CLOUD_PROBABILITY)`` images of one ``system:index``."""
    ee = _ee()
    return ee.Image(f"{SR_COLLECTION}/{index}"), ee.Image(f"{PROBABILITY_COLLECTION}/{index}")


def _params(cld_prb_thresh: float, nir_drk_thresh: float, cld_prj_dist: float, buffer: float,
            exact_buffer: bool) -> tuple[float, float, int, float]:
    clouds._check_params(0.0, 1.0, cld_prb_thresh, nir_drk_thresh, cld_prj_dist, buffer)
    steps = round(cld_prj_dist * 1000.0 / clouds.PROJECTION_SCALE)
    return (float(cld_prb_thresh), float(nir_drk_thresh) * _SR_SCALE, steps,
            clouds.dilation_radius(buffer, exact_buffer=exact_buffer))


def _reproject(image: Any, sr: Any, crs: str | None, anchor: tuple[float, float] | None,
               scale: float) -> Any:
    """``image`` evaluated on a ``scale`` m grid: the tutorial's scaled scene projection, or,
    with ``crs`` pinned, cells anchored at ``anchor`` by an explicit ``crsTransform``
    (``ee.Projection(crs)`` alone has the identity transform: cells from the CRS origin)."""
    if not crs:
        return image.reproject(crs=sr.select(0).projection(), scale=scale)
    if anchor is None:
        raise EarthEngineError("a pinned crs needs the anchor of its working grids",
                               where="cloudmask.mask_codes",
                               fix="pass anchor=(left, top) of the download grid")
    x0, y0 = (float(v) for v in anchor)
    return image.reproject(crs=crs, crsTransform=[scale, 0, x0, 0, -scale, y0])


def _layers(sr: Any, prob: Any, *, cld_prb_thresh: float, nir_drk_thresh: float,
            cld_prj_dist: float, buffer: float, exact_buffer: bool, crs: str | None,
            anchor: tuple[float, float] | None = None) -> dict[str, Any]:
    """The tutorial's intermediate layers (all explicit 0/1 images, no masked pixels inside)."""
    ee = _ee()
    thresh, dark_dn, steps, radius = _params(cld_prb_thresh, nir_drk_thresh, cld_prj_dist,
                                             buffer, exact_buffer)
    probability = prob.select("probability")
    nir = sr.select("B8")
    # mask() keeps the input's footprint, so the test is itself masked outside a granule, and
    # where() keeps the input where the test is masked: unmask it so NODATA lands there too.
    valid = probability.mask().And(nir.mask()).unmask(0, False)
    is_cloud = probability.gt(thresh).unmask(0, False)
    dark = nir.lt(dark_dn).And(sr.select("SCL").neq(_SCL_WATER)).unmask(0, False)
    azimuth = ee.Number(90).subtract(ee.Number(sr.get("MEAN_SOLAR_AZIMUTH_ANGLE")))
    projected = (_reproject(is_cloud.directionalDistanceTransform(azimuth, steps), sr, crs,
                            anchor, clouds.PROJECTION_SCALE)
                 .select("distance").mask())
    shadows = projected.And(dark)
    ignore = valid.Not()

    def open_and_buffer(image: Any) -> Any:
        # focalMin(2) with nodata ignored (treated as set), nodata left out of focalMax.
        eroded = image.Or(ignore).focalMin(clouds.EROSION_RADIUS).And(valid)
        return _reproject(eroded.focalMax(radius), sr, crs, anchor, clouds.MORPHOLOGY_SCALE)

    return {"valid": valid, "clouds": is_cloud, "dark": dark, "shadows": shadows,
            "cloud_final": open_and_buffer(is_cloud),
            "union": open_and_buffer(is_cloud.Or(shadows))}


def mask_codes(sr: Any, prob: Any, params: clouds.CloudMaskParams | None = None, *,
               crs: Grid | str | None = None, anchor: tuple[float, float] | None = None) -> Any:
    """One band ``cloud_mask`` (uint8) of :class:`lcgee.clouds.MaskCode` values.

    ``sr`` is an ``S2_SR_HARMONIZED`` image (DN, bands ``B8`` and ``SCL``, property
    ``MEAN_SOLAR_AZIMUTH_ANGLE``), ``prob`` its ``S2_CLOUD_PROBABILITY`` image. Codes as in
    :func:`lcgee.clouds.s2cloudless_mask`: SHADOW where the buffered clouds-or-shadows are,
    CLOUD where the buffered clouds are (except dark projected pixels outside a cloud), NODATA
    where probability or B8 is missing. ``crs`` fixes the 100 m / 20 m working grids' CRS
    (default: the image's own projection, as the tutorial); with it ``anchor`` (the download
    grid's top-left corner) fixes their origin with an explicit ``crsTransform``, the origin
    :func:`lcgee.clouds.local_masks` uses. ``crs`` may be a :class:`lcgee.grid.Grid`: its CRS
    and top-left corner. ``params``: the tutorial's defaults when None.
    """
    ee = _ee()
    if hasattr(crs, "transform") and hasattr(crs, "crs"):  # a Grid: its CRS and corner
        crs, anchor = crs.crs, (crs.bounds[0], crs.bounds[3])
    p = params or clouds.CloudMaskParams()
    layer = _layers(sr, prob, cld_prb_thresh=p.cld_prb_thresh, nir_drk_thresh=p.nir_drk_thresh,
                    cld_prj_dist=p.cld_prj_dist, buffer=p.buffer, exact_buffer=p.exact_buffer,
                    crs=crs, anchor=anchor)
    shadow_only = layer["shadows"].And(layer["clouds"].Not())
    codes = (ee.Image.constant(clouds.CLEAR)
             .where(layer["union"], clouds.SHADOW)
             .where(layer["cloud_final"].And(shadow_only.Not()), clouds.CLOUD)
             .where(layer["valid"].Not(), clouds.NODATA))
    return codes.toUint8().rename([MASK_BAND])


def tutorial_mask(sr: Any, prob: Any, params: clouds.CloudMaskParams | None = None, *,
                  crs: Grid | str | None = None) -> Any:
    """The tutorial's ``cloudmask`` band: 1 for cloud or shadow (buffered), 0 for clear."""
    codes = mask_codes(sr, prob, params, crs=crs)
    return codes.eq(clouds.CLOUD).Or(codes.eq(clouds.SHADOW)).rename(["cloudmask"])


def masked_image(sr: Any, prob: Any, params: clouds.CloudMaskParams | None = None, *,
                 crs: Grid | str | None = None) -> Any:
    """``sr`` with every pixel that is not CLEAR masked (what the composite reduces)."""
    return sr.updateMask(mask_codes(sr, prob, params, crs=crs).eq(clouds.CLEAR))


def joined_collection(region: Any, start: str, end: str, *, cloud_filter: float = 60) -> Any:
    """The tutorial's ``get_s2_sr_cld_col``: ``S2_SR_HARMONIZED`` over ``region`` and dates
    (scene cloud cover <= ``cloud_filter`` %), each image carrying its probability image in the
    ``s2cloudless`` property (``ee.Join.saveFirst`` on equal ``system:index``)."""
    ee = _ee()
    sr = (ee.ImageCollection(SR_COLLECTION).filterBounds(region).filterDate(start, end)
          .filter(ee.Filter.lte("CLOUDY_PIXEL_PERCENTAGE", cloud_filter)))
    prob = ee.ImageCollection(PROBABILITY_COLLECTION).filterBounds(region).filterDate(start, end)
    join = ee.Join.saveFirst("s2cloudless")
    condition = ee.Filter.equals(leftField="system:index", rightField="system:index")
    return ee.ImageCollection(join.apply(primary=sr, secondary=prob, condition=condition))


def masked_collection(region: Any, start: str, end: str, *, cloud_filter: float = 60,
                      params: clouds.CloudMaskParams | None = None) -> Any:
    """:func:`joined_collection` with every image masked by :func:`mask_codes` (server-side
    ``map``; for continent-scale composites)."""
    joined = joined_collection(region, start, end, cloud_filter=cloud_filter)
    return map_scenes(joined, lambda sr, prob: masked_image(sr, prob, params))


def map_scenes(joined: Any, fn: Any) -> Any:
    """``joined.map`` of ``fn(sr, probability)`` over a :func:`joined_collection`."""
    ee = _ee()

    def per_image(img: Any) -> Any:
        sr = ee.Image(img)
        return fn(sr, ee.Image(sr.get("s2cloudless")))

    return joined.map(per_image)


def scene_collection(indices: Sequence[str], params: clouds.CloudMaskParams | None = None, *,
                     crs: Grid | str | None = None) -> Any:
    """The masked images of the given ``system:index`` values, as one collection.

    The graph lists every scene (no ``map``), so it can be evaluated offline; use it for AOIs
    whose scenes came from a STAC search, :func:`masked_collection` for large regions.
    """
    ee = _ee()
    if not indices:
        raise EarthEngineError("no scenes to composite", where="scene_collection",
                               fix="search scenes first (01_search) or widen the dates")
    return ee.ImageCollection.fromImages([masked_image(*scene_images(i), params, crs=crs)
                                          for i in indices])


def confirm_matches(indices: Sequence[str], *, connection: EarthEngineConnection | None = None,
                    policy: RetryPolicy | None = None) -> tuple[list[str], list[str]]:
    """Which ``system:index`` values exist in both collections: one batched metadata query.

    Returns ``(found, missing)`` in the order given. ``connection`` evaluates the query
    (``get_info``; default: the live service); 429s / 5xx are retried.
    """
    ee = _ee()
    ids = [str(i) for i in indices]
    if not ids:
        return [], []
    query = ee.Dictionary({
        name: ee.ImageCollection(collection).filter(ee.Filter.inList("system:index", ids))
        .aggregate_array("system:index")
        for name, collection in (("sr", SR_COLLECTION), ("probability", PROBABILITY_COLLECTION))
    })
    answer = call_with_backoff(live_or(connection).get_info, query,
                               what="matching scenes in Earth Engine", policy=policy)
    both = set(answer.get("sr") or []) & set(answer.get("probability") or [])
    return [i for i in ids if i in both], [i for i in ids if i not in both]


def download_masks(items: Sequence[Any], grid: Grid, cloud: clouds.CloudMaskParams, *,
                   cache_dir: str | Path, connection: EarthEngineConnection | None = None,
                   workers: int = 8,
                   policy: RetryPolicy | None = None, progress: bool = True
                   ) -> tuple[list[tuple[str, Any]], list[Any]]:
    """Masks of the items computed in Earth Engine and downloaded onto ``grid``.

    Matches the items to Earth Engine scenes (:func:`lcgee.gee_index`, confirmed with one
    batched query), then downloads each scene's :func:`mask_codes` (working grids in the grid's
    CRS) with :func:`lcgee.gee.download.download_image`: tiles within the request limits, at
    most ``workers`` requests in flight, retries with backoff, tiles cached under ``cache_dir``
    so an interrupted run resumes. ``connection`` defaults to the live service;
    :class:`lcgee.gee.emulator.OfflineEarthEngine` stands in for it offline.

    Returns ``([(item id, uint8 mask), ...], items without an Earth Engine counterpart)``.
    """
    keys = [gee_index(it) for it in items]
    found, _ = confirm_matches(keys, connection=connection, policy=policy)
    have = set(found)
    todo = [(item, key) for item, key in zip(items, keys, strict=True) if key in have]
    out = []
    for item, key in tqdm(todo, desc="Earth Engine masks", unit="scene",
                          disable=not progress or len(todo) < 2):
        image = mask_codes(*scene_images(key), cloud, crs=grid)
        arr = download_image(image, grid, cache_dir=cache_dir, n_bands=1, dtype="uint8",
                             band_ids=[MASK_BAND], connection=connection, workers=workers,
                             policy=policy, progress=progress and len(todo) < 2,
                             description=f"Earth Engine mask {key}")
        out.append((item.id, arr[0]))
    return out, [it for it, key in zip(items, keys, strict=True) if key not in have]
