"""Run a workload through one replica and summarise it in the units of docs/design.md."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.economics import board_power_w
from tokenomy.costmodel.perf import roofline_utilisation
from tokenomy.results import RunSummary
from tokenomy.sim.metrics import (
    GapHistogram,
    ReplicaStats,
    RequestLog,
    Timeline,
    histogram_stats,
    summary_stats,
)
from tokenomy.sim.replica import Replica, ReplicaConfig
from tokenomy.sim.workload import Workload


@dataclass(frozen=True)
class SLO:
    """Service-level objectives a request must meet to count towards goodput (None: not checked)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def met(self, log: RequestLog) -> np.ndarray:
        """Per request: finished and within every objective given."""
        ok = log.done.copy()
        ttft = log.first_token_s - log.arrival_s
        tpot = np.where(
            log.output_tokens > 1, (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1), 0
        )
        with np.errstate(invalid="ignore"):
            if self.ttft_s is not None:
                ok &= ttft <= self.ttft_s
            if self.tpot_s is not None:
                ok &= tpot <= self.tpot_s
            if self.e2e_s is not None:
                ok &= log.finish_s - log.arrival_s <= self.e2e_s
        return ok

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.tpot_s, self.e2e_s))


@dataclass
class SimResult:
    """Everything a run recorded, and the summary docs/design.md names."""

    log: RequestLog
    itl: GapHistogram
    stats: ReplicaStats
    timelines: list[Timeline]
    duration_s: float
    gpu_count: int
    usd_per_hour: float  # all replicas
    energy_j: float
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    gpu_busy_s: float = 0.0  # busy seconds of each replica times its GPUs, summed
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, slo: SLO | None = None) -> RunSummary:
        """The run's figures in docs/design.md's units: requests, throughput, latency percentiles, KV, energy,
        cost and $/Mtok (input and output split by the busy time spent on prefill), goodput when an SLO is given."""
        log, st = self.log, self.stats
        done = log.done
        out_tokens = float(log.output_tokens[done].sum())
        in_tokens = float(log.input_tokens[done].sum())
        span = max(self.duration_s, 1e-12)
        busy = self.gpu_busy_s / (span * self.gpu_count) if self.gpu_count else 0.0
        energy_j = self.energy_j
        usd = self.usd_per_hour * span / 3600.0
        prefill_share = st.prefill_s / st.busy_s if st.busy_s else 0.0
        result: dict[str, Any] = {
            "requests": {
                "total": len(log.arrival_s),
                "completed": int(done.sum()),
                "rejected": int(((log.where == -1) & ~done).sum()),
                "preempted": int((log.preemptions > 0).sum()),
            },
            "duration_s": self.duration_s,
            "throughput": {
                "output_tokens_per_s": out_tokens / span,
                "input_tokens_per_s": in_tokens / span,
                "requests_per_s": float(done.sum()) / span,
            },
            "ttft_s": summary_stats(log.ttft_s()),
            "itl_s": histogram_stats(self.itl),
            "tpot_s": summary_stats(log.tpot_s()),
            "e2e_s": summary_stats(log.e2e_s()),
            "preemptions": st.preemptions,
            "prefix_cache_hit_tokens": int(log.cached_tokens.sum()),
            "kv": {
                "utilisation": st.live_token_seconds / st.allocated_token_seconds
                if st.allocated_token_seconds
                else 0.0,
                "fragmentation": 1 - st.live_token_seconds / st.allocated_token_seconds
                if st.allocated_token_seconds
                else 0.0,
            },
            "mean_decode_batch": st.decode_batch_seconds / st.busy_s if st.busy_s else 0.0,
            "gpu_busy_fraction": busy,
            "energy": {
                "joules": energy_j,
                "joules_per_output_token": energy_j / out_tokens if out_tokens else math.nan,
            },
            "cost": {"usd": usd, "gpu_hours": self.gpu_count * span / 3600.0},
        }
        if out_tokens:
            result["usd_per_mtok"] = {
                "input": usd * prefill_share / in_tokens * 1e6 if in_tokens else 0.0,
                "output": usd * (1 - prefill_share) / out_tokens * 1e6,
                "blended": usd / (in_tokens + out_tokens) * 1e6,
            }
        if slo is not None and slo.given:
            met = slo.met(log)
            result["goodput_rps"] = float(met.sum()) / span
            result["slo_attainment"] = float(met.sum()) / max(len(log.arrival_s), 1)
        if self.rejected_reasons:
            result["rejected_reasons"] = self.rejected_reasons
        result.update(self.extra)
        return RunSummary.model_validate(result)


def replica_power_w(d: Deployment, stats: ReplicaStats) -> tuple[float, float]:
    """(busy, idle) board power of a replica: busy at the roofline activity of its mean decode step; NaN (unknown)
    when the accelerator has no rated power, e.g. a host measured by `calibrate --host`."""
    if not d.gpu.tdp_w:
        return math.nan, math.nan
    batch = stats.decode_batch_seconds / stats.busy_s if stats.busy_s else 1.0
    ctx = stats.decode_ctx_seconds / stats.decode_batch_seconds if stats.decode_batch_seconds else 1.0
    mbu, mfu = roofline_utilisation(d, max(batch, 1.0), max(ctx, 1.0))
    activity = max(float(mbu), float(mfu))
    idle = d.profile.idle_power_fraction
    busy_w = float(board_power_w(d.gpu.tdp_w, d.n_gpus, activity, idle))
    return busy_w, float(board_power_w(d.gpu.tdp_w, d.n_gpus, 0.0, idle))


