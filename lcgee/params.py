"""The typed model of one run, loaded from ``params/*.yaml`` with ``--set`` overrides.

Every field has a description (``lcgee params fields`` prints them as a reference).
Validation happens before any work starts and names the field, the bad value and what is
allowed. Secrets never live here: Planetary Computer keys and Earth Engine credentials come
from the environment or the user's credential files.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lcgee.checks import check_inputs  # checks beyond the schema
from lcgee.errors import DataError, ParamsError
from lcgee.scenes import normalize_tile

__all__ = [
    "Params", "Area", "Region", "Dates", "StacParams", "GridParams", "LoadParams",
    "CloudParams", "CompositeParams", "FeatureParams", "LabelParams", "TrainParams",
    "EEParams", "DaskParams", "DemoParams", "load_params", "apply_overrides", "S2_BANDS",
    "DEMO_STAC",
]

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
DEMO_STAC = "demo"
PC_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"
_SECRET_WORDS = re.compile(r"(key|token|secret|password|credential)", re.IGNORECASE)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Area(_Section):
    """An area given as a bbox or a GeoJSON file (exactly one of the two)."""

    bbox: tuple[float, float, float, float] | None = Field(
        None, description="[west, south, east, north]; lon/lat unless `crs` says otherwise")
    crs: str = Field("EPSG:4326", description="CRS of `bbox` (e.g. EPSG:32652 for UTM metres)")
    geojson: Path | None = Field(None, description="GeoJSON file (relative to the params file)")

    @model_validator(mode="after")
    def _one_of(self) -> Area:
        if (self.bbox is None) == (self.geojson is None):
            raise ValueError("give exactly one of `bbox` or `geojson`")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if w >= e or s >= n:
                raise ValueError(f"bbox {list(self.bbox)} has min >= max; order is "
                                 "[west, south, east, north]")
            if self.crs.upper() in ("EPSG:4326", "OGC:CRS84"):
                if not (-180 <= w <= 180 and -180 <= e <= 180):
                    raise ValueError(f"longitude out of [-180, 180] in bbox {list(self.bbox)}")
                if not (-90 <= s <= 90 and -90 <= n <= 90):
                    raise ValueError(f"latitude out of [-90, 90] in bbox {list(self.bbox)}")
        return self

    def lonlat_bbox(self, base: Path | None = None) -> tuple[float, float, float, float]:
        """The area's bounding box in lon/lat."""
        if self.geojson is not None:
            from shapely.geometry import shape

            path = self.geojson if base is None else base / self.geojson
            data = json.loads(path.read_text())
            feats = data.get("features", [data])
            geoms = [shape(f.get("geometry", f)) for f in feats]
            w = min(g.bounds[0] for g in geoms)
            s = min(g.bounds[1] for g in geoms)
            e = max(g.bounds[2] for g in geoms)
            n = max(g.bounds[3] for g in geoms)
            return (w, s, e, n)
        assert self.bbox is not None
        if self.crs.upper() in ("EPSG:4326", "OGC:CRS84"):
            return self.bbox
        from pyproj import Transformer

        t = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        return t.transform_bounds(*self.bbox)


class Region(Area):
    """A named part of the AOI with a role in the pipeline."""

    role: Literal["train", "predict"] = Field(..., description="train on it, or map it")


