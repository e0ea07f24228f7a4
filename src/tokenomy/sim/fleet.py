"""A fleet: tiers of replicas (and commercial APIs) behind a router, with spill and cost per tier.

Each request carries a class; a routing table lists, per class, the tiers to try in order. A GPU
tier picks a replica by its load-balancing policy; when the replica's predicted TTFT for the new
request would break the tier's SLO, the request spills to the next tier. An API tier answers
with its own latency distribution, charges per token and refuses requests above its rate limit.
Cost per GPU tier: the reserved baseline replicas at the reserved price, the rest on demand.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tokenomy.catalog.prices import SELF_HOSTED_UTILISATION
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import queued_ttft_s
from tokenomy.results import RunSummary
from tokenomy.sim.metrics import GapHistogram, RequestLog, summary_stats
from tokenomy.sim.replica import Replica, ReplicaConfig
from tokenomy.sim.run import SLO, SimResult, pooled_result, run_sessions
from tokenomy.sim.workload import Workload

POLICIES = ("round_robin", "least_outstanding", "least_ttft")


@dataclass(frozen=True)
class GpuTier:
    name: str
    deployment: Deployment
    replicas: int = 1
    reserved_replicas: int = 0  # baseline billed at the reserved price; the rest on demand
    policy: str = "least_outstanding"
    ttft_slo_s: float | None = None  # spill to the next tier when the predicted TTFT exceeds it
    config: ReplicaConfig = field(default_factory=ReplicaConfig)
    billing_utilisation: float = SELF_HOSTED_UTILISATION  # replay bills its tokens at $/hour amortised at this load

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"tier '{self.name}': unknown policy '{self.policy}'; choose from {', '.join(POLICIES)}")
        if self.replicas < 1 or not 0 <= self.reserved_replicas <= self.replicas:
            raise ValueError(f"tier '{self.name}': need replicas ≥ 1 and 0 ≤ reserved ≤ replicas")

    def usd_per_hour(self) -> float:
        d = self.deployment
        reserved = (d.gpu.usd_per_gpu_hour("reserved") or 0.0) * d.n_gpus
        on_demand = (d.gpu.usd_per_gpu_hour("on_demand") or 0.0) * d.n_gpus
        return self.reserved_replicas * reserved + (self.replicas - self.reserved_replicas) * on_demand


@dataclass(frozen=True)
class ApiTier:
    """A commercial API: log-normal TTFT and TPOT, per-token prices, a requests-per-second limit."""

    name: str
    usd_per_mtok_input: float
    usd_per_mtok_output: float
    ttft_median_s: float = 0.5
    ttft_sigma: float = 0.4
    tpot_median_s: float = 0.02
    tpot_sigma: float = 0.25
    rate_limit_rps: float | None = None
    ttft_slo_s: float | None = None
    usd_per_mtok_cached_input: float | None = None  # cached input tokens (None: billed as input)


Tier = GpuTier | ApiTier


@dataclass(frozen=True)
class Fleet:
    tiers: tuple[Tier, ...]
    routes: dict[str, tuple[str, ...]]  # class -> tier names in spill order; "*" for any other class

    def __post_init__(self) -> None:
        names = {t.name for t in self.tiers}
        for cls, route in self.routes.items():
            unknown = [n for n in route if n not in names]
            if unknown or not route:
                raise ValueError(f"route '{cls}': unknown tier(s) {unknown or '(empty)'}; tiers are {sorted(names)}")
        if "*" not in self.routes:
            raise ValueError("the routing table needs a '*' route for classes it does not name")

    def route(self, cls: str) -> tuple[str, ...]:
        return self.routes.get(cls, self.routes["*"])


def predicted_ttft_s(r: Replica, input_tokens: int) -> float:
    """TTFT a new request would see: the prompt tokens queued ahead of it plus its own, computed in
    chunked steps alongside the running batch (step time from the cost model)."""
    queued = r.queued_prefill_tokens() + input_tokens
    return queued_ttft_s(r.cost, r.budget, len(r.batch.seqs), r.batch.ctx_sum, queued, r.pp, r.per_seq)


def tier_share(fleet: Fleet, workload: Workload, tier_name: str) -> np.ndarray | None:
    """The requests a tier can be sent (their class's route names it, first or on spill), as a boolean mask over the
    workload; None when that is every request. A replica sizes a sliding-window KV pool by their lengths."""
    if workload.classes is None:
        return None if tier_name in fleet.route("*") else np.zeros(len(workload), dtype=bool)
    routed = {c: tier_name in fleet.route(c) for c in {str(c) for c in workload.classes}}
    mask = np.array([routed[str(c)] for c in workload.classes], dtype=bool)
    return None if mask.all() else mask


class Router:
    """Sends each request to the first tier on its route that can take it in time."""

    def __init__(self, fleet: Fleet, log: RequestLog, workload: Workload, seed: int):
        self.fleet = fleet
        self.log = log
        self.workload = workload
        self.rng = np.random.default_rng(seed + 1)
        self.replicas: dict[str, list[Replica]] = {}
        self.tier_index = {t.name: i for i, t in enumerate(fleet.tiers)}
        index = 0
        for tier in fleet.tiers:
            if isinstance(tier, GpuTier):
                self.replicas[tier.name] = []
                share = tier_share(fleet, workload, tier.name)
                for _ in range(tier.replicas):
                    replica = Replica(tier.deployment, tier.config, log, index, seed + index, share)
                    self.replicas[tier.name].append(replica)
                    index += 1
        self.round_robin = dict.fromkeys(self.replicas, 0)
        self.api_recent: dict[str, deque[float]] = {t.name: deque() for t in fleet.tiers if isinstance(t, ApiTier)}
        self.api_itl = GapHistogram()
        self.tier_of = np.full(len(workload), -1, dtype=np.int64)
        self.spilled = np.zeros(len(workload), dtype=bool)
        # per request, as Python objects (indexing numpy arrays one element at a time is slow)
        self.routes = [fleet.route(str(c)) for c in workload.classes] if workload.classes is not None else None
        self.input_tokens = log.input_tokens.tolist()

    def all_replicas(self) -> list[Replica]:
        return [r for rs in self.replicas.values() for r in rs]

    def pick(self, tier: GpuTier, input_tokens: int) -> tuple[Replica, float | None]:
        """The replica the tier's policy picks, and its predicted TTFT when the policy computed it."""
        replicas = self.replicas[tier.name]
        if tier.policy == "round_robin":
            i = self.round_robin[tier.name]
            self.round_robin[tier.name] = (i + 1) % len(replicas)
            return replicas[i], None
        if tier.policy == "least_outstanding":
            return min(replicas, key=lambda r: r.outstanding), None
        ttft, i = min((predicted_ttft_s(r, input_tokens), i) for i, r in enumerate(replicas))
        return replicas[i], ttft

    def dispatch(self, rid: int, now: float) -> None:
        w = self.workload
        route = self.routes[rid] if self.routes is not None else self.fleet.route("*")
        isl = self.input_tokens[rid]
        prefixes = tuple(w.prefix_ids[rid]) if w.prefix_ids else ()
        tiers, tier_index = self.fleet.tiers, self.tier_index
        for position, name in enumerate(route):
            tier = tiers[tier_index[name]]
            last = position == len(route) - 1
            if isinstance(tier, GpuTier):
                replica, ttft = self.pick(tier, isl)
                if tier.ttft_slo_s is not None and ttft is None:
                    ttft = predicted_ttft_s(replica, isl)
                in_time = tier.ttft_slo_s is None or ttft <= tier.ttft_slo_s
                if (in_time or last) and replica.submit(rid, prefixes):
                    self._taken(rid, name, position)
                    return
            elif self._api_accepts(tier, now):
                self._api_serve(tier, rid, now)
                self._taken(rid, name, position)
                return

    def _taken(self, rid: int, tier_name: str, position: int) -> None:
        self.tier_of[rid] = self.tier_index[tier_name]
        self.spilled[rid] = position > 0

    def _api_accepts(self, tier: ApiTier, now: float) -> bool:
        if tier.rate_limit_rps is None:
            return True
        recent = self.api_recent[tier.name]
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= tier.rate_limit_rps:
            return False
        recent.append(now)
        return True

    def _api_serve(self, tier: ApiTier, rid: int, now: float) -> None:
        log = self.log
        ttft = tier.ttft_median_s * math.exp(tier.ttft_sigma * self.rng.standard_normal())
        tpot = tier.tpot_median_s * math.exp(tier.tpot_sigma * self.rng.standard_normal())
        osl = int(log.output_tokens[rid])
        log.first_token_s[rid] = now + ttft
        log.finish_s[rid] = now + ttft + tpot * (osl - 1)
        log.where[rid] = -2  # not a replica
        if osl > 1:
            self.api_itl.add(tpot, osl - 1)


@dataclass
class FleetRun:
    result: SimResult  # pooled over every replica and API
    summary: RunSummary  # docs/design.md summary plus cost, spill and per-tier / per-class figures
    tier_of: np.ndarray  # per request: index of the tier that served it (-1: dropped)


def simulate_fleet(fleet: Fleet, workload: Workload, seed: int = 0, slo: SLO | None = None) -> FleetRun:
    """Replay a workload on a fleet: requests at their arrival_s (open loop), or sessions' turns each think_s after
    the previous turn's answer (closed loop per session, as `simulate` runs them on one replica)."""
    if workload.concurrency and not workload.closed_sessions:  # closed loop: each request a session of one turn
        n = len(workload)
        workload = replace(workload, session_ids=np.arange(n), think_s=np.zeros(n))
    log = RequestLog.for_workload(workload)
    router = Router(fleet, log, workload, seed)
    replicas = router.all_replicas()
    if workload.closed_sessions:
        run_sessions(replicas, workload, log, router.dispatch)
    else:
        for rid, t in enumerate(log.arrival_s.tolist()):
            for r in replicas:
                r.run_until(t)
            router.dispatch(rid, t)
    for r in replicas:
        r.run_until(math.inf)
    result = pooled_result(log, replicas, {}, "on_demand")
    result.itl.merge(router.api_itl)
    hours = result.duration_s / 3600.0
    tiers: dict[str, Any] = {}
    usd_total = 0.0
    for i, tier in enumerate(fleet.tiers):
        mine = router.tier_of == i
        served = mine & log.done
        in_tok = float(log.input_tokens[served].sum())
        out_tok = float(log.output_tokens[served].sum())
        if isinstance(tier, GpuTier):
            usd = tier.usd_per_hour() * hours
            gpu_hours = tier.replicas * tier.deployment.n_gpus * hours
        else:
            usd = (in_tok * tier.usd_per_mtok_input + out_tok * tier.usd_per_mtok_output) / 1e6
            gpu_hours = 0.0
        usd_total += usd
        tiers[tier.name] = {
            "requests": int(mine.sum()),
            "spilled_in": int((mine & router.spilled).sum()),
            "usd": usd,
            "gpu_hours": gpu_hours,
            "usd_per_mtok": usd / (in_tok + out_tok) * 1e6 if in_tok + out_tok else math.nan,
            "ttft_s": summary_stats((log.first_token_s - log.arrival_s)[served]),
        }
    classes = np.asarray(workload.classes if workload.classes is not None else np.full(len(workload), "*"))
    per_class = {}
    for cls in sorted(set(classes.tolist())):
        mine = (classes == cls) & log.done
        tokens = float(log.input_tokens[mine].sum() + log.output_tokens[mine].sum())
        # Each tier's spend is shared among its classes by their share of the tier's tokens.
        usd = 0.0
        for i, tier in enumerate(fleet.tiers):
            in_tier = (router.tier_of == i) & log.done
            tier_tokens = float(log.input_tokens[in_tier].sum() + log.output_tokens[in_tier].sum())
            cls_tokens = float(log.input_tokens[in_tier & mine].sum() + log.output_tokens[in_tier & mine].sum())
            if tier_tokens:
                usd += tiers[tier.name]["usd"] * cls_tokens / tier_tokens
        per_class[cls] = {
            "requests": int(mine.sum()),
            "usd_per_mtok": usd / tokens * 1e6 if tokens else math.nan,
        }
    result.usd_per_hour = usd_total / hours if hours else 0.0
    summary = result.summary(slo)
    all_tokens = float(log.input_tokens[log.done].sum() + log.output_tokens[log.done].sum())
    summary["cost"] = {"usd": usd_total, "gpu_hours": sum(t["gpu_hours"] for t in tiers.values())}
    summary["usd_per_mtok"] = {"blended": usd_total / all_tokens * 1e6 if all_tokens else math.nan}
    summary["spilled"] = int(router.spilled.sum())
    summary["dropped"] = int((router.tier_of < 0).sum())
    summary["tiers"] = tiers
    summary["classes"] = per_class
    return FleetRun(result, summary, router.tier_of)


def with_hourly(summary: RunSummary, hourly: dict[str, Any]) -> RunSummary:
    """A fleet run's summary with its hour-by-hour figures added under 'hourly'."""
    out = summary.model_copy(deep=True)
    out["hourly"] = hourly
    return out


def compare_day(fleet: Fleet, workload: Workload, seed: int = 0, slo: SLO | None = None) -> dict[str, RunSummary]:
    """The fleet as given (hybrid) against all-API and all-self-hosted, on the same requests.

    All-self-hosted keeps the GPU tiers (all reserved) and scales their replicas by the ratio of
    the busiest hour's requests to those the hybrid kept on GPUs in that hour, so it can carry
    the peak by itself.
    """
    from tokenomy.sim.hourly import fleet_hours  # each variant's cost and SLO attainment by hour, for charts

    hybrid = simulate_fleet(fleet, workload, seed, slo)
    out = {"hybrid": with_hourly(hybrid.summary, fleet_hours(fleet, hybrid, workload, slo))}
    hour = np.floor(hybrid.result.log.arrival_s / 3600.0).astype(np.int64)  # as they arrived (sessions: later)
    in_peak = hour == int(np.argmax(np.bincount(hour))) if len(hour) else np.zeros(0, dtype=bool)
    gpu_index = [i for i, t in enumerate(fleet.tiers) if isinstance(t, GpuTier)]
    on_gpu = np.isin(hybrid.tier_of, gpu_index)
    scale = in_peak.sum() / max(int((in_peak & on_gpu).sum()), 1)
    api = [t.name for t in fleet.tiers if isinstance(t, ApiTier)]
    gpu = [t.name for t in fleet.tiers if isinstance(t, GpuTier)]
    if api:
        routes = {c: tuple(n for n in r if n in api) or (api[0],) for c, r in fleet.routes.items()}
        all_api = Fleet(tuple(t for t in fleet.tiers if t.name in api), routes)
        run = simulate_fleet(all_api, workload, seed, slo)
        out["all_api"] = with_hourly(run.summary, fleet_hours(all_api, run, workload, slo))
    if gpu:
        routes = {c: tuple(n for n in r if n in gpu) or (gpu[0],) for c, r in fleet.routes.items()}
        tiers = []
        for t in fleet.tiers:
            if isinstance(t, GpuTier):
                n = max(t.replicas, round(t.replicas * scale))
                tiers.append(GpuTier(t.name, t.deployment, n, n, t.policy, None, t.config))
        all_gpu = Fleet(tuple(tiers), routes)
        run = simulate_fleet(all_gpu, workload, seed, slo)
        out["all_self_hosted"] = with_hourly(run.summary, fleet_hours(all_gpu, run, workload, slo))
    return out
