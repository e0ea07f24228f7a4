"""80 % prediction intervals, calibrated out of sample on cross-validated residuals.

A prediction p of a metric gets the interval [p·exp(q10), p·exp(q90)], where q10 and q90 are the 10th and 90th
percentiles (5th and 95th for a stand-in pool on few groups, below) of log(measured / predicted) over a pool of
residuals, taken at the split-conformal order statistics of
the pool's n rows (the floor(0.1·(n+1))-th and ceil(0.9·(n+1))-th smallest: conformal_ranks, a little wider than
the plain percentiles for small pools), and the rule is split-conformal over groups:

* Every residual is out of sample: the log error of a row predicted by profiles refitted without the row's group in
  the leave-one-group-out cross-validation of `tokenomy validate --cv` (groupings: engine version, accelerator
  family, model family; each row so gives one residual per grouping, all three kept, so a band mixes the error of a
  new engine version, a new accelerator family and a new model family).
* A figure takes the band of its own pool, accelerator family × model family × metric, where that pool holds at
  least MIN_ROWS distinct rows from at least MIN_GROUPS distinct groups (engine version × accelerator family ×
  model family cells): rows of one or two sources show their scatter around a shared bias, not the shift the
  next source brings. Otherwise it takes the metric's band pooled over every group: if groups are exchangeable, a
  new group's row falls inside the pooled 10–90 % band of the other groups' out-of-sample residuals about 80 % of
  the time (marginally over groups). An own pool of MIN_ROWS rows from g < MIN_GROUPS groups is not thrown away:
  the band is the blend w·own + (1 − w)·pooled of the two bands' log quantiles, w = g / MIN_GROUPS, so a cell
  whose own rows miss by more than the pool (Qwen3 MoE on Blackwell) keeps part of that width. A pooled band that rests
  on fewer than MIN_POOLED_GROUPS groups cannot promise 80 % to a new group (a group-level conformal band needs 9),
  so it lends its 5–95 % band instead, and the note says so: wider where the data is thin. Narrower middle
  pools (accelerator family × metric) are not used: they leave out the between-group spread, and with them the
  cross-validated output-throughput coverage falls to 75/72/78 % (engine version / accelerator / model family).
* Throughput under a request rate or a fixed concurrency pools as its own metric (`output_throughput@load`,
  residual_metric), so the offline throughput band that plan's throughput figures take holds offline rows only.
* A metric with too few rows or groups of its own (the median_* rows) takes the pooled band of its metric kind
  (throughput, ttft, itl, e2e), and failing that the band of every metric; the interval then has `thin` set and a
  note naming the pool that stood in and what the own pool held.
* The cross-validation's own coverage figure is nested: a held-out row's band is built as here from the residuals
  of rows outside its group only (calibrate/validate.py: cv_report), never from its own or its group's residuals.

Where every row of a metric sits in one group of each grouping (the online TTFT/ITL/request-throughput rows are one
TensorRT-LLM v0.14 Hopper Llama table), no out-of-group residual of that metric exists, so its cross-validated band
is its kind's and its coverage says how alike the kinds' errors are, not how well a band of its own would cover.
The table ships as `catalog/data/residual_quantiles.json`, written by `scripts/fit_profiles.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import numpy as np

from tokenomy.results import FigureInterval

RESIDUALS_FILE = "residual_quantiles.json"
# Distinct rows a pool needs for a band of its own: split-conformal, the 90 % one-sided bound of n calibration rows is
# their ceil(0.9·(n + 1))-th smallest, which exists from n = 9; below that the band would be the extremes or less.
MIN_ROWS = 10
# Distinct groups (engine version × accelerator family × model family cells) a pool needs to stand on its own.
# Cross-validated output-throughput coverage (engine version / accelerator family / model family held out, same
# held-out predictions, scripts/fit_profiles.py --from-report): 76/77/83 % with 3; 70/77/83 % with 1 or 2.
MIN_GROUPS = 3
# Distinct groups a pooled band needs to stand in at 80 % for a new group's figure: at the group level the
# split-conformal upper rank ceil(0.9·(G + 1)) exists from G = 9 groups. A stand-in pool of fewer groups (the online
# TTFT/ITL rows: NIM's tables and one TensorRT-LLM table, 4 groups) cannot give a new group that guarantee, so its
# 5–95 % band (WIDE_LEVELS) stands in and the interval says so. Cross-validated 80 % coverage (same held-out
# predictions, scripts/fit_profiles.py --from-report): see the README's accuracy table; with the 10–90 % band for
# every stand-in, mean ITL 70.8 % and mean TTFT 71.5 % (engine version / accelerator / model family together).
MIN_POOLED_GROUPS = 9
LEVELS = (0.10, 0.90)
WIDE_LEVELS = (0.05, 0.95)
ANY = "*"

# Accelerator id pattern -> family (one architecture and memory type; GDDR parts apart from HBM ones).
_ACCELERATOR_FAMILIES = (
    (r"^(gh200|h100|h200|h20|h800)", "hopper"),
    (r"^rtx[-_ ]?pro[-_ ]?6000", "blackwell-gddr"),
    (r"^(gb200|gb300|b200|b300|b100)", "blackwell"),
    (r"^(a100|a800|a10|a30|a40)", "ampere"),
    (r"^(l40|l4|rtx[-_ ]?4090|rtx[-_ ]?6000[-_ ]?ada)", "ada"),
    (r"^mi35", "amd-cdna4"),
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


# Throughput measured under a burst, a request rate or a fixed concurrency pools apart from the offline figure plan
# reports and its band describes (metric `output_throughput@load`; its metric kind is still throughput).
UNDER_LOAD = ("burst", "rate", "concurrency")


def residual_metric(metric: str, load_kind: str) -> str:
    """The metric a row's residual pools under: its own, but a throughput under load gets '@load' appended."""
    return f"{metric}@load" if metric_kind(metric) == "throughput" and load_kind in UNDER_LOAD else metric