class Dates(_Section):
    start: dt.date = Field(..., description="first acquisition date (inclusive)")
    end: dt.date = Field(..., description="last acquisition date (inclusive)")

    @model_validator(mode="after")
    def _ordered(self) -> Dates:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    @property
    def interval(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


class StacParams(_Section):
    url: str = Field(PC_STAC, description="STAC API URL, or `demo` for the embedded demo world")
    collection: str = Field("sentinel-2-l2a", description="Sentinel-2 L2A collection id")
    max_cloud_cover: float = Field(60.0, ge=0, le=100, description="max `eo:cloud_cover` (%)")
    mgrs_tiles: tuple[str, ...] = Field(
        (), description="only these MGRS tiles, e.g. [52SFC]; 6VVN, T06VVN, 06vvn all become "
        "Planetary Computer's 06VVN")
    sign: Literal["auto", "planetary-computer", "none"] = Field(
        "auto", description="URL signing; auto = Planetary Computer signing on its hosts")

    @field_validator("mgrs_tiles")
    @classmethod
    def _tiles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for t in v:
            try:
                out.append(normalize_tile(t))
            except DataError as exc:
                raise ValueError(exc.what) from None
        return tuple(dict.fromkeys(out))


class GridParams(_Section):
    resolution: float = Field(10.0, gt=0, description="pixel size in metres")
    crs: str | None = Field(None, description="output CRS; default: UTM zone of the AOI centre")


class LoadParams(_Section):
    engine: Literal["odc-stac", "stackstac"] = Field("odc-stac", description="loader")
    chunk: int = Field(1024, ge=128, le=8192, description="spatial chunk size (px)")
    harmonize: bool = Field(True, description="subtract 1000 DN for baseline >= 04.00")
    skip_bad_scenes: bool = Field(
        False, description="probe each scene's `bands` + SCL after the search and drop "
        "unreadable scenes with a warning listing them (default: a failed read stops the run)")


class CloudParams(_Section):
    source: Literal["auto", "local", "scl", "gee"] = Field(
        "auto", description="auto = Earth Engine when ee.project and credentials are there, "
        "else local where the STAC API holds a cloud-probability layer, else SCL; or force "
        "s2cloudless+shadow on a local probability layer, Sen2Cor SCL, or s2cloudless from "
        "Earth Engine")
    fallback: Literal["local", "scl", "none"] = Field(
        "scl", description="source for scenes the primary source cannot serve")
    preset: Literal["tutorial", "aggressive"] = Field(
        "tutorial", description="the s2cloudless tutorial's parameter set")
    cld_prb_thresh: float | None = Field(None, ge=0, le=100, description="override the preset")
    nir_drk_thresh: float | None = Field(None, ge=0, le=1, description="override the preset")
    cld_prj_dist: float | None = Field(None, gt=0, description="override the preset (km)")
    buffer: float | None = Field(None, ge=0, description="override the preset (m)")
    exact_buffer: bool = Field(False, description="dilate by BUFFER m, not the tutorial's ~2x")


class CompositeParams(_Section):
    method: Literal["median", "best", "monthly"] = Field("median", description="compositing")
    period: str | None = Field(
        None, description="with method monthly: `NM` N-month windows (e.g. 2M, 3M) or "
        "`season` (DJF, MAM, JJA, SON); None = calendar months")
    empty_period: Literal["fill", "drop"] = Field(
        "fill", description="a period with no valid observation at a pixel: fill from the "
        "whole-range median (fill), or drop periods that are empty everywhere with a warning")

    @field_validator("period")
    @classmethod
    def _period(cls, v: str | None) -> str | None:
        if v is None:
            return v
        text = v.strip().upper()
        if text in ("SEASON", "SEASONS", "QS-DEC"):
            return "season"
        if not re.fullmatch(r"(1|2|3|4|6|12)M", text):
            raise ValueError(f"{v!r} is not a period; use 1M, 2M, 3M, 4M, 6M, 12M or season")
        return text


class FeatureParams(_Section):
    bands: tuple[str, ...] = Field(
        ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"),
        description="composite bands used as features")
    indices: tuple[str, ...] = Field(("NDVI", "NDWI", "MNDWI", "NDBI"),
                                     description="spectral indices added as features")

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_bands(v)


class LabelParams(_Section):
    source: Literal["demo", "planetary-computer", "earth-engine"] = Field(
        "planetary-computer", description="where ESA WorldCover comes from")
    version: Literal["v100", "v200"] = Field("v200", description="WorldCover version")
    remap: dict[int, int] = Field(default_factory=dict, description="merge classes: {from: to}")
    samples_per_class: int = Field(
        2000, gt=0, description="balanced: cap per class and region; proportional: the region's "
        "budget is samples_per_class x its number of classes")
    block_size: int | Literal["auto"] = Field(
        "auto", description="spatial block size (m) for CV groups; auto = the labels' "
        "autocorrelation range, shrunk until the training regions hold enough blocks")
    sampling: Literal["proportional", "balanced"] = Field(
        "proportional", description="proportional keeps the landscape's class shares (with "
        "min_samples_per_class as a floor); balanced takes up to samples_per_class of each")
    min_samples_per_class: int = Field(
        100, ge=0, description="proportional sampling: floor for rare classes (per region)")

    @field_validator("block_size")
    @classmethod
    def _block(cls, v: int | str) -> int | str:
        if v != "auto" and int(v) <= 0:
            raise ValueError("block_size must be positive metres or auto")
        return v


class TrainParams(_Section):
    num_iterations: int = Field(200, ge=1, description="boosting rounds (max)")
    learning_rate: float = Field(0.1, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = Field(12, ge=1, le=30, description="capped for Earth Engine node ids")
    min_data_in_leaf: int = Field(20, ge=1)
    early_stopping_rounds: int = Field(20, ge=0, description="0 disables early stopping")
    seed: int = Field(0)
    refit: bool = Field(True, description="refit the final model on all samples with the "
                        "iteration count early stopping chose")
    cv_folds: int = Field(5, ge=2, le=20, description="spatial block cross-validation folds")
    valid_fraction: float = Field(0.2, gt=0, lt=1, description="share of blocks held out for "
                                  "early stopping")


class EEParams(_Section):
    project: str | None = Field(None, description="Google Cloud project for Earth Engine")
    output_mode: Literal["RAW_REGRESSION", "REGRESSION"] = Field(
        "RAW_REGRESSION", description="decisionTreeEnsemble output mode; REGRESSION (mean x "
        "tree count) is an UNDOCUMENTED fallback: Earth Engine does not say how it combines trees")
    export_to: Literal["asset", "drive", "cloud-storage"] = Field("asset")
    export_path: str | None = Field(None, description="asset id, Drive folder or gs:// prefix")
    max_pixels: float = Field(1e10, gt=0)
    start_export: bool = Field(False, description="start the export tasks (live runs only)")
    export_split: int = Field(1, ge=1, le=1024, description="split the export into N tasks")
    workers: int = Field(8, ge=1, le=40, description="parallel Earth Engine pixel requests")
    retries: int = Field(6, ge=1, le=20, description="attempts per request on 429 / 5xx / timeout")


class WaterParams(_Section):
    label_source: Literal["worldcover", "scl", "both"] = Field(
        "both", description="noisy water labels: WorldCover class 80, SCL class 6, or either")
    scl_min_fraction: float = Field(0.5, gt=0, le=1,
                                    description="SCL water in at least this share of clear scenes")
    bands: tuple[str, ...] = Field(("B02", "B03", "B04", "B08", "B11", "B12", "NDVI", "MNDWI"),
                                   description="network inputs: composite bands / feature indices")
    correction_iterations: int = Field(3, ge=0, le=20, description="self-learning rounds (0: none)")
    correction_confidence: float = Field(0.95, gt=0.5, lt=1,
                                         description="flip a label when the other class is this likely")
    samples_per_class: int = Field(3000, ge=50, description="7 x 7 patches per class")
    epochs: int = Field(12, ge=1, le=500)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    chunk: int = Field(512, ge=16, le=8192, description="prediction chunk size (px)")
    seed: int = Field(0)


class DaskParams(_Section):
    address: str | None = Field(None, description="existing scheduler; default: local cluster")
    n_workers: int = Field(1, ge=1)
    threads_per_worker: int = Field(2, ge=1)
    memory_limit: str = Field("6GiB", description="per local worker")


class DemoParams(_Section):
    seed: int = Field(2021, description="seed of the embedded demo world")
    size: int = Field(1536, ge=192, description="demo world size in 10 m pixels")


class Params(_Section):
    """One lcgee run."""

    name: str = Field(..., description="run name; results go to outputs/<name>/")
    aoi: Area = Field(..., description="area of interest")
    regions: dict[str, Region] = Field(default_factory=dict, description="named train/predict areas")
    dates: Dates
    stac: StacParams = Field(default_factory=StacParams)
    bands: tuple[str, ...] = Field(S2_BANDS, description="bands to load")
    grid: GridParams = Field(default_factory=GridParams)
    load: LoadParams = Field(default_factory=LoadParams)
    clouds: CloudParams = Field(default_factory=CloudParams)
    composite: CompositeParams = Field(default_factory=CompositeParams)
    features: FeatureParams = Field(default_factory=FeatureParams)
    labels: LabelParams = Field(default_factory=LabelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    ee: EEParams = Field(default_factory=EEParams)
    water: WaterParams = Field(default_factory=WaterParams)
    dask: DaskParams = Field(default_factory=DaskParams)
    demo: DemoParams = Field(default_factory=DemoParams)

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v):
            raise ValueError(f"{v!r} is not a run name (letters, digits, . _ -)")
        return v

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_bands(v)

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        missing = [b for b in self.features.bands if b not in self.bands]
        if missing:
            raise ValueError(f"features.bands {missing} are not in `bands` {list(self.bands)}")
        if "local" in (self.clouds.source, self.clouds.fallback) and self.stac.url == PC_STAC:
            raise ValueError("clouds `local` needs a cloud-probability layer, and Planetary "
                             "Computer has none; use clouds.source: auto (Earth Engine when "
                             "configured, else SCL), scl or gee, and clouds.fallback: scl")
        return self

    @property
    def is_demo(self) -> bool:
        return self.stac.url == DEMO_STAC

    def regions_with(self, role: str) -> dict[str, Region]:
        return {k: r for k, r in self.regions.items() if r.role == role}

    def to_plain(self) -> dict[str, Any]:
        """JSON-friendly dict (dates as ISO strings, paths as strings)."""
        return json.loads(self.model_dump_json())

    def digest(self) -> str:
        """A stable hash of the resolved params."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_plain(), sort_keys=True).encode()).hexdigest()


def _check_bands(v: tuple[str, ...]) -> tuple[str, ...]:
    bad = [b for b in v if b not in S2_BANDS]
    if bad:
        raise ValueError(f"unknown band(s) {bad}; available: {', '.join(S2_BANDS)}")
    return v


# ---- loading -------------------------------------------------------------------------------

def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a params dict."""
    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else map(_split_override, overrides)
    for key, value in items:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ParamsError(f"cannot set {key!r}: {part!r} is not a section",
                                  where="--set", fix="use a dotted path to a field")
            node = nxt
        node[parts[-1]] = value
    return data


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ParamsError(f"override {text!r} has no '='", where="--set",
                          fix="write --set section.field=value, e.g. --set composite.method=median")
    key, _, raw = text.partition("=")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def load_params(path: str | Path, overrides: list[str] | dict[str, Any] = ()) -> Params:
    """Load, override and validate a params file; raise :class:`ParamsError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {str(path)!r} does not exist", where="params",
                          fix="give the path of a YAML file, e.g. params/demo.yaml")
    try:
        data = yaml.safe_load(_read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"not valid YAML ({exc})", where=str(path),
                          fix="correct the YAML syntax at the line shown") from None
    if not isinstance(data, dict):
        raise ParamsError("the top level must be a mapping of fields", where=str(path))
    data = apply_overrides(data, overrides or [])
    _reject_secrets(data, str(path))
    params = validate(data, where=str(path))
    return check_inputs(params, path.parent.resolve())


def _read_text(path: Path) -> str:
    """The params file as text, or a ParamsError for binary or unreadable files."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"the file is not text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start} is not UTF-8)", where=str(path),
                          fix="give a YAML params file, e.g. params/demo.yaml") from None
    except OSError as exc:
        raise ParamsError(f"the file cannot be read ({exc.strerror})", where=str(path),
                          fix="check its permissions") from None


