"""Figures of one alternative (a fleet run on the replayed requests) and of what actually happened (no I/O).

Cost, by the ledger's own rule (docs/design.md "Pricing self-hosted tokens"), so the same traffic costs the same
in the ledger and in replay: each completed request's tokens at its tier's $/Mtok — an API tier's price (cached
input tokens at its cached-input rate), a GPU tier's $/hour amortised at the planned utilisation
(catalog/prices.py `self_hosted_prices`, the function the gateway prices with). Total, per team and per hour are
sums of these per-request prices. Beside it, `fleet_usd`: what running the alternative's fleet costs over the
replayed period (GPU tiers' hourly price × the run's span + the API tokens), which exceeds the billed cost when
the GPUs run below the planned utilisation. $/Mtok = billed cost / all tokens of completed requests; SLO
attainment = completed requests within every objective / all requests; TTFT and TPOT percentiles over
completed requests; spilled = share of requests served by a tier after the first on their route; quality floor
per class = per benchmark, the lowest published score among the models that served the class's completed
requests (replay/quality.py).
Actual (ledger): the same from the ledger's own cost, TTFT and e2e per request, and its tiers' models where the
gateway config the ledger was written under says what they ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tokenomy.catalog.prices import TokenPrices, self_hosted_prices
from tokenomy.replay.quality import NOT_SERVED, QualityFloor, ServedModel, class_floors, fleet_models
from tokenomy.replay.sources import NO_CLASS, Replayed
from tokenomy.sim.fleet import ApiTier, Fleet, FleetRun, GpuTier
from tokenomy.sim.run import SLO

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Figures:
    """One row of the comparison (dollars, seconds, fractions); None where unknown."""

    name: str
    requests: int
    completed: int
    usd: float | None
    usd_by_team: dict[str, float]
    usd_per_mtok: float | None
    slo_attainment: float | None
    ttft_s: dict[str, float]
    tpot_s: dict[str, float]
    spilled_share: float | None
    gpu_hours: float | None = None
    usd_by_hour: list[float] = field(default_factory=list)  # whole fleet, per hour since the first arrival
    tier_requests: dict[str, int] = field(default_factory=dict)
    ttft_quantiles_s: list[float] = field(default_factory=list)  # percentiles 0, 1, …, 100
    tpot_quantiles_s: list[float] = field(default_factory=list)
    fleet_usd: float | None = None  # GPU-hours over the period + API tokens (alternatives only)
    quality_floor: dict[str, list[QualityFloor]] = field(default_factory=dict)  # class -> one per benchmark


def _percentiles(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if not v.size:
        return {}
    return {f"p{q}": float(x) for q, x in zip(PERCENTILES, np.percentile(v, PERCENTILES), strict=True)}


def _quantiles(values: np.ndarray) -> list[float]:
    v = values[np.isfinite(values)]
    return [float(x) for x in np.percentile(v, np.arange(101))] if v.size else []


def _by_hour(usd: np.ndarray, arrival_s: np.ndarray, hours: int) -> np.ndarray:
    idx = np.minimum((arrival_s // 3600).astype(np.int64), hours - 1)
    return np.bincount(idx, weights=usd, minlength=hours)


def _hours(arrival_s: np.ndarray) -> int:
    return int(arrival_s[-1] // 3600) + 1 if len(arrival_s) else 1


def _tpot_s(e2e_s: np.ndarray, ttft_s: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(output_tokens > 1, (e2e_s - ttft_s) / np.maximum(output_tokens - 1, 1), np.nan)


def _attainment(ok: np.ndarray, total: int, slo: SLO | None) -> float | None:
    return float(ok.sum()) / total if slo is not None and slo.given and total else None


def _met(slo: SLO | None, ttft_s: np.ndarray, tpot_s: np.ndarray, e2e_s: np.ndarray, done: np.ndarray) -> np.ndarray:
    ok = done.copy()
    if slo is None:
        return ok
    with np.errstate(invalid="ignore"):
        if slo.ttft_s is not None:
            ok &= ttft_s <= slo.ttft_s
        if slo.tpot_s is not None:
            ok &= ~(tpot_s > slo.tpot_s)  # one-token requests have no TPOT
        if slo.e2e_s is not None:
            ok &= e2e_s <= slo.e2e_s
    return ok


def by_team(usd_per_request: np.ndarray, teams: np.ndarray) -> dict[str, float]:
    """Cost summed per team."""
    out: dict[str, float] = {}
    for team in sorted(set(teams.tolist())):
        out[team] = float(usd_per_request[teams == team].sum())
    return out


def _classes(rep: Replayed) -> np.ndarray:
    w = rep.workload
    return w.classes.astype(str) if w.classes is not None else np.full(len(w), NO_CLASS, dtype=object)


def actual_quality(rep: Replayed, models: dict[str, ServedModel] | None) -> dict[str, list[QualityFloor]]:
    """The quality floor per class of what happened: the ledger's tiers, by what `models` says they ran."""
    if rep.actual_tiers is None:
        return class_floors(_classes(rep), None, None, f"a {rep.kind} source does not say what served each request")
    why = "the ledger names tiers, not the models behind them: give the gateway config it was written under "
    why += "(--gateway-config)"
    return class_floors(_classes(rep), rep.actual_tiers.astype(str), models, why)


