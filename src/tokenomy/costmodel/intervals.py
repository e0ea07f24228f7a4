"""80 % prediction intervals from cross-validated residuals.

A prediction p of a metric gets the interval [p·exp(q10), p·exp(q90)], where q10 and q90 are the
10th and 90th percentiles of log(measured / predicted) over the out-of-sample residuals of
`tokenomy validate --cv` for the same kind of figure: accelerator family × model family ×
metric, or, where that pool holds fewer than MIN_ROWS residuals, the first wider pool that
holds enough (accelerator family × metric, model family × metric, metric, metric kind, all),
and the interval says which pool it used. The residual table ships as
`catalog/data/residual_quantiles.json`, written by `scripts/fit_profiles.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

RESIDUALS_FILE = "residual_quantiles.json"
MIN_ROWS = 10
LEVELS = (0.10, 0.90)
ANY = "*"

# Accelerator id pattern -> family (one architecture and memory type; GDDR parts apart from HBM ones).
_ACCELERATOR_FAMILIES = (
    (r"^(gh200|h100|h200|h20|h800)", "hopper"),
    (r"^rtx[-_ ]?pro[-_ ]?6000", "blackwell-gddr"),
    (r"^(gb200|gb300|b200|b300|b100)", "blackwell"),
    (r"^(a100|a800|a10|a30|a40)", "ampere"),
    (r"^(l40|l4|rtx[-_ ]?4090|rtx[-_ ]?6000[-_ ]?ada)", "ada"),
    (r"^mi3", "amd-cdna3"),
    (r"^gaudi", "gaudi"),
    (r"^tpu", "tpu"),
)
# Model id pattern -> family (architecture lineage; MoE apart from dense).
_MODEL_FAMILIES = (
    (r"^llama-4", "llama-4-moe"),
    (r"^llama", "llama"),
    (r"^mixtral", "mixtral-moe"),
    (r"^mistral", "mistral"),
    (r"^qwen3-\d+b-a\d+b", "qwen3-moe"),
    (r"^qwen", "qwen"),
    (r"^deepseek", "deepseek-moe"),
    (r"^gpt-oss", "gpt-oss-moe"),
    (r"^gemma", "gemma"),
)


def accelerator_family(gpu_id: str) -> str:
    """The family of an accelerator id ('H200-SXM' -> 'hopper'); unknown ids are their own family."""
    key = gpu_id.strip().lower()
    return next((fam for pat, fam in _ACCELERATOR_FAMILIES if re.match(pat, key)), key)


def model_family(model_id: str) -> str:
    """The family of a model id ('mixtral-8x7b' -> 'mixtral-moe'); unknown ids are their own family."""
    key = model_id.strip().lower()
    return next((fam for pat, fam in _MODEL_FAMILIES if re.match(pat, key)), key)


def metric_kind(metric: str) -> str:
    """Coarse kind of a metric: throughput, ttft, itl (ITL and TPOT), e2e, or the metric itself."""
    for kind, tags in (
        ("throughput", ("throughput",)),
        ("ttft", ("ttft",)),
        ("itl", ("itl", "tpot")),
        ("e2e", ("e2e",)),
    ):
        if any(t in metric for t in tags):
            return kind
    return metric


def pool_keys(metric: str, accel_family: str, model_fam: str) -> list[str]:
    """The pools a figure may take its residuals from, narrowest first."""
    return [
        f"{metric}|{accel_family}|{model_fam}",
        f"{metric}|{accel_family}|{ANY}",
        f"{metric}|{ANY}|{model_fam}",
        f"{metric}|{ANY}|{ANY}",
        f"kind:{metric_kind(metric)}|{ANY}|{ANY}",
        f"{ANY}|{ANY}|{ANY}",
    ]


@dataclass(frozen=True)
class Interval:
    """An 80 % interval around a predicted value, with the residual pool it came from."""

    lo: float
    hi: float
    pool: str
    n: int  # residuals in that pool
    note: str = ""  # set when a wider pool stood in for a thin one


@dataclass(frozen=True)
class ResidualTable:
    """Quantiles of log(measured / predicted) per pool (key 'metric|accelerator family|model family')."""

    pools: dict[str, tuple[int, float, float]]  # key -> (n, q10, q90)
    min_rows: int = MIN_ROWS

    def interval(self, metric: str, accel_family: str, model_fam: str, value: float) -> Interval | None:
        """The 80 % interval of `value` from the narrowest pool with at least min_rows residuals."""
        keys = pool_keys(metric, accel_family, model_fam)
        for i, key in enumerate(keys):
            n, q10, q90 = self.pools.get(key, (0, 0.0, 0.0))
            if n >= self.min_rows:
                note = ""
                if i:
                    thin = self.pools.get(keys[0], (0, 0, 0))[0]
                    note = f"wider pool {key} ({n} residuals): {keys[0]} has {thin}"
                return Interval(value * float(np.exp(q10)), value * float(np.exp(q90)), key, n, note)
        return None

    def to_dict(self) -> dict:
        return {
            "min_rows": self.min_rows,
            "levels": list(LEVELS),
            "pools": {k: {"n": n, "q10": q10, "q90": q90} for k, (n, q10, q90) in sorted(self.pools.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> ResidualTable:
        pools = {k: (int(v["n"]), float(v["q10"]), float(v["q90"])) for k, v in data["pools"].items()}
        return cls(pools, int(data.get("min_rows", MIN_ROWS)))


def build_residual_table(residuals: Iterable[tuple[str, str, str, float]], min_rows: int = MIN_ROWS) -> ResidualTable:
    """Quantiles per pool from (metric, accelerator family, model family, log(measured/predicted)) tuples."""
    groups: dict[str, list[float]] = {}
    for metric, accel, model, r in residuals:
        for key in pool_keys(metric, accel, model):
            groups.setdefault(key, []).append(r)
    pools = {}
    for key, values in groups.items():
        arr = np.asarray(values)
        pools[key] = (int(arr.size), float(np.quantile(arr, LEVELS[0])), float(np.quantile(arr, LEVELS[1])))
    return ResidualTable(pools, min_rows)


@cache
def shipped_residual_table() -> ResidualTable | None:
    """The residual table shipped with tokenomy, or None if it has not been generated."""
    from tokenomy.catalog.models import DATA_DIR

    path = DATA_DIR / RESIDUALS_FILE
    if not path.is_file():
        return None
    return ResidualTable.from_dict(json.loads(path.read_text()))


def interval_80(metric: str, accel_family: str, model_fam: str, value: float) -> Interval | None:
    """80 % interval of a predicted `value` of `metric` (e.g. 'output_throughput', 'mean_ttft', 'mean_itl') for an
    accelerator family and model family (see accelerator_family, model_family); None without a residual table."""
    table = shipped_residual_table()
    return table.interval(metric, accel_family, model_fam, value) if table else None


def interval_80_for(metric: str, gpu_id: str, model_id: str, value: float) -> Interval | None:
    """interval_80 for an accelerator id and model id ('H100-SXM', 'llama-3.1-70b'): families looked up here."""
    return interval_80(metric, accelerator_family(gpu_id), model_family(model_id), value)
