"""Typed results: the contracts of every `--json` output, and the JSON Schemas in docs/schemas/ generated from them.

Each command's machine-readable output is one of these models. Their fields are the stable keys of docs/design.md
(times in s, sizes in bytes, money in USD, fractions in 0–1); producers may add keys (`extra="allow"`) but never
rename these. An unknown figure is `null`: `to_json()` turns NaN and infinities into null, so the output is JSON
that any parser reads (Python's json module would otherwise write the non-standard `NaN`).

`python scripts/write_schemas.py` regenerates docs/schemas/*.schema.json; a test checks the committed files match
these models and that real command output validates against them.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


def json_safe(data: Any) -> Any:
    """The data with every NaN and infinity as None, numpy values as Python ones: dumps to strict JSON (null)."""
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


def dumps(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of `data` (dicts, lists, numbers, models): NaN/inf as null, never `NaN`."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    return json.dumps(json_safe(data), indent=indent, allow_nan=False, default=str)


class Result(BaseModel):
    """Base of every typed result: extra keys allowed (outputs grow, never rename), strict JSON out."""

    model_config = ConfigDict(extra="allow")

    def to_json(self, indent: int | None = 2) -> str:
        """This result as strict JSON text (NaN and infinities as null)."""
        return dumps(self, indent)


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


# --- tokenomy simulate / bench ------------------------------------------------------------------------------------


class Throughput(Result):
    output_tokens_per_s: float | None
    requests_per_s: float | None


class RunSummary(Result):
    """`tokenomy simulate --json` and `tokenomy bench --json`: one run, whoever ran it (virtual or real time)."""

    throughput: Throughput
    ttft_s: Percentiles
    itl_s: Percentiles
    tpot_s: Percentiles
    e2e_s: Percentiles
    goodput_rps: float | None = Field(default=None, description="requests/s meeting every SLO given")
    usd_per_mtok: UsdPerMtok | None = None


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
    "plan": PlanResult,
    "run_summary": RunSummary,
    "validate": ValidateReport,
}


def json_schema(model: type[Result]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, pydantic's generator) of one result type, titled and with its $id."""
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