def actual_figures(rep: Replayed, slo: SLO | None, models: dict[str, ServedModel] | None = None) -> Figures:
    """What the source says happened (cost only from a ledger); `models`: what each ledger tier ran."""
    w = rep.workload
    n = len(w)
    ttft = rep.actual_ttft_s if rep.actual_ttft_s is not None else np.full(n, np.nan)
    e2e = rep.actual_e2e_s if rep.actual_e2e_s is not None else np.full(n, np.nan)
    tpot = _tpot_s(e2e, ttft, w.output_tokens)
    usd = float(rep.actual_usd.sum()) if rep.actual_usd is not None else None
    tokens = float(w.input_tokens.sum() + w.output_tokens.sum())
    known = np.isfinite(ttft).any()
    return Figures(
        name="actual",
        requests=n,
        completed=n,
        usd=usd,
        usd_by_team=by_team(rep.actual_usd, rep.teams) if rep.actual_usd is not None else {},
        usd_per_mtok=usd / tokens * 1e6 if usd is not None and tokens else None,
        slo_attainment=_attainment(_met(slo, ttft, tpot, e2e, np.ones(n, bool)), n, slo) if known else None,
        ttft_s=_percentiles(ttft),
        tpot_s=_percentiles(tpot),
        spilled_share=float(rep.actual_spilled.mean()) if rep.actual_spilled is not None else None,
        usd_by_hour=_by_hour(rep.actual_usd, w.arrival_s, _hours(w.arrival_s)).tolist()
        if rep.actual_usd is not None
        else [],
        tier_requests=_counts(rep.actual_tiers) if rep.actual_tiers is not None else {},
        ttft_quantiles_s=_quantiles(ttft),
        tpot_quantiles_s=_quantiles(tpot),
        quality_floor=actual_quality(rep, models),
    )


