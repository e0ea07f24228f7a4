"""Why each recommendation: its top three reasons, each a counterfactual priced by the same closed form.

For a self-hosted tier, every dimension of the choice is compared with the best feasible candidate
that differs in that dimension only as far as possible: the weight precision (same accelerator,
parallelism, KV, draft and batch at bf16), the KV precision, speculative decoding on/off, the max
batch, the model, the accelerator, and the hour-by-hour mix (against the same replicas always on at
the on-demand price, sized for the busiest hour). Reasons are ranked by the share of the daily cost
they save; each states its numbers (e.g. "int4 weights free 105 GB → 2.6× concurrency → 41% lower
$/day"). An API-only group is explained against its best self-hosted candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tokenomy.advise.advisor import Advice, TierPlan
from tokenomy.advise.hourly import HOURS, daily_cost_usd, peak_replicas
from tokenomy.advise.search import CandidateTable, DeploymentKey

TOP_REASONS = 3


@dataclass(frozen=True)
class Reason:
    kind: str
    text: str
    saving: float  # fraction of the counterfactual's daily cost the choice saves (0-1; inf-cost → 1)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "saving_fraction": self.saving}


def _saving(chosen_usd: float, other_usd: float) -> float:
    if not math.isfinite(other_usd):
        return 1.0
    return max(0.0, 1.0 - chosen_usd / other_usd) if other_usd > 0 else 0.0


def _cost_phrase(chosen_usd: float, other_usd: float) -> str:
    if not math.isfinite(other_usd):
        return "the only way this deployment meets the SLOs"
    return f"{_saving(chosen_usd, other_usd):.0%} lower $/day"


def _rows_like(table: CandidateTable, row: int, **changes: object) -> np.ndarray:
    """Rows of the same group equal to `row` in every field except the ones changed."""
    key = table.keys[table.dep[row]]
    want = {f: getattr(key, f) for f in ("model", "gpu", "tp", "precision", "kv_precision")}
    want.update({k: v for k, v in changes.items() if k in want})
    deps = [i for i, k in enumerate(table.keys) if all(getattr(k, f) == v for f, v in want.items())]
    spec = changes.get("spec", bool(table.spec[row]))
    batch = changes.get("max_batch", int(table.max_batch[row]))
    return np.flatnonzero(
        (table.group == table.group[row]) & np.isin(table.dep, deps) & (table.spec == spec) & (table.max_batch == batch)
    )


def _best(table: CandidateTable, rows: np.ndarray) -> int | None:
    ok = rows[table.feasible()[rows]]
    return int(ok[np.argmin(table.usd_per_day[ok])]) if len(ok) else None


def _key(table: CandidateTable, row: int) -> DeploymentKey:
    return table.keys[table.dep[row]]


def _best_differing(table: CandidateTable, row: int, field: str) -> int | None:
    """The cheapest feasible row of the same group whose deployment has another `field` (model, gpu…)."""
    mine = getattr(_key(table, row), field)
    differs = np.array([getattr(table.keys[d], field) != mine for d in table.dep])
    return _best(table, np.flatnonzero((table.group == table.group[row]) & differs))


def precision_reason(table: CandidateTable, row: int) -> Reason | None:
    key = _key(table, row)
    if key.precision in ("bf16", "fp16"):
        return None
    same = _rows_like(table, row, precision="bf16")
    d = table.deployments[table.dep[row]]
    usd = float(table.usd_per_day[row])
    if not len(same) or table.slots[same[0]] == 0:
        return Reason(
            "precision",
            f"{key.precision} weights ({d.weight_bytes / 1e9:.0f} GB) fit {d.n_gpus}× {key.gpu} where bf16 does not",
            1.0,
        )
    other = int(same[0])
    freed = table.deployments[table.dep[other]].weight_bytes - d.weight_bytes
    other_usd = float(table.usd_per_day[other])
    steps = [f"{key.precision} weights free {freed / 1e9:.0f} GB per replica"]
    if table.slots[row] != table.slots[other]:
        ratio = table.slots[row] / max(table.slots[other], 1)
        steps.append(f"{ratio:.1f}× concurrency ({table.slots[other]} → {table.slots[row]} requests)")
    cap, other_cap = table.capacity_rps[row], table.capacity_rps[other]
    if other_cap > 0:
        steps.append(f"{cap / other_cap:.1f}× SLO-meeting capacity ({other_cap:.2f} → {cap:.2f} req/s)")
    if math.isfinite(other_usd):
        steps.append(f"{_saving(usd, other_usd):.0%} lower $/day than bf16 on the same {d.n_gpus}× {key.gpu}")
    else:
        steps.append(f"bf16 on the same {d.n_gpus}× {key.gpu} cannot meet the SLOs")
    return Reason("precision", " → ".join(steps), _saving(usd, other_usd))


def kv_reason(table: CandidateTable, row: int) -> Reason | None:
    key = _key(table, row)
    if key.kv_precision != "fp8":
        return None
    same = _rows_like(table, row, kv_precision="bf16")
    if not len(same):
        return None
    other = int(same[0])
    usd, other_usd = float(table.usd_per_day[row]), float(table.usd_per_day[other])
    return Reason(
        "kv_precision",
        f"fp8 KV cache holds {table.slots[row]} requests vs {table.slots[other]} at bf16 → "
        f"{_cost_phrase(usd, other_usd)} (KV precision assumed quality-neutral)",
        _saving(usd, other_usd),
    )


def spec_reason(table: CandidateTable, row: int) -> Reason | None:
    if table.drafts[table.dep[row]] is None:
        return None
    toggled = _rows_like(table, row, spec=not bool(table.spec[row]))
    if not len(toggled):
        return None
    other = int(toggled[0])
    usd, other_usd = float(table.usd_per_day[row]), float(table.usd_per_day[other])
    cap, other_cap = table.capacity_rps[row], table.capacity_rps[other]
    if table.spec[row]:
        gain = (
            f"{cap / other_cap:.1f}× SLO-meeting capacity ({other_cap:.2f} → {cap:.2f} req/s)"
            if other_cap > 0
            else f"{cap:.2f} req/s where without it no load meets the TPOT SLO"
        )
        text = (
            f"speculative decoding (draft {table.drafts[table.dep[row]].model.id}) cuts TPOT to "
            f"{table.tpot_s[row] * 1e3:.0f} ms → {gain} → {_cost_phrase(usd, other_usd)}"
        )
    else:
        text = (
            f"no speculative decoding: at {table.occupancy[row]:.0f} requests in flight the draft's verify step "
            f"costs more than it saves ({cap:.2f} req/s without it vs {other_cap:.2f} with it) → "
            f"{_cost_phrase(usd, other_usd)}"
        )
    return Reason("speculative", text, _saving(usd, other_usd))


def batch_reason(table: CandidateTable, row: int) -> Reason | None:
    smaller = [b for b in sorted(set(table.max_batch.tolist())) if b < table.max_batch[row]]
    if not smaller:
        return None
    same = _rows_like(table, row, max_batch=smaller[-1])
    if not len(same):
        return None
    other = int(same[0])
    usd, other_usd = float(table.usd_per_day[row]), float(table.usd_per_day[other])
    return Reason(
        "max_batch",
        f"max batch {table.max_batch[row]} (effective {table.slots[row]}) carries "
        f"{table.capacity_rps[row]:.2f} req/s per replica within the SLOs vs {table.capacity_rps[other]:.2f} at "
        f"{smaller[-1]} → {_cost_phrase(usd, other_usd)}",
        _saving(usd, other_usd),
    )


def model_reason(advice: Advice, table: CandidateTable, row: int) -> Reason | None:
    key = _key(table, row)
    group = table.groups[table.group[row]]
    other = _best_differing(table, row, "model")
    if other is None:
        return None
    q = advice.workload.quality
    floors = ", ".join(f"{b} {q.model_score(key.model, key.precision, b):.1f} ≥ {f:g}" for b, f in group.floors.items())
    usd, other_usd = float(table.usd_per_day[row]), float(table.usd_per_day[other])
    return Reason(
        "model",
        f"{key.model} at {key.precision} meets the floors ({floors or 'none set'}) at {_saving(usd, other_usd):.0%} "
        f"lower $/day than the best {_key(table, other).model} ({table.label(other)})",
        _saving(usd, other_usd),
    )


def gpu_reason(table: CandidateTable, row: int) -> Reason | None:
    key = _key(table, row)
    other = _best_differing(table, row, "gpu")
    if other is None:
        return None
    usd, other_usd = float(table.usd_per_day[row]), float(table.usd_per_day[other])
    per_usd = table.capacity_rps[row] / table.usd_on_demand[row]
    other_per_usd = table.capacity_rps[other] / table.usd_on_demand[other]
    return Reason(
        "accelerator",
        f"{key.gpu} serves {per_usd * 3600:,.0f} SLO-meeting requests per on-demand dollar vs "
        f"{other_per_usd * 3600:,.0f} for the best {_key(table, other).gpu} configuration "
        f"({table.label(other)}) → {_saving(usd, other_usd):.0%} lower $/day",
        _saving(usd, other_usd),
    )


def hours_reason(advice: Advice, tier: TierPlan) -> Reason | None:
    """The hour-by-hour mix against the same replicas always on at the on-demand price, sized for the peak."""
    table, r, day = advice.table, tier.row, tier.day
    if r is None or day is None:
        return None
    peak = int(peak_replicas(tier.group.rates_rps, tier.capacity_rps))
    static_usd = peak * HOURS * float(table.usd_on_demand[r])
    api_share = float((day.api_rps.sum()) / max(tier.group.rates_rps.sum(), 1e-12))
    parts = [f"{day.reserved} reserved"]
    if day.on_demand.max() > 0:
        parts.append(f"up to {int(day.on_demand.max())} on demand in {int((day.on_demand > 0).sum())} h")
    if api_share > 0:
        parts.append(f"{api_share:.1%} of requests to the API at peaks")
    return Reason(
        "hourly_mix",
        f"{', '.join(parts)} cost ${day.usd_per_day:,.0f}/day vs ${static_usd:,.0f} for {peak} replicas "
        f"always on at the on-demand price → {_saving(day.usd_per_day, static_usd):.0%} lower",
        _saving(day.usd_per_day, static_usd),
    )


def api_only_reasons(advice: Advice, tier: TierPlan) -> list[Reason]:
    """An API-only group: the API against self-hosting all of it, and the API's published scores."""
    table, group = advice.table, tier.group
    g_index = next(i for i, g in enumerate(table.groups) if g is group)
    rows = np.flatnonzero((table.group == g_index) & table.feasible())
    reasons = []
    if len(rows):  # the cheapest way to self-host all of it (no API spill)
        usd, _ = daily_cost_usd(
            group.rates_rps, table.capacity_rps[rows], table.usd_reserved[rows], table.usd_on_demand[rows], math.inf
        )
        best, gpu_usd = int(rows[np.argmin(usd)]), float(usd.min())
        reasons.append(
            Reason(
                "api_vs_self_hosted",
                f"the API costs ${tier.usd_per_day:,.0f}/day vs ${gpu_usd:,.0f} to self-host it all on the best "
                f"candidate ({table.label(best)}) → {_saving(tier.usd_per_day, gpu_usd):.0%} lower",
                _saving(tier.usd_per_day, gpu_usd),
            )
        )
    else:
        reasons.append(Reason("api_vs_self_hosted", "no self-hosted candidate meets the floors and SLOs", 1.0))
    for name, api in group.api.per_class.items() if group.api else []:
        floors = next(c for c in group.classes if c.name == name).spec.quality
        scores = ", ".join(f"{b} {advice.workload.quality.api_score(api.name, b):g} ≥ {f:g}" for b, f in floors.items())
        reasons.append(Reason("api_quality", f"{api.name} meets the '{name}' floors ({scores or 'none set'})", 0.0))
    return reasons[:TOP_REASONS]


def explain(advice: Advice, tier: TierPlan) -> list[Reason]:
    """The tier's top three reasons, largest saving first."""
    if tier.row is None:
        return api_only_reasons(advice, tier)
    table, r = advice.table, tier.row
    candidates = [
        precision_reason(table, r),
        kv_reason(table, r),
        spec_reason(table, r),
        batch_reason(table, r),
        model_reason(advice, table, r),
        gpu_reason(table, r),
        hours_reason(advice, tier),
    ]
    reasons = sorted((c for c in candidates if c is not None), key=lambda c: -c.saving)
    return reasons[:TOP_REASONS]
