"""The Earth Engine stage: the run-level glue above :mod:`lcgee.gee`.

:mod:`lcgee.gee` builds, evaluates and sends Earth Engine graphs and knows nothing of a run
(params, STAC searches, the run directory). This module joins both, for notebooks 02, 07 and 09
and ``lcgee ee verify``:

* :func:`stac_loader` / :func:`demo_earth_engine`: the offline stand-in
  (:class:`lcgee.gee.emulator.OfflineEarthEngine`) serving the demo world's scenes;
* :func:`earth_engine_options`: how the ``gee`` cloud source reaches Earth Engine for a run
  (:class:`EarthEngineAccess`);
* :func:`composite_for_params`: the run's composite searched inside Earth Engine;
* :func:`chain_flips` and :func:`dry_run`: the checks before spending Earth Engine quota
  (:class:`DryRunResult`);
* :func:`classify_in_earth_engine`: the live step of notebook 07 and ``lcgee ee classify``
  (:class:`LiveClassification`);
* :func:`interactive_map`: a geemap viewer of a live result, when geemap is installed
  (:class:`MapView`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lcgee import search
from lcgee.errors import DataError, EarthEngineError, MissingDependencyError
from lcgee.features import read_features
from lcgee.gee import classify, cloudmask, live, offline, session, verify
from lcgee.gee import composite as gee_composite
from lcgee.gee.chain import MASK_ID, SCENE_ID, chain_graph
from lcgee.gee.classify import PC_TO_EE_BANDS
from lcgee.gee.connection import EarthEngineOptions
from lcgee.gee.emulator import Loader, OfflineEarthEngine
from lcgee.gee.trees import EEClassifierSpec
from lcgee.grid import Grid
from lcgee.layout import RunLayout, region_grid
from lcgee.load import load_stack, reflectance
from lcgee.masks import PROBABILITY_COLLECTION, cloud_params, load_probability, read_masks
from lcgee.params import Params, load_params
from lcgee.raster import read_cog
from lcgee.scenes import gee_index
from lcgee.stage import build_grid
from lcgee.train import load_bundle

if TYPE_CHECKING:  # annotations only
    from pystac import Item
    from pystac_client import Client

    from lcgee.demo.world import World

__all__ = ["stac_loader", "demo_earth_engine", "earth_engine_options", "EarthEngineAccess",
           "composite_for_params",
           "chain_flips", "DryRunResult", "dry_run", "LiveClassification",
           "classify_in_earth_engine", "MapView", "interactive_map", "start_live_session",
           "export_image"]


# ----------------------------------------------------------------------------- stand-in


def stac_loader(client: Client, items: Sequence[Item], grid: Grid, *, chunk: int = 1024,
                bands: Sequence[str] = ("B08",)) -> Loader:
    """A loader serving the items' Earth Engine images from a STAC API (the demo world).

    ``COPERNICUS/S2_SR_HARMONIZED/<index>`` gives ``bands`` (lcgee names, served under Earth
    Engine's: ``B08`` -> ``B8``; harmonized digital numbers) and ``SCL`` with
    ``MEAN_SOLAR_AZIMUTH_ANGLE``; ``COPERNICUS/S2_CLOUD_PROBABILITY/<index>`` gives
    ``probability``. Pixels without data are masked (NaN).
    """
    by_index = {gee_index(it): it for it in items}

    def load(asset_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        collection, _, index = asset_id.rpartition("/")
        item = by_index.get(index)
        if item is None or collection not in (cloudmask.SR_COLLECTION,
                                              cloudmask.PROBABILITY_COLLECTION):
            raise DataError(f"Image.load: Image asset '{asset_id}' not found",
                            where="offline Earth Engine", fix="match scenes first")
        if collection == cloudmask.PROBABILITY_COLLECTION:
            prob, missing = load_probability(client, [item], grid, chunk=chunk)
            if missing:
                raise DataError(f"Image.load: Image asset '{asset_id}' not found",
                                where="offline Earth Engine", fix="match scenes first")
            return {"probability": prob.values[0]}, {}
        wanted = list(dict.fromkeys(["B08", *bands]))
        ds = load_stack([item], grid, [*wanted, "SCL"], chunk=chunk)
        refl = reflectance(ds, wanted).values[0].astype(np.float64)
        out = {PC_TO_EE_BANDS[b]: np.where(np.isnan(r), np.nan, np.rint(r * 10000))
               for b, r in zip(wanted, refl, strict=True)}
        nir = out["B8"]
        out["SCL"] = np.where(np.isnan(nir), np.nan, ds["SCL"].values[0].astype(np.float64))
        return out, {"MEAN_SOLAR_AZIMUTH_ANGLE": float(ds["sun_azimuth"].values[0]),
                     "system:time_start": _millis(item)}

    return load


def _millis(item: Any) -> float:
    """The item's acquisition time as Earth Engine's ``system:time_start`` (ms since 1970)."""
    when = item.datetime or item.common_metadata.start_datetime
    return when.timestamp() * 1000.0


def demo_earth_engine(client: Client, items: Sequence[Item], grid: Grid, *, chunk: int = 1024
                      ) -> OfflineEarthEngine:
    """An :class:`OfflineEarthEngine` over the demo world's scenes: its catalog holds the scenes
    that have a probability layer in the STAC API (as Earth Engine holds those that have an
    ``S2_CLOUD_PROBABILITY`` image)."""
    keys = [gee_index(it) for it in items]
    have = {it.id for it in search.fetch_items(client, PROBABILITY_COLLECTION, keys,
                                               required=False)}
    return OfflineEarthEngine(grid, stac_loader(client, items, grid, chunk=chunk),
                              catalog=[k for k in keys if k in have])


@dataclass(frozen=True)
class EarthEngineAccess:
    """Whether and how this run reaches Earth Engine (:func:`earth_engine_options`)."""

    options: EarthEngineOptions | None
    """What the ``gee`` cloud source and Earth Engine labels use; None when Earth Engine is
    not usable (the ``gee`` source then reports how to authenticate and the fallback is used)."""

    label: str
    """A sentence saying where Earth Engine results come from (live, stand-in, or why not)."""


def earth_engine_options(params: Params, *, cache_dir: Path, client: Client | None = None,
                         items: Sequence[Item] = (), grid: Grid | None = None,
                         world: World | None = None) -> EarthEngineAccess:
    """Options of the ``gee`` source for this run, and a sentence saying where masks come from.

    With ``ee.project`` set: a live session (credentials as in
    :func:`lcgee.gee.session.init_live`). Without it, on the demo world: the offline stand-in
    :func:`demo_earth_engine` (the same graphs, evaluated locally). Otherwise ``None`` (the
    ``gee`` source then reports how to authenticate and the fallback is used).
    """
    common = EarthEngineOptions(cache_dir=cache_dir, workers=params.ee.workers,
                                retries=params.ee.retries)
    if params.ee.project:
        try:
            session.init_live(params.ee.project)
        except EarthEngineError as exc:
            return EarthEngineAccess(None, f"Earth Engine unavailable: {exc}")
        return EarthEngineAccess(common, f"Earth Engine (live, project {params.ee.project})")
    if world is not None and grid is not None:
        session.init_offline()
        return EarthEngineAccess(
            replace(common, connection=demo_earth_engine(client, items, grid)),
            "Earth Engine stand-in: the same graphs evaluated offline on the demo world "
            "(no credentials needed)")
    return EarthEngineAccess(None, "Earth Engine not configured: " + session.AUTH_HELP)


# ----------------------------------------------------------------------------- composite


def composite_for_params(params: Params, grid: Grid) -> Any:
    """The run's composite over ``grid`` searched in Earth Engine (any region size): an
    ``ee.Image``.

    Scenes: ``S2_SR_HARMONIZED`` over the grid's lon/lat box and the run's dates with
    ``CLOUDY_PIXEL_PERCENTAGE <= stac.max_cloud_cover``, joined with their s2cloudless
    probabilities; masked with the run's cloud parameters; reduced with
    ``composite.method``. Returns reflectance with lcgee band names (``features.bands``), or the
    feature stack of the periods of ``composite.period`` (gaps filled from the whole-range
    median with ``composite.empty_period: fill``).
    """
    end = params.dates.end + dt.timedelta(days=1)  # filterDate's end is exclusive
    return gee_composite.searched_composite(
        grid.lonlat_bbox, params.dates.start, end, cloud=cloud_params(params.clouds),
        cloud_filter=params.stac.max_cloud_cover, method=params.composite.method,
        bands=list(params.features.bands), index_names=list(params.features.indices),
        months=(params.dates.start, params.dates.end), period=params.composite.period,
        fill_empty=params.composite.empty_period == "fill")


# ----------------------------------------------------------------------------- dry run


def chain_flips(spec: EEClassifierSpec, params: Params, run_dir: Path, region: Grid, grid: Grid,
                local_map: np.ndarray, client: Client) -> dict[str, Any]:
    """Evaluate :func:`lcgee.gee.chain.chain_graph` on the run's scenes over ``region`` and count
    the labels that differ from ``local_map`` (``compared``: pixels either side classified)."""
    method = params.composite.method
    if method not in ("median", "monthly"):
        return {"compared": 0, "flips": None, "note": f"method {method!r} not evaluated"}
    session.init_offline()
    bands = list(params.features.bands)
    table = pd.read_parquet(RunLayout(run_dir).scenes)
    items = search.fetch_items(client, params.stac.collection, table["id"])
    (r0, c0), (h, w) = region.offset_in(grid), region.shape
    # loaded on the run's grid, then cut: the same chunks as the composite stage, so scenes
    # reprojected from another UTM zone get the same nearest pixels (odc-stac's warp is
    # approximated per chunk)
    ds = load_stack(items, grid, bands, chunk=params.load.chunk, time_chunk=-1)
    ds = ds.isel(y=slice(r0, r0 + h), x=slice(c0, c0 + w))
    refl = reflectance(ds, bands).values  # (time, band, y, x) float32
    masks = read_masks(RunLayout(run_dir).masks, [it.id for it in items], chunk=params.load.chunk)
    masks = masks.values[:, r0:r0 + h, c0:c0 + w]
    images, props = {}, {}
    for i, item in enumerate(items):
        dn = np.where(np.isnan(refl[i]), np.nan, np.rint(refl[i].astype(np.float64) * 10000))
        images[SCENE_ID.format(i)] = {PC_TO_EE_BANDS[b]: dn[k] for k, b in enumerate(bands)}
        images[MASK_ID.format(i)] = {"cloud_mask": masks[i]}
        props[SCENE_ID.format(i)] = {"system:time_start": item.datetime.timestamp() * 1000.0}
    graph = chain_graph(spec, len(items), method=method, bands=bands,
                        index_names=list(params.features.indices),
                        dates=(params.dates.start, params.dates.end),
                        period=params.composite.period,
                        fill_empty=params.composite.empty_period == "fill",
                        times=[it.datetime for it in items])
    out = offline.evaluate_graph(graph, images=images, properties=props, grid=region)
    ee_map = np.nan_to_num(np.asarray(out["landcover"], dtype=np.float64)).astype(np.uint8)
    both = (local_map > 0) | (ee_map > 0)
    return {"compared": int(both.sum()), "flips": int((ee_map[both] != local_map[both]).sum()),
            "ee_map": ee_map}


@dataclass(frozen=True)
class DryRunResult:
    """What :func:`dry_run` checked and produced, on one region of a finished run."""

    table: pd.DataFrame
    """The checks, one row each: ``check``, ``compared``, ``disagreements`` (0 everywhere: Earth
    Engine would reproduce the local labels)."""

    spec: EEClassifierSpec
    """The exported tree strings (also written to ``model/ee_classifier.json``)."""

    route: str
    """How the trees reach Earth Engine: ``"inline"`` or ``"table-asset"``
    (:func:`lcgee.gee.classify.payload_route`)."""

    region: Grid
    """The grid of the checked region (the first ``predict`` region, or the AOI)."""

    local_map: np.ndarray
    """The local land-cover map over ``region`` (uint8 codes, 0 = no data)."""

    ee_map: np.ndarray
    """The serialized graph's map over ``region``, evaluated offline."""

    feature_diff: Mapping[str, float]
    """Largest ``|server-side feature - local feature|`` per feature over ``region``."""

    @property
    def disagreements(self) -> int:
        """Sum of the table's disagreements (0: safe to export)."""
        return int(self.table["disagreements"].sum())


def dry_run(run_dir: Path, *, region: str | None = None, client: Client | None = None) -> DryRunResult:
    """The whole dry run on a finished run directory (needs 05_train and 06_predict outputs).

    Writes ``model/ee_classifier.json``, ``model/ee_graph.json`` and ``model/holdout.parquet``
    (:mod:`lcgee.gee.verify`). With ``client`` (the run's STAC API client) the table also counts
    the label flips of the whole server chain from the scenes' digital numbers
    (:func:`chain_flips`).
    """
    layout = RunLayout(run_dir)
    params = load_params(layout.params)
    grid = build_grid(params, layout.root)
    bundle = load_bundle(layout.model)
    # a monthly run's composite is its period feature stack: every feature is one of its bands
    available = list(bundle.feature_names) if params.composite.method == "monthly" else None
    spec, graph, route = verify.export_model(bundle, classifier_path=layout.ee_classifier,
                                             graph_path=layout.ee_graph,
                                             output_mode=params.ee.output_mode,
                                             available_bands=available)
    name = region or next(iter(params.regions_with("predict")), None)
    rg = region_grid(params, grid, name, layout.root) if name else grid
    (r0, c0), (h, w) = rg.offset_in(grid), rg.shape
    feats = read_features(run_dir, chunks=None)[:, r0:r0 + h, c0:c0 + w]
    labels = read_cog(layout.labels, chunks=None).values[0][r0:r0 + h, c0:c0 + w]
    local_map = read_cog(layout.landcover, chunks=None).values[0][r0:r0 + h, c0:c0 + w]
    holdout = verify.write_holdout(feats.values, labels, spec.feature_names,
                                   layout.holdout, seed=params.train.seed)
    bands = available or list(params.features.bands)
    graph_check, ee_map = verify.verify_graph(graph, feats, local_map, bands)
    table = pd.DataFrame([
        {"check": "tree strings vs LightGBM (held-out samples)", "compared": len(holdout),
         "disagreements": verify.verify_holdout(spec, holdout, bundle)["disagreements"]},
        {"check": f"ee_graph.json offline vs local map ({name or 'AOI'})",
         "compared": graph_check["pixels"], "disagreements": graph_check["disagreements"]},
    ])
    if client is not None:
        chain = chain_flips(spec, params, run_dir, rg, grid, local_map, client)
        table.loc[len(table)] = {
            "check": "whole server chain (DN -> median -> reflectance -> indices -> trees) "
                     f"offline vs local map ({name or 'AOI'})",
            "compared": chain["compared"], "disagreements": chain["flips"]}
    diff = verify.verify_features(spec, feats, bands, available_bands=available)
    return DryRunResult(table=table, spec=spec, route=route, region=rg, local_map=local_map,
                        ee_map=ee_map, feature_diff=diff)


# ----------------------------------------------------------------------------- live


@dataclass(frozen=True)
class LiveClassification:
    """What :func:`classify_in_earth_engine` did with the live service."""

    message: str
    """What happened, in one or more sentences (skipped and why, agreement, export)."""

    classified: Any = None
    """The classified ``ee.Image`` over the run's grid; None when the live step was skipped."""

    pixels: np.ndarray | None = None
    """The live map over the dry run's region (uint8 codes), when one interactive request
    could hold it."""

    agreement: Mapping[str, Any] | None = None
    """:func:`lcgee.gee.live.compare_maps` of ``pixels`` against the local map."""

    export_table: pd.DataFrame | None = None
    """The export tasks (:func:`lcgee.gee.live.task_table`), started with
    ``ee.start_export: true``."""

    @property
    def ran(self) -> bool:
        """Whether Earth Engine was reached (``ee.project`` and credentials accepted)."""
        return self.classified is not None


def start_live_session(params: Params) -> str | None:
    """Start a live Earth Engine session for ``params.ee.project``: None when it is up, else
    why the live step is skipped and how to enable it (an offline run is a normal run)."""
    if not params.ee.project:
        return (f"Live Earth Engine step skipped: no ee.project in the params. "
                f"To enable it, {session.AUTH_HELP}.")
    try:
        session.init_live(params.ee.project)
    except EarthEngineError as exc:  # credentials or project missing: say how, keep the run
        return f"Live Earth Engine step skipped. {exc}"
    return None


def export_image(image: Any, params: Params, grid: Grid, *, suffix: str = ""
                 ) -> tuple[pd.DataFrame, str | None]:
    """Build the export tasks of ``image`` over ``grid`` (``ee.export_to``, split as the params
    say) and, with ``ee.start_export``, start them: ``(task table, note)``, the note saying
    when they were built but not started."""
    tasks = classify.export_task(image, grid, to=params.ee.export_to,
                                 path=live.export_path_for(params.ee, params.name) + suffix,
                                 max_pixels=int(params.ee.max_pixels),
                                 split=params.ee.export_split,
                                 description=f"lcgee_{params.name}{suffix}")
    if params.ee.start_export:
        return live.start_tasks(tasks, policy=live.policy_for(params.ee)), None
    return (live.task_table(tasks),
            "export tasks built, not started: set ee.start_export: true to start them")


def classify_in_earth_engine(params: Params, grid: Grid, dry: DryRunResult, *,
                             cache_dir: Path) -> LiveClassification:
    """Classify the run's composite in Earth Engine, compare it with the local map over the dry
    run's region, and build (with ``ee.start_export``: start) the export tasks.

    Without ``ee.project`` or usable credentials nothing is sent and the message says how to
    authenticate (an offline run is a normal run). Once the session is up, failures (refused
    requests, quota, an export that cannot start) raise :class:`~lcgee.errors.EarthEngineError`;
    only a region too large for one interactive fetch is reported in the message instead.
    """
    skipped = start_live_session(params)
    if skipped:
        return LiveClassification(skipped)
    lines = [f"Earth Engine initialised for project {params.ee.project!r}"]
    policy = live.policy_for(params.ee)
    trees_table = None
    if dry.route == "table-asset":
        trees_table = live.ensure_trees_table(dry.spec, live.trees_asset_for(params.ee,
                                                                             params.name),
                                              policy=policy)
    classified = live.classify_live(dry.spec, composite_for_params(params, grid), grid,
                                    mode=params.ee.output_mode, trees_table=trees_table,
                                    available_bands=live.composite_bands(params, dry.spec))
    pixels = agreement = None
    try:  # one request, or tiles through the tiled downloader when larger
        pixels = live.fetch_pixels(classified, dry.region, policy=policy, cache_dir=cache_dir)
    except EarthEngineError as exc:  # too large to fetch: the export has it all
        lines.append(str(exc))
    else:
        agreement = live.compare_maps(pixels, dry.local_map)
        lines.append(f"Earth Engine (live) vs local map: {agreement['agreement']:.1%} of "
                     f"{agreement['pixels']:,} px agree; {agreement['ee_nodata']:,} px without "
                     "a server-side composite")
    table, note = export_image(classified, params, grid)
    if note:
        lines.append(note)
    return LiveClassification("\n".join(lines), classified=classified, pixels=pixels,
                              agreement=agreement, export_table=table)


@dataclass(frozen=True)
class MapView:
    """What :func:`interactive_map` could show."""

    widget: Any
    """The geemap ``Map`` (displays itself in a notebook); None when there is nothing to show
    or geemap is not installed."""

    message: str
    """What is shown, or why nothing is (and how to get it)."""


def interactive_map(image: Any, grid: Grid) -> MapView:
    """A geemap map of a live land-cover ``image`` over ``grid``, with ESA WorldCover as a
    reference layer (:func:`lcgee.gee.live.ee_map`).

    ``image`` is None when the live step did not run. geemap is optional (a viewer only): when
    it is missing the message says how to install it instead of raising.
    """
    if image is None:
        return MapView(None, "No interactive map: the live Earth Engine step did not run.")
    try:
        widget = live.ee_map(image, grid)
    except MissingDependencyError as exc:
        return MapView(None, f"No interactive map: {exc}")
    return MapView(widget, "Interactive map: the classification over the AOI; ESA WorldCover "
                           "v200 in the layer control.")