def _counts(values: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(values.astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def tier_prices(tier: GpuTier | ApiTier) -> TokenPrices:
    """A tier's $/Mtok: an API's prices; a GPU tier's $/hour (its reserved/on-demand mix, per GPU) amortised by
    the one rule for self-hosted tokens (catalog/prices.py `self_hosted_prices`)."""
    if isinstance(tier, ApiTier):
        return TokenPrices(tier.usd_per_mtok_input, tier.usd_per_mtok_output, tier.usd_per_mtok_cached_input)
    usd_per_gpu_hour = tier.usd_per_hour() / (tier.replicas * tier.deployment.n_gpus)
    return self_hosted_prices(tier.deployment, usd_per_gpu_hour, tier.billing_utilisation)


def per_request_usd(fleet: Fleet, run: FleetRun, rep: Replayed) -> np.ndarray:
    """Each completed request's price on the tier that served it (the ledger's rule); 0 for dropped ones."""
    log = run.result.log
    cached = rep.cached_input_tokens if rep.cached_input_tokens is not None else np.zeros(len(rep))
    cached = np.minimum(cached, log.input_tokens)
    usd = np.zeros(len(rep))
    for i, tier in enumerate(fleet.tiers):
        mine = (run.tier_of == i) & log.done
        p = tier_prices(tier)
        cached_rate = p.usd_per_mtok_input if p.usd_per_mtok_cached_input is None else p.usd_per_mtok_cached_input
        usd[mine] = (
            (log.input_tokens[mine] - cached[mine]) * p.usd_per_mtok_input
            + cached[mine] * cached_rate
            + log.output_tokens[mine] * p.usd_per_mtok_output
        ) / 1e6
    return usd


def alternative_figures(
    name: str, fleet: Fleet, run: FleetRun, rep: Replayed, slo: SLO | None, apis: dict[str, str] | None = None
) -> Figures:
    """One alternative's figures from its fleet run on the replayed requests (`apis`: API tier -> catalogue name)."""
    log = run.result.log
    done = log.done
    n = len(rep)
    ttft = np.where(done, log.first_token_s - log.arrival_s, np.nan)
    e2e = np.where(done, log.finish_s - log.arrival_s, np.nan)
    tpot = _tpot_s(e2e, ttft, log.output_tokens)
    per_request = per_request_usd(fleet, run, rep)
    usd = float(per_request.sum())
    tokens = float(log.input_tokens[done].sum() + log.output_tokens[done].sum())
    spilled = run.summary.get("spilled")
    tier_names = np.array([*(t.name for t in fleet.tiers), NOT_SERVED], dtype=object)  # tier_of -1: NOT_SERVED
    served = np.where(done, run.tier_of, -1)
    floors = class_floors(_classes(rep), tier_names[served], fleet_models(fleet, apis or {}))
    return Figures(
        name=name,
        requests=n,
        completed=int(done.sum()),
        usd=usd,
        usd_by_team=by_team(per_request, rep.teams),
        usd_per_mtok=usd / tokens * 1e6 if tokens else None,
        slo_attainment=_attainment(_met(slo, ttft, tpot, e2e, done), n, slo) if slo is not None else None,
        ttft_s=_percentiles(ttft),
        tpot_s=_percentiles(tpot),
        spilled_share=float(spilled) / n if spilled is not None and n else None,
        gpu_hours=float(run.summary["cost"].get("gpu_hours", math.nan)),
        usd_by_hour=_by_hour(per_request, rep.workload.arrival_s, _hours(rep.workload.arrival_s)).tolist(),
        tier_requests={name: int(t["requests"]) for name, t in run.summary["tiers"].items()},
        ttft_quantiles_s=_quantiles(ttft),
        tpot_quantiles_s=_quantiles(tpot),
        fleet_usd=float(run.summary["cost"]["usd"]),
        quality_floor=floors,
    )


def quality_cells(rows: list[Figures]) -> tuple[list[str], list[list[str]], list[str]]:
    """The quality floors of every row as a table: header, one line per class × benchmark ('score model' or
    'unknown [n]'), and the numbered reasons for 'unknown' (each reason once)."""
    header = ["class", "benchmark", *(f.name for f in rows)]
    classes = sorted({c for f in rows for c in f.quality_floor})
    notes: dict[str, int] = {}
    body = []
    for cls in classes:
        benchmarks = list(dict.fromkeys(q.benchmark for f in rows for q in f.quality_floor.get(cls, [])))
        for benchmark in benchmarks:
            cells = [cls, benchmark]
            for f in rows:
                q = next((q for q in f.quality_floor.get(cls, []) if q.benchmark == benchmark), None)
                if q is None:
                    cells.append("–")
                elif q.score is None:
                    cells.append(f"unknown [{notes.setdefault(q.unknown, len(notes) + 1)}]")
                else:
                    cells.append(f"{q.score:.1f} {q.model}")
            body.append(cells)
    return header, body, [f"[{n}] {reason}" for reason, n in notes.items()]
