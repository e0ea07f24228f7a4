"""Typed results: the contracts of every `--json` output, and the JSON Schemas in docs/schemas/ generated from them.

Each command's machine-readable output is one of these models. Their fields are the stable keys of docs/design.md
(times in s, sizes in bytes, money in USD, fractions in 0–1); producers may add keys (`extra="allow"`) but never
rename these. An unknown figure is `null`: `to_json()` turns NaN and infinities into null, so the output is JSON
that any parser reads (Python's json module would otherwise write the non-standard `NaN`).

`python scripts/write_schemas.py` regenerates docs/schemas/*.schema.json; a test checks the committed files match
these models and that real command output validates against them.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, model_validator


def json_safe(data: Any) -> Any:
    """The data with every NaN and infinity as None, numpy values as Python ones: dumps to strict JSON (null)."""
    if isinstance(data, BaseModel):
        return json_safe(plain(data))
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    if isinstance(data, np.ndarray):
        return json_safe(data.tolist())
    if isinstance(data, bool | np.bool_):
        return bool(data)
    if isinstance(data, numbers.Integral):
        return int(data)
    if isinstance(data, numbers.Real):
        return float(data) if math.isfinite(data) else None
    return data


def plain(data: Any) -> Any:
    """The data with every typed result as the plain dict it stands for (`Result.as_dict`), recursively."""
    if isinstance(data, Result):
        return data.as_dict()
    if isinstance(data, BaseModel):
        return data.model_dump()
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [plain(v) for v in data]
    return data


def dumps(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of `data` (dicts, lists, numbers, models): NaN/inf as null, never `NaN`."""
    return json.dumps(json_safe(plain(data)), indent=indent, allow_nan=False, default=str)


class Result(BaseModel):
    """Base of every typed result: extra keys allowed (outputs grow, never rename), strict JSON out.

    A result reads like the dict it was built from as well (`r["key"]`, `r.get`, `in`, `keys()`), so renderers
    written against the JSON shape take the typed result; `as_dict()` and `to_json()` keep the keys given, in
    their order, and leave out declared fields that were not given.
    """

    model_config = ConfigDict(extra="allow")
    # A tuple default, not a factory: pydantic inspects a factory's signature on every instance (slow for `list`).
    _key_order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_key_order(cls, data: Any, handler: Any) -> Any:
        result = handler(data)
        if isinstance(data, dict) and isinstance(result, Result):
            result._key_order = tuple(data)
        return result

    def keys(self) -> list[str]:
        """The keys this result holds: those it was given, in their order, then any set since."""
        given = set(self.model_fields_set) | set(self.__pydantic_extra__ or {})
        ordered = [k for k in self._key_order if k in given]
        return ordered + [
            k for k in (*type(self).model_fields, *(self.__pydantic_extra__ or {})) if k in given and k not in ordered
        ]

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.__pydantic_extra__ or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        """Set `key` as a dict would (appended to the keys' order); a declared field's value is validated, so a
        dict given for a typed part becomes that type."""
        if key in type(self).model_fields:
            value = _field_adapter(type(self), key).validate_python(value)
        setattr(self, key, value)
        if key not in self._key_order:
            self._key_order = (*self._key_order, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a mapping's keys, not pydantic's pairs
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) pairs, in the keys' order."""
        return [(k, self[k]) for k in self.keys()]

    def values(self) -> list[Any]:
        """The values, in the keys' order."""
        return [self[k] for k in self.keys()]

    def get(self, key: str, default: Any = None) -> Any:
        """The value at `key`, or `default` when this result does not hold it."""
        return self[key] if key in self.keys() else default

    def as_dict(self) -> dict[str, Any]:
        """This result as a plain dict: its keys in the order given, nested results as dicts."""
        return {k: plain(self[k]) for k in self.keys()}

    def to_json(self, indent: int | None = 2) -> str:
        """This result as strict JSON text (NaN and infinities as null)."""
        return dumps(self, indent)


@functools.cache
def _field_adapter(model: type[Result], key: str) -> TypeAdapter[Any]:
    """A validator of one declared field's type (for `Result.__setitem__`)."""
    return TypeAdapter(model.model_fields[key].annotation)


# --- shared pieces -----------------------------------------------------------------------------------------------


