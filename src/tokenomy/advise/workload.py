"""The advisor's workload file: volume over the day, task classes (lengths, quality floors, SLOs), candidates.

    name: support + coding
    volume:
      requests_per_day: 600000            # or hourly_rates_rps: [24 values, req/s]
      hourly_profile: [1, 1, ..., 1]      # 24 relative weights shaping requests_per_day (default flat)
    classes:
      support:
        share: 0.75                       # of the volume
        isl: lognormal:1500:0.6           # forms of `tokenomy simulate --isl`
        osl: lognormal:250:0.6
        quality: {mmlu_cot: 70}           # benchmark: minimum score (0-100), see catalog/data/quality.yaml
        slo: {ttft_s: 1.5, tpot_s: 0.06, attainment: 0.99}
        allow_api: false                  # e.g. data that must stay on our own GPUs
    candidates: {...}                     # what the search may use (defaults: see Candidates)

Every error names the file and the field.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from tokenomy.advise.quality import QualityTable, load_quality
from tokenomy.catalog.accelerators import accelerators, load_accelerator
from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.models import load_model
from tokenomy.catalog.prices import ApiPrice, api_prices
from tokenomy.catalog.profiles import load_profile
from tokenomy.sim.workload import LengthSpec, parse_lengths
from tokenomy.yamlfile import field_error, read_yaml

HOURS = 24
SECONDS_PER_HOUR = 3600.0
DEFAULT_GPUS = (
    "H100-SXM",
    "H100-PCIe",
    "H200-SXM",
    "GH200",
    "B200",
    "GB200",
    "A100-SXM-80GB",
    "A100-SXM-40GB",
    "L40S",
    "L4",
    "A10G",
    "RTX-PRO-6000",
    "MI300X",
)
DEFAULT_DRAFTS = {"llama-3.1-8b": "llama-3.2-1b", "llama-3.1-70b": "llama-3.2-1b", "llama-3.1-405b": "llama-3.2-1b"}
# RTX-4090 is left out of the defaults: NVIDIA's GeForce driver licence does not allow data-centre use.
LENGTH_SAMPLES = 20000  # draws per class for length means and quantiles


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _lengths_text(value: object) -> object:
    """A length given as a YAML number (isl: 800) means the fixed length "800"; strings pass as they are."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return value


# A length form of `tokenomy simulate --isl`: N (a YAML number or string), uniform:A:B, lognormal:MEAN:SIGMA, ...
Lengths = Annotated[str, BeforeValidator(_lengths_text)]


class Slo(Strict):
    """Per request: TTFT ≤ ttft_s and TPOT ≤ tpot_s; at least `attainment` of requests must meet both."""

    ttft_s: float = Field(2.0, gt=0)
    tpot_s: float = Field(0.1, gt=0)
    attainment: float = Field(0.99, gt=0, lt=1)


class TaskClass(Strict):
    share: float = Field(gt=0)
    isl: Lengths = "lognormal:1000:0.6"
    osl: Lengths = "lognormal:200:0.6"
    quality: dict[str, float] = {}  # benchmark -> minimum score (0-100)
    slo: Slo = Slo()
    allow_api: bool = True
    # false: nobody waits on these answers (offline jobs); a batch tier (a provider's Batch API, 24 h turnaround,
    # catalog/prices.py `batch_price`) may then serve the class; `slo` still sizes any GPU tier it shares
    latency_slo: bool = True
    gateway_class: str | None = None  # the gateway classifier's class for these requests (default: this name)
    # share of answers passing validation, per tier (provider/model or advised tier): see advise/escalation.py
    pass_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}


class Volume(Strict):
    requests_per_day: float | None = Field(None, gt=0)
    hourly_rates_rps: list[float] | None = None  # 24 total rates (req/s), one per hour of the day
    hourly_profile: list[float] | None = None  # 24 relative weights for requests_per_day (default flat)

    @model_validator(mode="after")
    def _one_way(self) -> Volume:
        if (self.requests_per_day is None) == (self.hourly_rates_rps is None):
            raise ValueError("give exactly one of requests_per_day and hourly_rates_rps")
        for name in ("hourly_rates_rps", "hourly_profile"):
            values = getattr(self, name)
            if values is not None and (len(values) != HOURS or min(values) < 0 or not sum(values) > 0):
                raise ValueError(f"{name}: need 24 values >= 0 with a positive sum, got {len(values)} values")
        if self.hourly_rates_rps is not None and self.hourly_profile is not None:
            raise ValueError("hourly_profile shapes requests_per_day; hourly_rates_rps already has a shape")
        return self


class Speculative(Strict):
    """Draft-model speculative decoding: searched on and off for targets that have a draft."""

    search: bool = True
    drafts: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DRAFTS))  # target -> draft
    draft_tokens: int = Field(4, ge=1, le=16)
    acceptance: float = Field(0.7, gt=0, lt=1)  # assumed per-token acceptance; measure yours