def pool_keys(metric: str, accel_family: str, model_fam: str) -> list[str]:
    """The pools a figure may take its band from, in order: its own, its metric's, its metric kind's, every metric's."""
    return [
        f"{metric}|{accel_family}|{model_fam}",
        f"{metric}|{ANY}|{ANY}",
        f"kind:{metric_kind(metric)}|{ANY}|{ANY}",
        f"{ANY}|{ANY}|{ANY}",
    ]


class Residual(NamedTuple):
    """One out-of-sample residual: log(measured / predicted) of a held-out row, with the row and its group."""

    metric: str
    accel_family: str
    model_family: str
    log_ratio: float
    row: str = ""  # the row's id: its residuals from several groupings count as one row; "" = a row of its own
    group: str = ""  # the row's engine version × accelerator family × model family cell; "" = a group of its own


@dataclass(frozen=True)
class Pool:
    """The band of one pool: distinct rows and groups behind it, and the 10th/90th percentiles of its residuals."""

    n: int
    groups: int
    q10: float
    q90: float
    q05: float | None = None  # the 5th/95th percentiles (same conformal rule): the band of a stand-in on few groups
    q95: float | None = None

    def stand_in_band(self, min_groups: int = MIN_POOLED_GROUPS) -> tuple[float, float, bool]:
        """The log band this pool lends a figure whose own pool is thin: 10–90 %, or 5–95 % when it rests on under
        min_groups groups (and has them); the flag says which."""
        if self.groups < min_groups and self.q05 is not None and self.q95 is not None:
            return self.q05, self.q95, True
        return self.q10, self.q90, False


@dataclass(frozen=True)
class Interval:
    """An 80 % interval around a predicted value, with the residual pool it came from."""

    lo: float
    hi: float
    pool: str  # its key; "own key + pooled key" for a blend of the two
    n: int  # distinct rows in that pool (the pooled one for a blend)
    note: str = ""  # set when a pool other than the figure's own stood in, or the last one was thin too
    thin: bool = False  # the figure's own pool was too thin: a pooled band stood in


