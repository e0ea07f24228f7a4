"""What the plan is measured against, and where self-hosting starts to pay.

(a) All traffic on the most capable API: the API with the highest mean published score over the
    benchmarks the workload's floors name; cost = Σ requests × (isl·$in + osl·$out) / 10⁶.
(b) Everything self-hosted at fp16 with static batching (FasterTransformer-era serving): a tier per
    class, a model meeting its floors at 16 bit, KV reserved for the full context per sequence, a
    batch of b runs until its longest request ends. Closed form per batch b: the batch takes
    T(b) = prefill + decode to the expected longest output (quantile b/(b+1) of the output lengths;
    `perf.batch_latency_seconds`); batches queue as M/D/1, loaded until the tail wait is one batch
    run (`static_capacity`); a request's TTFT is its wait plus its batch's prefill; TPOT = one
    decode step at b. The cheapest deployment meeting the TPOT SLO is simulated (scheduler static,
    contiguous KV) at that load, priced hour by hour without an API, its SLO attainment reported.
Break-even: scale the volume of the plan's self-hosted classes by v (same hourly shape); the
self-hosted cost S(v) (reserved / on-demand, no API) is a step function, the API cost A(v) is
linear; the break-even volume is the smallest v with S(v) ≤ A(v), found on a log grid and bisected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tokenomy.advise.advisor import Advice
from tokenomy.advise.closedform import mg1_wait_tail_s
from tokenomy.advise.hourly import DayPlan, daily_cost_usd, plan_day
from tokenomy.advise.search import DeploymentKey, Group, api_usd_per_request, make_group
from tokenomy.advise.verify import SimJob, probe
from tokenomy.advise.workload import ClassLoad, Workload, priced_gpus
from tokenomy.catalog.prices import ApiPrice
from tokenomy.catalog.profiles import engine_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import batch_latency_seconds, decode_step_seconds, prefill_seconds
from tokenomy.costmodel.resolve import DeploymentSpec, resolve

BASELINE_PRECISION = "fp16"
MAX_STATIC_BATCH = 256


# ---------------------------------------------------------------- (a) the most capable API


def floor_benchmarks(workload: Workload) -> list[str]:
    """The benchmarks the classes' floors name (all benchmarks when there are no floors)."""
    named = sorted({b for c in workload.classes for b in c.spec.quality})
    return named or sorted(workload.quality.benchmarks)


def most_capable_api(workload: Workload) -> ApiPrice | None:
    """Highest mean published score over the floor benchmarks (APIs missing one are left out); ties: pricier."""
    benches = floor_benchmarks(workload)
    best, key = None, None
    for api in workload.apis:
        scores = [workload.quality.api_score(api.name, b) for b in benches]
        if any(s is None for s in scores):
            continue
        k = (float(np.mean(scores)), api.blended_usd_per_mtok(3, 1))
        if key is None or k > key:
            best, key = api, k
    return best


def class_means(c: ClassLoad) -> tuple[float, float]:
    isl, osl = c.samples
    return float(isl.mean()), float(osl.mean())


def api_usd_per_day(
    classes: tuple[ClassLoad, ...], api_for: Callable[[ClassLoad], ApiPrice], scale: float = 1.0
) -> float:
    """Daily API bill for classes at their mean lengths: Σ requests × (isl·$in + osl·$out) / 10⁶."""
    return sum(c.requests_per_day * scale * api_usd_per_request(api_for(c), *class_means(c)) for c in classes)


def cheapest_floor_meeting_api(workload: Workload, c: ClassLoad) -> ApiPrice | None:
    """The cheapest API whose published scores meet a class's floors (permission and latency aside)."""
    options = [a for a in workload.apis if workload.quality.api_meets(a.name, c.spec.quality)]
    return min(options, key=lambda a: api_usd_per_request(a, *class_means(c)), default=None)


@dataclass
class AllApi:
    api: ApiPrice
    usd_per_day: float


def all_on_most_capable_api(workload: Workload) -> AllApi | None:
    api = most_capable_api(workload)
    return None if api is None else AllApi(api, api_usd_per_day(workload.classes, lambda c: api))


# ---------------------------------------------------------------- (b) fp16, static batching