class Percentiles(Result):
    """A latency distribution in seconds."""

    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None


class UsdPerMtok(Result):
    """Dollars per million tokens, input and output priced separately."""

    input: float | None
    output: float | None


class BlendedUsdPerMtok(Result):
    """Dollars per million tokens, input and output together: a fleet, whose API tiers price tokens and whose
    GPU tiers price hours, has no input/output split."""

    blended: float | None


class FigureInterval(Result):
    """The 80 % interval of one predicted figure, from cross-validated residuals (`costmodel/intervals.py`)."""

    interval_80: list[float] = Field(description="[lo, hi], in the figure's own unit", min_length=2, max_length=2)
    metric: str = Field(description="the residual metric whose band it takes (mean_ttft, output_throughput, …)")
    inverse: bool = Field(description="true for a cost per token: it scales inversely with the throughput")
    pool: str = Field(description="residual pool 'metric|accelerator family|model family' ('*': any)")
    n: int = Field(description="residuals in that pool")
    thin: bool = Field(description="the figure's own pool had too few residuals: a wider pool stood in")
    note: str = Field(default="", description="why a wider pool stood in, or why the band was stretched")


INTERVALS_80 = (
    "per predicted figure (key path, e.g. 'ttft_s', 'usd_per_mtok.output', 'ttft_s.p99'): its 80 % interval "
    "from cross-validated residuals; empty without a shipped residual table"
)


# --- tokenomy plan ------------------------------------------------------------------------------------------------


class Params(Result):
    total: int = Field(description="parameters of the model")
    active: int = Field(description="parameters a token passes through (MoE: the routed experts only)")


class PlanMemory(Result):
    """Memory of one replica, bytes."""

    weights_bytes: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int


class MaxConcurrency(Result):
    """Sequences one replica's KV cache holds at once."""

    paged: int
    static: int


class PlanResult(Result):
    """`tokenomy plan --json`: one deployment (a list of these for the default scenarios)."""

    model: str
    gpu: str
    params: Params
    memory: PlanMemory
    fits: bool
    max_concurrency: MaxConcurrency
    ttft_s: float | None = Field(description="single-stream time to first token")
    itl_s: float | None = Field(description="single-stream inter-token latency")
    max_output_tokens_per_s: float | None = Field(description="deployment-wide maximum output throughput")
    usd_per_mtok: UsdPerMtok | None = None
    intervals_80: dict[str, FigureInterval] = Field(default_factory=dict, description=INTERVALS_80)
    notes: list[str] = Field(default_factory=list, description="what the figures rest on, e.g. a borrowed profile")


# --- tokenomy simulate / bench ------------------------------------------------------------------------------------


class Throughput(Result):
    output_tokens_per_s: float | None
    requests_per_s: float | None


class ServerMetrics(Result):
    """`tokenomy bench --server-metrics`: the server's own figures over the measured runs, from its Prometheus
    endpoint (counter and histogram deltas; gauges time-weighted over the scrapes). Server wall seconds."""

    url: str
    dialect: str = Field(description="vllm, sglang or llamacpp series")
    window_s: float = Field(description="first to last scrape")
    scrapes: int
    requests: float | None = Field(description="requests the server finished in the window (every client's)")
    ttft_s_mean: float | None
    itl_s_mean: float | None
    e2e_s_mean: float | None
    queue_s_mean: float | None
    waiting_mean: float | None
    waiting_peak: float | None
    running_mean: float | None
    running_peak: float | None
    kv_usage_mean: float | None = Field(description="share of the KV cache in use, 0-1")
    kv_usage_peak: float | None


class RunSummary(Result):
    """`tokenomy simulate --json` and `tokenomy bench --json`: one run, whoever ran it (virtual or real time)."""

    throughput: Throughput
    ttft_s: Percentiles
    itl_s: Percentiles
    tpot_s: Percentiles
    e2e_s: Percentiles
    goodput_rps: float | None = Field(default=None, description="requests/s meeting every SLO given")
    usd_per_mtok: UsdPerMtok | BlendedUsdPerMtok | None = Field(
        default=None, union_mode="left_to_right", description="input and output (one replica), or blended (a fleet)"
    )
    intervals_80: dict[str, FigureInterval] = Field(
        default_factory=dict, description=INTERVALS_80 + " (simulate, one replica; not bench, which measures)"
    )
    notes: list[str] = Field(default_factory=list, description="what the figures rest on, e.g. a borrowed profile")
    server: ServerMetrics | None = Field(default=None, description="bench --server-metrics: the server's figures")