@dataclass(frozen=True)
class ResidualTable:
    """Bands of log(measured / predicted) per pool (key 'metric|accelerator family|model family')."""

    pools: dict[str, Pool]
    min_rows: int = MIN_ROWS
    min_groups: int = MIN_GROUPS
    min_pooled_groups: int = MIN_POOLED_GROUPS

    def rich(self, pool: Pool) -> bool:
        """Whether a pool holds enough rows from enough groups for its own band."""
        return pool.n >= self.min_rows and pool.groups >= self.min_groups

    def interval(self, metric: str, accel_family: str, model_fam: str, value: float) -> Interval | None:
        """The 80 % interval of `value`: its own pool's band if rich, else the first rich pooled band of pool_keys
        (the largest if none is), blended with the own band by weight groups / min_groups where the own pool
        holds min_rows rows (module docstring)."""
        keys = pool_keys(metric, accel_family, model_fam)
        own = self.pools.get(keys[0])
        if own is not None and self.rich(own):
            return Interval(value * float(np.exp(own.q10)), value * float(np.exp(own.q90)), keys[0], own.n)
        held = [(k, self.pools[k]) for k in keys[1:] if k in self.pools]
        if not held:
            return None
        key, pool = next(((k, p) for k, p in held if self.rich(p)), max(held, key=lambda kp: kp[1].n))
        pool_lo, pool_hi, wide = pool.stand_in_band(self.min_pooled_groups)
        w = min(own.groups / self.min_groups, 1.0) if own is not None and own.n >= self.min_rows else 0.0
        q10 = w * own.q10 + (1 - w) * pool_lo if own is not None else pool_lo
        q90 = w * own.q90 + (1 - w) * pool_hi if own is not None else pool_hi
        note = f"pooled band {key} ({pool.n} rows, {pool.groups} groups)"
        if wide:
            note = f"pooled 5-95% band {key} ({pool.n} rows, only {pool.groups} groups)"
        if own is None:
            note += f": {keys[0]} has 0 rows"
        else:
            note += f": {keys[0]} has {own.n} rows from {own.groups} groups"
            note += f", its band weighted {w:.2f}" if w else ""
        if not self.rich(pool):
            note += f"; the pooled band has under {self.min_rows} rows from {self.min_groups} groups too"
        name = f"{keys[0]} + {key}" if w else key  # a blend names both pools; n: the rows behind the wider one
        return Interval(value * float(np.exp(q10)), value * float(np.exp(q90)), name, pool.n, note, thin=True)

    def to_dict(self) -> dict:
        return {
            "min_rows": self.min_rows,
            "min_groups": self.min_groups,
            "levels": list(LEVELS),
            "wide_levels": list(WIDE_LEVELS),
            "min_pooled_groups": self.min_pooled_groups,
            "pools": {
                k: {"n": p.n, "groups": p.groups, "q10": p.q10, "q90": p.q90, "q05": p.q05, "q95": p.q95}
                for k, p in sorted(self.pools.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> ResidualTable:
        pools = {
            k: Pool(
                int(v["n"]),
                int(v.get("groups", v["n"])),
                float(v["q10"]),
                float(v["q90"]),
                _optional_float(v.get("q05")),
                _optional_float(v.get("q95")),
            )
            for k, v in data["pools"].items()
        }
        return cls(pools, int(data.get("min_rows", MIN_ROWS)), int(data.get("min_groups", MIN_GROUPS)),
                   int(data.get("min_pooled_groups", MIN_POOLED_GROUPS)))  # fmt: skip


def build_residual_table(
    residuals: Iterable[Residual | tuple], min_rows: int = MIN_ROWS, min_groups: int = MIN_GROUPS
) -> ResidualTable:
    """Band per pool from Residual records, or plain (metric, accelerator family, model family, log ratio)
    tuples, each then a row and group of its own: 10th/90th percentiles of all its residuals."""
    values: dict[str, list[float]] = {}
    rows: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {}
    for i, item in enumerate(residuals):
        r = Residual(*item)
        row, group = r.row or f"#{i}", r.group or f"#{i}"
        for key in pool_keys(r.metric, r.accel_family, r.model_family):
            values.setdefault(key, []).append(r.log_ratio)
            rows.setdefault(key, set()).add(row)
            groups.setdefault(key, set()).add(group)
    pools = {}
    for key, v in values.items():
        q10, q90 = conformal_band(v, len(rows[key]))
        q05, q95 = conformal_band(v, len(rows[key]), wide=True)
        pools[key] = Pool(len(rows[key]), len(groups[key]), q10, q90, q05, q95)
    return ResidualTable(pools, min_rows, min_groups)


def _optional_float(value: Any) -> float | None:
    """A JSON number as a float, None kept (a table written before q05/q95 existed)."""
    return None if value is None else float(value)


# LEVELS and WIDE_LEVELS as exact fractions (twentieths): the order statistics below are integer arithmetic, never
# a float rounded twice.
_LEVELS_20THS = {False: (2, 18), True: (1, 19)}


def conformal_ranks(n: int, wide: bool = False) -> tuple[int, int]:
    """Split-conformal ranks (1-based) of a band from n calibration rows: the floor(0.1·(n+1))-th and the
    ceil(0.9·(n+1))-th smallest (wide: 0.05 and 0.95), between which a new exchangeable row falls with probability
    >= 80 % (90 %) (Lei et al. 2018, 'Distribution-free predictive inference for regression'); clamped to 1..n
    (below n = 9, or n = 19 when wide, the lower one is the minimum and the guarantee is lost; MIN_ROWS rules out
    the first for a band of its own)."""
    lo_20, hi_20 = _LEVELS_20THS[wide]
    lo = lo_20 * (n + 1) // 20
    hi = -(-hi_20 * (n + 1) // 20)
    return max(lo, 1), min(hi, n)


def conformal_band(values: list[float], n: int, wide: bool = False) -> tuple[float, float]:
    """The values at the conformal_ranks of n rows, scaled to len(values) = m (a row may give several residuals,
    one per grouping): the lower rank k of n becomes (k − 1)·m/n + 1, the upper ⌈k·m/n⌉, the outer ends of the
    k-th row's share of the sorted values, so the band never narrows."""
    ordered = sorted(values)
    m = len(ordered)
    lo, hi = conformal_ranks(n, wide)
    return float(ordered[(lo - 1) * m // n]), float(ordered[min(-(-hi * m // n), m) - 1])


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


# --- plan and simulate figures ------------------------------------------------------------------------------------
# The one mapping of `plan` and `simulate` figures to the residual metrics behind their bands: (a substring of the
# figure's key path such as 'ttft_s.p99' or 'usd_per_mtok.output', residual metric, exponent), first match wins.
# Exponent +1: the figure scales as the metric; -1: inversely (it is a cost per token, and tokens per hour are the
# throughput). The simulator is deterministic given the cost model, so its figures take the cost model's band too.
FIGURE_METRICS: tuple[tuple[str, str, int], ...] = (
    ("usd_per_mtok", "output_throughput", -1),  # $/token = $/hour ÷ tokens/hour (the prefill share held)
    ("energy_j_per_output_token", "output_throughput", -1),  # J/token = W ÷ tok/s (board power's own error not in)
    ("single_stream_tokens_per_s", "mean_itl", -1),  # one stream's output rate is ~1 / ITL
    ("tokens_per_s", "output_throughput", 1),  # plan: max (offline) throughput; simulate: served; input and output
    ("requests_per_s", "output_throughput", 1),  # requests/s = output tok/s ÷ output tokens per request
    ("ttft_s", "mean_ttft", 1),  # plan's single stream and every simulated TTFT percentile
    ("itl", "mean_itl", 1),  # itl_s, itl_at_max_batch_s and every simulated ITL percentile
    ("tpot_s", "mean_itl", 1),  # TPOT is ITL's kind
    ("e2e_s", "mean_e2e", 1),  # no mean_e2e residuals shipped: falls back to the e2e kind's pool, and says so
)


def figure_metric(figure: str) -> tuple[str, int] | None:
    """The residual metric and exponent of a plan/simulate figure's key path (FIGURE_METRICS), or None."""
    return next(((metric, sign) for part, metric, sign in FIGURE_METRICS if part in figure), None)


def figure_interval_80(figure: str, gpu_id: str, model_id: str, value: float | None) -> FigureInterval | None:
    """80 % interval of a plan/simulate figure: its residual metric's band (FIGURE_METRICS), inverted for a cost,
    stretched to reach the prediction where the pool's residuals lie all on one side of it; None without one."""
    found = figure_metric(figure)
    table = shipped_residual_table()
    if found is None or table is None or value is None or not np.isfinite(value) or value <= 0:
        return None
    metric, sign = found
    accel, model = accelerator_family(gpu_id), model_family(model_id)
    band = table.interval(metric, accel, model, 1.0)
    if band is None:
        return None
    lo, hi = (band.lo, band.hi) if sign > 0 else (1.0 / band.hi, 1.0 / band.lo)
    note = band.note
    if lo > 1.0 or hi < 1.0:
        side = "above" if lo > 1.0 else "below"
        stretched = f"the pool's 80% band lies wholly {side} the prediction: stretched to it"
        note = f"{note}; {stretched}" if note else stretched
    return FigureInterval(
        interval_80=[value * min(lo, 1.0), value * max(hi, 1.0)],
        metric=metric,
        inverse=sign < 0,
        pool=band.pool,
        n=band.n,
        thin=band.thin,
        note=note,
    )


def figure_intervals(figures: dict[str, Any], gpu_id: str, model_id: str) -> dict[str, FigureInterval]:
    """figure_interval_80 of every number of a plain plan or run summary, at the top level and one level down
    ('usd_per_mtok.output'), keyed by key path; figures FIGURE_METRICS does not name, and lists, have none."""
    out: dict[str, FigureInterval] = {}
    for key, value in figures.items():
        for path, v in value.items() if isinstance(value, dict) else [(None, value)]:
            path = key if path is None else f"{key}.{path}"
            iv = figure_interval_80(path, gpu_id, model_id, v) if isinstance(v, int | float) else None
            if iv is not None and not isinstance(v, bool):
                out[path] = iv
    return out


def interval_notes(intervals: dict[str, FigureInterval]) -> list[str]:
    """One line per residual pool that stood in for a thin one or was stretched, naming the figures it bands."""
    by_note: dict[str, list[str]] = {}
    for path, iv in intervals.items():
        if iv.note:
            by_note.setdefault(iv.note, []).append(path)
    return [f"80% interval of {', '.join(paths)}: {note}" for note, paths in by_note.items()]