@dataclass
class StaticCandidate:
    key: DeploymentKey
    deployment: Deployment
    batch: int
    capacity_rps: float
    ttft_tail_s: float
    tpot_s: float
    meets_slo: bool
    usd_reserved: float
    usd_on_demand: float
    usd_per_day: float


@dataclass
class StaticTier:
    """(b) for one class: its cheapest fp16 static-batching deployment, simulated, priced without an API."""

    group: Group
    best: StaticCandidate
    evaluated: int
    probes: list[dict]
    capacity_sim_rps: float
    meets_slo_sim: bool
    day: DayPlan

    @property
    def usd_per_day(self) -> float:
        return self.day.usd_per_day


def static_candidates(workload: Workload, group: Group) -> list[StaticCandidate]:
    """Every 16-bit deployment meeting all floors, at each static batch size, in closed form."""
    cand = workload.candidates
    isl = np.concatenate([c.samples[0] for c in group.classes])
    osl = np.concatenate([c.samples[1] for c in group.classes])
    isl_mean, osl_mean, slo = group.shape.isl_mean, group.shape.osl_mean, group.slo
    out = []
    for model in workload.models:
        if not workload.quality.model_meets(model, BASELINE_PRECISION, group.floors):
            continue
        for gpu in priced_gpus(cand.gpus):
            for tp in cand.tensor_parallel:
                key = DeploymentKey(model, gpu, tp, BASELINE_PRECISION, BASELINE_PRECISION)
                spec = DeploymentSpec(
                    model=model, gpu=gpu, tp=tp, precision=BASELINE_PRECISION, kv_precision=BASELINE_PRECISION
                )
                d = resolve(spec, engine_profile(cand.engine, gpu)).deployment
                if not d.memory.fits:
                    continue
                limit = min(d.max_concurrency(round(isl_mean), round(osl_mean))["static"], MAX_STATIC_BATCH)
                od = d.gpu.usd_per_gpu_hour("on_demand") * d.n_gpus
                res = d.gpu.usd_per_gpu_hour("reserved") * d.n_gpus
                for b in (2**k for k in range(9)):
                    if b > limit:
                        break
                    longest = float(np.quantile(osl, b / (b + 1)))
                    t_batch = batch_latency_seconds(d, round(isl_mean), max(round(longest), 1), b)
                    prefill = float(prefill_seconds(d, float(np.quantile(isl, slo.attainment)), b))
                    tpot = float(decode_step_seconds(d, b, isl_mean + longest / 2))
                    rate, ttft = static_capacity(b, t_batch, prefill, slo.attainment)
                    meets = ttft <= slo.ttft_s and tpot <= slo.tpot_s
                    out.append(StaticCandidate(key, d, b, rate, ttft, tpot, meets, res, od, math.inf))
    for s in out:
        usd, _ = daily_cost_usd(group.rates_rps, s.capacity_rps, s.usd_reserved, s.usd_on_demand, math.inf)
        s.usd_per_day = float(usd)
    return out


def static_capacity(batch: int, batch_s: float, prefill_s: float, attainment: float) -> tuple[float, float]:
    """(requests/s, tail TTFT) of a static-batching replica sized for throughput.

    Batches of `batch` requests run one after another, each taking `batch_s`: an M/D/1 queue of
    batches (`closedform.mg1_wait_tail_s`). It is loaded until the tail wait reaches one batch's run
    (TTFT within twice its unloaded value); a request's TTFT is that wait plus its batch's prefill.
    """
    rho = np.linspace(0.02, 0.98, 49)
    batches_per_s = rho / batch_s
    wait = mg1_wait_tail_s(batches_per_s, batch_s, batch_s**2, 1.0 - attainment)
    within = np.flatnonzero(wait <= batch_s)
    i = int(within[-1]) if len(within) else 0
    return float(batches_per_s[i] * batch), float(wait[i] + prefill_s)


def static_job(s: StaticCandidate, group: Group, fraction: float, requests: int, seed: int) -> SimJob:
    return SimJob(
        key=("static", fraction),
        deployment=s.deployment,
        draft=None,
        draft_tokens=1,
        acceptance=0.5,
        max_num_seqs=s.batch,
        classes=tuple((c.name, c.spec.isl, c.spec.osl, c.requests_per_day) for c in group.classes),
        rate_rps=s.capacity_rps * fraction,
        requests=requests,
        seed=seed,
        ttft_slo_s=group.slo.ttft_s,
        tpot_slo_s=group.slo.tpot_s,
        attainment=group.slo.attainment,
        scheduler="static",
        kv="contiguous",
    )