def validate(data: dict[str, Any], *, where: str = "params") -> Params:
    """Validate a params dict into :class:`Params`, translating pydantic's errors."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_describe(exc), where=where, fix=_fix_hint(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"unknown field `{loc}`{hint}; allowed: {', '.join(allowed)}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"field `{loc}`: {msg}{shown}")
    return "; ".join(lines)


def _fix_hint(exc: ValidationError) -> str:
    return "correct the field(s) named above; `lcgee params fields` lists every field"


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Params
    for part in loc:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if field is None:  # inside a dict (regions): the value model
            model = Region
            continue
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            args = getattr(model, "__args__", ())
            model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)),
                         Region)
    return sorted(model.model_fields)


def _reject_secrets(data: Any, where: str, path: str = "") -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            if _SECRET_WORDS.search(str(k)):
                raise ParamsError(
                    f"field `{path}{k}` looks like a secret; secrets never go in params files",
                    where=where,
                    fix="remove it and set it in the environment (PC_SDK_SUBSCRIPTION_KEY; "
                        "`earthengine authenticate` or GOOGLE_APPLICATION_CREDENTIALS)")
            _reject_secrets(v, where, f"{path}{k}.")


def field_reference() -> str:
    """Every field with its type, default and description, as Markdown lines."""
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            out.append(f"- `{prefix}{name}` ({default}): {f.description or ''}".rstrip(": "))

    walk(Params, "")
    return "\n".join(out)