class SimulateSweep(Result):
    """`tokenomy simulate --sweep-rates … --json` with no arrival process of its own: what ran, and one run summary
    per offered rate (each with its `rate`)."""

    deployment: dict[str, Any]
    workload: dict[str, Any]
    notes: list[str] = Field(default_factory=list, description="what the figures rest on, e.g. a borrowed profile")
    sweep: list[RunSummary]


# --- tokenomy advise ----------------------------------------------------------------------------------------------


class TwoWays(Result):
    """One figure estimated twice: the closed form's and the simulator's."""

    closed_form: float | None
    simulated: float | None


class AdviceClass(Result):
    """One request class of the workload: its volume, mean lengths, floors and SLO."""

    requests_per_day: float
    isl_mean: float
    osl_mean: float
    quality_floors: dict[str, float]
    slo: dict[str, float | None]
    allow_api: bool


class AdviceWorkload(Result):
    name: str
    source: str
    requests_per_day: float
    tokens_per_day: float
    classes: dict[str, AdviceClass]


class AdviceSearch(Result):
    """How many candidates the search priced, fitted, found feasible and verified, and how long it took."""

    candidates_evaluated: int
    candidates_fitting: int
    candidates_feasible: int
    verified: int
    simulations: int
    seconds: dict[str, float]


class AdviceTier(Result):
    """One tier of the plan: self-hosted (`kind` gpu: model, gpu, replicas by hour…) or an API."""

    name: str
    kind: str = Field(description="gpu (self-hosted), api, or batch (a provider's Batch API)")
    classes: list[str]
    usd_per_day: float | None = Field(description="simulated cost of the tier over the day")


class AdviceRecommendation(Result):
    """The cheapest plan meeting every SLO and floor: tiers, routes and what it costs."""

    tiers: list[AdviceTier]
    routes: dict[str, list[str]] = Field(description="per class: the tiers in order (self-hosted, then API)")
    usd_per_day: TwoWays
    usd_per_month: TwoWays
    usd_per_mtok: TwoWays


class Saving(Result):
    usd_per_day: float
    usd_per_month: float
    fraction: float = Field(description="1 - plan cost / baseline cost")


class Savings(Result):
    vs_all_api: Saving | None
    vs_fp16_static: Saving | None


class AdviceReport(Result):
    """`tokenomy advise --json`: the plan, both estimates of it, the baselines, savings and break-even."""

    workload: AdviceWorkload
    search: AdviceSearch
    recommendation: AdviceRecommendation
    estimates: list[dict[str, Any]] = Field(description="closed form vs simulator for each verified candidate")
    tolerance: dict[str, float] = Field(description="agreement bounds of the estimates (fractions)")
    pareto: dict[str, Any]
    baselines: dict[str, Any] = Field(description="all_api and fp16_static: what the plan is compared with")
    savings: Savings
    break_even: dict[str, Any]
    peak_hour: dict[str, Any] | None
    infeasible: list[dict[str, Any]] = Field(description="floors or SLOs no candidate reaches, and what is used")
    notes: list[str]


# --- tokenomy validate --------------------------------------------------------------------------------------------


class MetricError(Result):
    """Absolute percentage error of one metric over the rows predicted."""

    n: int
    skipped: int
    median_ape: float | None
    p90_ape: float | None


class ValidateRow(Result):
    """One input row: predicted with its error, or skipped with the reason."""

    id: str
    predicted: float | None = None
    measured: float | None = None
    ape: float | None = None
    skipped_reason: str | None = None


class ValidateReport(Result):
    """`tokenomy validate --json`."""

    metrics: dict[str, MetricError]
    rows: list[ValidateRow]


SCHEMAS: dict[str, type[Result]] = {
    "advise": AdviceReport,
    "plan": PlanResult,
    "run_summary": RunSummary,
    "simulate_sweep": SimulateSweep,
    "validate": ValidateReport,
}


def json_schema(model: type[Result]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, pydantic's generator) of one result type, titled and with its $id."""
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