class Candidates(Strict):
    models: list[str] | None = None  # default: every model with scores in quality.yaml
    gpus: list[str] = list(DEFAULT_GPUS)
    precisions: list[str] = ["bf16", "fp8", "int8", "int4"]
    kv_precisions: list[str] = ["bf16", "fp8"]
    tensor_parallel: list[int] = [1, 2, 4, 8]
    max_batch: list[int] = [16, 32, 64, 128, 256]
    speculative: Speculative = Speculative()
    apis: list[str] | None = None  # provider/model; default: every API with scores in quality.yaml
    api_ttft_p99_s: float = Field(1.3, gt=0)  # assumed API latency; measure yours with `tokenomy bench`
    api_tpot_s: float = Field(0.02, gt=0)
    batch_apis: bool = True  # consider Batch-API tiers for classes with latency_slo: false
    engine: str = "vllm"

    @model_validator(mode="after")
    def _positive(self) -> Candidates:
        for name in ("tensor_parallel", "max_batch"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise ValueError(f"{name}: need positive integers")
        for name in ("gpus", "precisions", "kv_precisions"):
            if not getattr(self, name):
                raise ValueError(f"{name}: need at least one")
        return self


class WorkloadFile(Strict):
    name: str = "workload"
    volume: Volume
    classes: dict[str, TaskClass] = Field(min_length=1)
    candidates: Candidates = Candidates()


@dataclass(frozen=True, eq=False)
class ClassLoad:
    """One task class as the search sees it: rates per hour, lengths, floors, SLO."""

    name: str
    spec: TaskClass
    rates_rps: np.ndarray  # (24,)
    isl: LengthSpec
    osl: LengthSpec

    @cached_property
    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Seeded (input, output) token draws: the lengths the closed form and the simulator share."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return self.isl.sample(LENGTH_SAMPLES, rng), self.osl.sample(LENGTH_SAMPLES, rng)

    @property
    def requests_per_day(self) -> float:
        return float(self.rates_rps.sum() * SECONDS_PER_HOUR)


@dataclass(frozen=True, eq=False)
class Workload:
    """A validated workload file with the catalogue objects its names refer to."""

    spec: WorkloadFile
    source: str
    classes: tuple[ClassLoad, ...]
    quality: QualityTable
    apis: tuple[ApiPrice, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def candidates(self) -> Candidates:
        return self.spec.candidates

    @property
    def models(self) -> list[str]:
        return self.candidates.models or sorted(self.quality.models)

    @property
    def rates_rps(self) -> np.ndarray:
        return np.sum([c.rates_rps for c in self.classes], axis=0)


def hourly_rates(volume: Volume) -> np.ndarray:
    """Total requests/s for each hour of the day."""
    if volume.hourly_rates_rps is not None:
        return np.asarray(volume.hourly_rates_rps, dtype=float)
    profile = np.asarray(volume.hourly_profile or [1.0] * HOURS, dtype=float)
    return volume.requests_per_day * profile / profile.sum() / SECONDS_PER_HOUR


def _check_names(spec: WorkloadFile, quality: QualityTable, where: str) -> tuple[ApiPrice, ...]:
    """Every model, GPU, precision, benchmark, engine and API name is known; nearest names otherwise."""
    c = spec.candidates

    def field(name: str, check) -> None:  # noqa: ANN001
        try:
            check()
        except CatalogError as exc:
            raise CatalogError(f"{where}: field '{name}': {exc}") from exc

    for i, m in enumerate(c.models or []):
        field(f"candidates.models.{i}", lambda m=m: load_model(m))
        if m not in quality.models:
            known = sorted(quality.models)
            raise CatalogError(
                f"{where}: field 'candidates.models.{i}': no published quality scores for '{m}' "
                f"in quality.yaml (models with scores: {', '.join(known)})"
            )
    for i, g in enumerate(c.gpus):
        field(f"candidates.gpus.{i}", lambda g=g: load_accelerator(g))
    for target, draft in c.speculative.drafts.items():
        field(f"candidates.speculative.drafts.{target}", lambda d=draft: load_model(d))
    field("candidates.engine", lambda: load_profile(c.engine))
    offers = {p.name: p for p in api_prices()}
    names = c.apis if c.apis is not None else sorted(quality.apis)
    chosen = []
    for i, a in enumerate(names):
        if a not in offers:
            raise CatalogError(f"{where}: field 'candidates.apis.{i}': {unknown_name_error('API', a, list(offers))}")
        chosen.append(offers[a])
    for cls, t in spec.classes.items():
        for benchmark in t.quality:
            if benchmark not in quality.benchmarks:
                raise CatalogError(
                    f"{where}: field 'classes.{cls}.quality': "
                    f"{unknown_name_error('benchmark', benchmark, list(quality.benchmarks))}"
                )
    return tuple(chosen)


def build_workload(spec: WorkloadFile, source: str = "workload", quality: QualityTable | None = None) -> Workload:
    """Validate names and turn volume and shares into per-class hourly rates."""
    quality = quality or load_quality()
    apis = _check_names(spec, quality, source)
    total = hourly_rates(spec.volume)
    shares = np.array([t.share for t in spec.classes.values()], dtype=float)
    classes = []
    for (name, t), share in zip(spec.classes.items(), shares / shares.sum(), strict=True):
        lengths = []
        for what in ("isl", "osl"):
            try:
                lengths.append(parse_lengths(getattr(t, what), what))
            except ValueError as exc:
                raise CatalogError(f"{source}: field 'classes.{name}.{what}': {exc}") from exc
        classes.append(ClassLoad(name, t, total * share, lengths[0], lengths[1]))
    return Workload(spec, source, tuple(classes), quality, apis)


def parse_workload(raw: object, source: str = "workload") -> Workload:
    """A Workload from parsed YAML; errors name the source and the field."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping at the top level")
    try:
        spec = WorkloadFile.model_validate(raw)
    except ValidationError as exc:
        raise field_error(source, exc) from exc
    return build_workload(spec, source)


def load_workload(path: Path | str) -> Workload:
    """Read and validate a workload YAML file."""
    return parse_workload(read_yaml(path), str(path))


def example_workload_path() -> Path:
    """The built-in example (a customer-support assistant and a coding assistant)."""
    return Path(__file__).parent / "data" / "example_workload.yaml"


def priced_gpus(names: list[str]) -> list[str]:
    """The GPUs of a list that have an on-demand price (the others cannot be costed)."""
    table = accelerators()
    return [g for g in names if (table.get(g) or load_accelerator(g)).usd_per_gpu_hour("on_demand")]