def static_tier(
    workload: Workload,
    group: Group,
    requests: int,
    seed: int,
    executor: str,
    on_job: Callable[[int, int], None] | None = None,
) -> StaticTier | None:
    """The cheapest fp16 static deployment for a group that meets its TPOT SLO, sized for throughput.

    Static batching rarely meets a TTFT SLO at any useful load (a batch must finish before the next
    starts), so it is not made to: it is simulated once at its planned load and its SLO attainment
    is reported next to its cost.
    """
    candidates = static_candidates(workload, group)
    if not candidates:
        return None
    tpot_ok = [s for s in candidates if s.tpot_s <= group.slo.tpot_s] or candidates
    best = min(tpot_ok, key=lambda s: s.usd_per_day)
    results = probe(
        lambda _k, f: static_job(best, group, f, requests, seed),
        ["static"],
        {"static": group.slo.attainment},
        executor,
        on_job,
        (1.0,),
    )
    probes, fraction = results["static"]
    day = plan_day(group.rates_rps, best.capacity_rps, best.usd_reserved, best.usd_on_demand, math.inf)
    return StaticTier(group, best, len(candidates), probes, best.capacity_rps, fraction > 0, day)


def static_baseline(
    workload: Workload, requests: int, seed: int, executor: str, on_job: Callable[[int, int], None] | None = None
) -> list[StaticTier]:
    """(b): each class on its own cheapest fp16 static-batching tier (empty when some class has none)."""
    groups = [make_group(workload, (c,)) for c in workload.classes]
    tiers = [static_tier(workload, g, requests, seed, executor, on_job) for g in groups]
    return [] if any(t is None for t in tiers) else tiers  # type: ignore[misc]


# ---------------------------------------------------------------- break-even volume


@dataclass
class BreakEven:
    api: str  # which API prices the comparison
    scale: float | None  # volume multiplier of today's workload (None: never within the search range)
    requests_per_day: float | None
    tokens_per_day: float | None
    self_hosted_usd_per_day: float | None
    api_usd_per_day: float | None
    at_step: bool  # the crossing falls on a jump of the self-hosted step function (costs differ there)


def break_even(
    advice: Advice, api_for: Callable[[ClassLoad], ApiPrice | None], label: str, lo: float = 1e-4, hi: float = 1e4
) -> BreakEven | None:
    """Smallest volume scale where the plan's self-hosted tiers cost no more than sending their classes to the API."""
    table = advice.table
    tiers = [t for t in advice.tiers if t.row is not None and t.capacity_rps > 0]
    if not tiers:
        return None
    classes = tuple(c for t in tiers for c in t.group.classes)
    if any(api_for(c) is None for c in classes):
        return None

    def self_hosted(v: float) -> float:
        return sum(
            float(
                daily_cost_usd(
                    t.group.rates_rps * v,
                    t.capacity_rps,
                    table.usd_reserved[t.row],
                    table.usd_on_demand[t.row],
                    math.inf,
                )[0]
            )
            for t in tiers
        )

    def api(v: float) -> float:
        return api_usd_per_day(classes, api_for, v)

    grid = np.geomspace(lo, hi, 161)
    gap = np.array([self_hosted(v) - api(v) for v in grid])
    crossing = np.flatnonzero((gap[1:] <= 0) & (gap[:-1] > 0))
    if gap[0] <= 0:
        v_star = lo
    elif not len(crossing):
        return BreakEven(label, None, None, None, None, None, False)
    else:
        a, b = grid[crossing[0]], grid[crossing[0] + 1]
        for _ in range(60):
            mid = math.sqrt(a * b)
            a, b = (mid, b) if self_hosted(mid) - api(mid) > 0 else (a, mid)
        v_star = b
    s, p = self_hosted(v_star), api(v_star)
    per_request = sum(c.requests_per_day * sum(class_means(c)) for c in classes)
    requests = sum(c.requests_per_day for c in classes)
    return BreakEven(
        label,
        v_star,
        requests * v_star,
        per_request * v_star,
        s,
        p,
        abs(s - p) > 0.01 * max(p, 1e-12),
    )