def simulate(
    d: Deployment,
    workload: Workload,
    config: ReplicaConfig | None = None,
    seed: int = 0,
    price: str = "on_demand",
) -> SimResult:
    """Replay `workload` on one replica of deployment `d`."""
    config = config or ReplicaConfig()
    log = RequestLog.for_workload(workload)
    replica = Replica(d, config, log, seed=seed)
    prefixes = workload.prefix_ids
    reasons: dict[str, int] = {}

    def submit(rid: int) -> None:
        if not replica.submit(rid, tuple(prefixes[rid]) if prefixes else ()):
            why = replica.rejection(int(log.input_tokens[rid]), int(log.output_tokens[rid]))
            reasons[why] = reasons.get(why, 0) + 1

    n = len(workload)
    if workload.closed_sessions:
        run_sessions([replica], workload, log, lambda rid, _t: submit(rid))
    elif workload.concurrency:  # closed loop: each finish sends the next request at once
        next_rid = min(workload.concurrency, n)

        def on_finish(_rid: int, now: float) -> None:
            nonlocal next_rid
            if next_rid < n:
                log.arrival_s[next_rid] = now
                submit(next_rid)
                next_rid += 1

        replica.on_finish = on_finish
        for rid in range(next_rid):
            submit(rid)
        while next_rid < n or replica.outstanding:
            if not replica.step():
                if next_rid >= n:
                    break
                log.arrival_s[next_rid] = replica.now  # everything before it was rejected
                submit(next_rid)
                next_rid += 1
    else:
        for rid, arrival_s in enumerate(log.arrival_s.tolist()):
            replica.run_until(arrival_s)
            submit(rid)
        replica.run_until(math.inf)
    return pooled_result(log, [replica], reasons, price)


def run_sessions(
    replicas: list[Replica], workload: Workload, log: RequestLog, dispatch: Callable[[int, float], None]
) -> None:
    """Closed loop per session on one replica or a fleet's: turn k+1 arrives think_s after turn k finished (or was
    rejected, or an API answered it), on the simulated clock; sessions open at their first turn's arrival_s, or,
    with a concurrency C, C at a time (the next opens when one's last turn ends). The replica whose clock is
    furthest behind steps first, so finishes, and the turns they send, come in time order. `dispatch(rid, t)`
    places a request (log.where ≥ 0: on a replica; -1: rejected; below: answered elsewhere by log.finish_s).
    log.arrival_s gets each turn's actual arrival."""
    nxt, think = workload.next_turns(), workload.think_s
    assert think is not None
    firsts = workload.first_turns().tolist()
    pending: list[tuple[float, int]] = []  # (arrival s, request) not yet dispatched
    unopened = iter(firsts[workload.concurrency :] if workload.concurrency else [])

    def follow(rid: int, now: float) -> None:
        j = int(nxt[rid])
        if j < 0:
            j = next(unopened, -1)  # a session ended: with a concurrency the next one opens now
            if j < 0:
                return
            heapq.heappush(pending, (now, j))
        else:
            heapq.heappush(pending, (now + float(think[j]), j))
        for r in replicas:
            r.wake_s = pending[0][0]  # decode spans stop at the new turn's arrival

    for rid in firsts[: workload.concurrency] if workload.concurrency else firsts:
        pending.append((0.0 if workload.concurrency else float(log.arrival_s[rid]), rid))
    heapq.heapify(pending)
    for r in replicas:
        r.on_finish = follow
    while True:
        t = pending[0][0] if pending else math.inf
        behind = [r for r in replicas if r.now < t]
        while behind:  # step the replica furthest behind; one that has nothing to do drops out
            r = min(behind, key=attrgetter("now"))
            r.wake_s = t
            if r.step(t):
                break
            behind.remove(r)
        if behind:
            continue
        if not pending:
            break
        t, rid = heapq.heappop(pending)
        for r in replicas:
            r.run_until(t)  # idle until then (or a step that ended after t: it waited, as in the open loop)
        log.arrival_s[rid] = t
        dispatch(rid, t)
        where = int(log.where[rid])
        if where == -1:  # rejected: the session goes on as if it had been answered
            follow(rid, t)
        elif where < -1:  # answered off the replicas (an API tier): its answer time is known now
            follow(rid, float(log.finish_s[rid]))
    for r in replicas:
        r.wake_s = math.inf
        r.on_finish = None


def pooled_result(log: RequestLog, replicas: list[Replica], reasons: dict[str, int], price: str) -> SimResult:
    """One result over all replicas: pooled gaps and counters, summed energy and price."""
    itl, stats = GapHistogram(), ReplicaStats()
    for r in replicas:
        itl.merge(r.itl)
        stats.merge(r.stats)
    start = float(np.nanmin(log.arrival_s)) if len(log.arrival_s) else 0.0
    ends = [r.now for r in replicas] + [float(np.nanmax(log.finish_s)) if log.done.any() else start]
    span = max(ends) - start
    energy_j, usd_per_hour, gpus, gpu_busy_s = 0.0, 0.0, 0, 0.0
    for r in replicas:
        gpu_busy_s += r.stats.busy_s * r.d.n_gpus
        busy_w, idle_w = replica_power_w(r.d, r.stats)
        energy_j += busy_w * r.stats.busy_s + idle_w * max(span - r.stats.busy_s, 0.0)
        usd_per_hour += (r.d.gpu.usd_per_gpu_hour(price) or 0.0) * r.d.n_gpus
        gpus += r.d.n_gpus
    return SimResult(
        log=log,
        itl=itl,
        stats=stats,
        timelines=[r.timeline for r in replicas],
        duration_s=span,
        gpu_count=gpus,
        usd_per_hour=usd_per_hour,
        energy_j=energy_j,
        rejected_reasons=reasons,
        gpu_busy_s=gpu_busy_s,
    )
