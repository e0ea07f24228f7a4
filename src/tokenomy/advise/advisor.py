"""The advisor end to end: stage 1 (closed form), infeasible input relaxed, stage 2 (simulator), the plan.

    advice = advise(load_workload("workload.yaml"))
    report = run_advisor(load_workload("workload.yaml"))   # everything, as `tokenomy advise` prints it

Stage 1 prices every candidate of every class group (`search.evaluate`). A class whose floors or
SLOs nothing reaches is reported with the best reachable values and what would be needed, and is
planned with its targets relaxed to those values (never an empty result). Stage 2 simulates the
best `verify` candidates of the chosen groups at their closed-form capacity, then at lower
fractions until the simulated SLO attainment meets the target; the simulated capacity sets the
replicas of the recommended plan, hour by hour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tokenomy.advise.hourly import DayPlan, daily_cost_usd, plan_day
from tokenomy.advise.search import CandidateTable, Group, choose_partition, evaluate, make_groups
from tokenomy.advise.verify import PROBE_FRACTIONS, SimJob, probe
from tokenomy.advise.workload import Slo, Workload, build_workload, priced_gpus
from tokenomy.catalog.profiles import engine_profile
from tokenomy.costmodel.resolve import DeploymentSpec, resolve

RELAX_MARGIN = 1.25  # an unreachable SLO is relaxed to 1.25 × the best reachable value, leaving load headroom
CAPACITY_TOLERANCE = 0.20  # closed form "agrees" when the simulated capacity is within one probe step (20%)
TPOT_TOLERANCE = 0.15  # and the simulated mean TPOT within 15% of the closed form's


@dataclass
class Infeasible:
    """A target nothing reaches: what was asked, the best reachable value, and what the plan uses instead."""

    cls: str
    what: str  # "quality floor <benchmark>", "ttft_s", "tpot_s"
    asked: float
    best_reachable: float
    by: str  # the model, precision or deployment that reaches it
    needed: str  # a sentence: what would make it feasible
    planned_with: float


@dataclass
class Verified:
    """One stage-2 candidate: its closed-form figures and the simulator's at each probed rate."""

    row: int
    group: int
    capacity_cf_rps: float
    probes: list[dict] = field(default_factory=list)  # simulator results, in the order tried
    capacity_sim_rps: float = 0.0
    usd_per_day_cf: float = math.inf
    usd_per_day_sim: float = math.inf

    @property
    def at_capacity(self) -> dict:
        return self.probes[0] if self.probes else {}

    def agrees(self, tpot_cf_s: float) -> bool:
        """Simulated capacity within CAPACITY_TOLERANCE and mean TPOT within TPOT_TOLERANCE of the closed form."""
        if not self.probes or self.capacity_cf_rps <= 0:
            return False
        capacity_ok = abs(self.capacity_sim_rps / self.capacity_cf_rps - 1) <= CAPACITY_TOLERANCE + 1e-9
        tpot = self.at_capacity.get("tpot_mean_s", math.inf)
        return capacity_ok and abs(tpot / tpot_cf_s - 1) <= TPOT_TOLERANCE


@dataclass
class TierPlan:
    """One group of classes in the plan: its GPU tier (row of the table) or API-only, and its day."""

    group: Group
    row: int | None  # None: served by the API only
    capacity_rps: float  # simulated (verified) capacity per replica
    day: DayPlan | None
    usd_per_day: float
    verified: Verified | None

    @property
    def name(self) -> str:
        return self.group.name


@dataclass
class Advice:
    workload: Workload
    table: CandidateTable
    partition: list[int]
    tiers: list[TierPlan]
    verified: list[Verified]
    infeasible: list[Infeasible]
    seconds: dict[str, float]
    sim_requests: int
    seed: int
    executor: str


def _group_rows_usable(table: CandidateTable, g_index: int) -> np.ndarray:
    """Feasible rows of a group that carry traffic on GPUs (not ones whose cheapest mix is all-API)."""
    rows = table.ranked(g_index)
    group = table.groups[g_index]
    if group.api is None:
        return rows
    return rows[table.usd_per_day[rows] < group.api_usd_per_day() - 1e-9]


def diagnose(workload: Workload, table: CandidateTable) -> list[Infeasible]:
    """Single-class groups that nothing serves: which floor or SLO is out of reach, and by how much."""
    out = []
    for g_index, group in enumerate(table.groups):
        if len(group.classes) != 1 or len(table.ranked(g_index)) or group.api is not None:
            continue
        c = group.classes[0]
        rows = np.flatnonzero((table.group == g_index) & (table.slots > 0))
        if not len(rows):  # every model and precision is below a floor, or none that meets it fits
            for bench, floor in c.spec.quality.items():
                best, by = _best_score(workload, bench, c.spec.allow_api, deployable_only=True)
                top, top_by = _best_score(workload, bench, c.spec.allow_api, deployable_only=False)
                if best >= floor:
                    continue
                unfit = f"; {top_by} scores {top:g} but fits no candidate replica" if top > best else ""
                out.append(
                    Infeasible(
                        c.name,
                        f"quality floor {bench}",
                        floor,
                        best,
                        by,
                        f"a candidate scoring >= {floor:g} on {bench}; the best that can be served is {best:g} "
                        f"({by}){unfit}",
                        best,
                    )
                )
            continue
        for what, best_col, asked in (
            ("ttft_s", table.best_ttft_s, c.spec.slo.ttft_s),
            ("tpot_s", table.best_tpot_s, c.spec.slo.tpot_s),
        ):
            i = rows[np.argmin(best_col[rows])]
            best = float(best_col[i])
            if best > asked:
                out.append(
                    Infeasible(
                        c.name,
                        what,
                        asked,
                        best,
                        table.label(int(i)),
                        f"{what} >= {best:.3g} s even unloaded (best: {table.label(int(i))}); "
                        f"planned at {best * RELAX_MARGIN:.3g} s to leave room for load",
                        best * RELAX_MARGIN,
                    )
                )
        if not any(x.cls == c.name for x in out):  # each reachable alone, not both at once
            for what, asked in (("ttft_s", c.spec.slo.ttft_s), ("tpot_s", c.spec.slo.tpot_s)):
                out.append(
                    Infeasible(
                        c.name,
                        what,
                        asked,
                        asked,
                        "",
                        "TTFT and TPOT are each reachable but not together at any load; both relaxed by 25%",
                        asked * RELAX_MARGIN,
                    )
                )
    return out


def _best_score(workload: Workload, bench: str, with_apis: bool, deployable_only: bool) -> tuple[float, str]:
    """The highest published score on a benchmark among candidate models (that fit some candidate replica,
    when `deployable_only`) and APIs (where the class may use them)."""
    q, best, by = workload.quality, -math.inf, ""
    for model in workload.models:
        for precision in workload.candidates.precisions:
            s = q.model_score(model, precision, bench)
            if s is not None and s > best and (not deployable_only or _fits_somewhere(workload, model, precision)):
                best, by = s, f"{model} {precision}"
    for api in workload.apis if with_apis else ():
        s = q.api_score(api.name, bench)
        if s is not None and s > best:
            best, by = s, api.name
    return best, by


def _fits_somewhere(workload: Workload, model: str, precision: str) -> bool:
    """Whether the model's weights, runtime and one request's KV fit any candidate accelerator × tp."""
    cand = workload.candidates
    for gpu in priced_gpus(cand.gpus):
        profile = engine_profile(cand.engine, gpu)  # vllm on an AMD GPU: vllm-rocm
        for tp in cand.tensor_parallel:
            d = resolve(DeploymentSpec(model=model, gpu=gpu, tp=tp, precision=precision, kv_precision="bf16"), profile)
            if d.deployment.memory.fits:
                return True
    return False


def relaxed(workload: Workload, problems: list[Infeasible]) -> Workload:
    """The workload with each unreachable floor or SLO set to what the plan uses instead."""
    classes = {}
    for name, t in workload.spec.classes.items():
        quality, slo = dict(t.quality), t.slo
        for p in (p for p in problems if p.cls == name):
            if p.what.startswith("quality floor "):
                quality[p.what.removeprefix("quality floor ")] = p.planned_with
            elif p.what in ("ttft_s", "tpot_s") and math.isfinite(p.planned_with) and p.planned_with > 0:
                slo = Slo(**{**slo.model_dump(), p.what: p.planned_with})
        classes[name] = t.model_copy(update={"quality": quality, "slo": slo})
    spec = workload.spec.model_copy(update={"classes": classes})
    return build_workload(spec, workload.source, workload.quality)


def stage1(workload: Workload) -> tuple[Workload, CandidateTable, list[Infeasible]]:
    """Closed-form search; infeasible classes are diagnosed and searched again with relaxed targets.

    Floors are relaxed first; a class that then has candidates but meets no SLO is relaxed again.
    """
    problems: list[Infeasible] = []
    for _ in range(3):
        table = evaluate(workload, make_groups(workload))
        seen = {(p.cls, p.what) for p in problems}
        found = [p for p in diagnose(workload, table) if (p.cls, p.what) not in seen]
        if not found:
            break
        problems += found
        workload = relaxed(workload, found)
    return workload, table, problems


def _distinct(table: CandidateTable, rows: np.ndarray, limit: int) -> list[int]:
    """The first `limit` rows that behave differently (same deployment and draft at the same capacity are one)."""
    seen, out = set(), []
    for i in rows:
        key = (int(table.dep[i]), bool(table.spec[i]), round(float(table.capacity_rps[i]), 6))
        if key in seen:
            continue
        seen.add(key)
        out.append(int(i))
        if len(out) >= limit:
            break
    return out


def verification_rows(table: CandidateTable, partition: list[int], verify: int) -> list[int]:
    """The best `verify` distinct candidates of the chosen groups, taken in turn from each group's ranking."""
    queues = [_distinct(table, _group_rows_usable(table, g), verify) for g in partition]
    rows: list[int] = []
    while len(rows) < verify and any(queues):
        for q in queues:
            if q and len(rows) < verify:
                rows.append(q.pop(0))
    return rows


def sim_job(table: CandidateTable, row: int, fraction: float, requests: int, seed: int, wl: Workload) -> SimJob:
    """The simulator job for one candidate at a fraction of its closed-form capacity."""
    g = table.groups[table.group[row]]
    spec_on = bool(table.spec[row])
    draft = table.drafts[table.dep[row]] if spec_on else None
    sp = wl.candidates.speculative
    return SimJob(
        key=(row, fraction),
        deployment=table.deployments[table.dep[row]],
        draft=draft,
        draft_tokens=sp.draft_tokens,
        acceptance=sp.acceptance,
        max_num_seqs=int(table.slots[row] if spec_on else table.max_batch[row]),
        classes=tuple((c.name, c.spec.isl, c.spec.osl, c.requests_per_day) for c in g.classes),
        rate_rps=float(table.capacity_rps[row] * fraction),
        requests=requests,
        seed=seed,
        ttft_slo_s=g.slo.ttft_s,
        tpot_slo_s=g.slo.tpot_s,
        attainment=g.slo.attainment,
    )


def verify_rows(
    table: CandidateTable,
    rows: list[int],
    wl: Workload,
    requests: int,
    seed: int,
    executor: str,
    on_job: Callable[[int, int], None] | None = None,
) -> list[Verified]:
    """Probe each row with the simulator; its simulated capacity and daily cost follow from the passing rate."""
    targets = {r: table.groups[table.group[r]].slo.attainment for r in rows}
    results = probe(lambda r, f: sim_job(table, r, f, requests, seed, wl), rows, targets, executor, on_job)
    out = []
    for r in rows:
        probes, fraction = results[r]
        g_index = int(table.group[r])
        g = table.groups[g_index]
        v = Verified(r, g_index, float(table.capacity_rps[r]), probes, float(table.capacity_rps[r]) * fraction)
        v.usd_per_day_cf = float(table.usd_per_day[r])
        if v.capacity_sim_rps > 0:
            api = g.api.usd_per_request if g.api else math.inf
            usd, _ = daily_cost_usd(g.rates_rps, v.capacity_sim_rps, table.usd_reserved[r], table.usd_on_demand[r], api)
            v.usd_per_day_sim = float(usd)
        out.append(v)
    return out


def plan_group(table: CandidateTable, g_index: int, verified: list[Verified]) -> TierPlan:
    """The cheapest candidate that passed verification, or the API alone when that is cheaper."""
    group = table.groups[g_index]
    passed = [v for v in verified if v.group == g_index and v.capacity_sim_rps > 0]
    best = min(passed, key=lambda v: v.usd_per_day_sim, default=None)
    api_usd = group.api_usd_per_day()
    if math.isfinite(api_usd) and (best is None or api_usd <= best.usd_per_day_sim):
        return TierPlan(group, None, 0.0, None, api_usd, None)
    if best is None:
        # Nothing verified meets the SLOs in simulation and no API may take the traffic: plan the closed
        # form's best at the lowest load probed (its probes record the attainment it reaches there).
        tried = [v for v in verified if v.group == g_index]
        if not tried:
            return TierPlan(group, None, 0.0, None, math.inf, None)
        best = tried[0]
        best.capacity_sim_rps = best.capacity_cf_rps * PROBE_FRACTIONS[-1]
    r = best.row
    api = group.api.usd_per_request if group.api else math.inf
    day = plan_day(group.rates_rps, best.capacity_sim_rps, table.usd_reserved[r], table.usd_on_demand[r], api)
    return TierPlan(group, r, best.capacity_sim_rps, day, day.usd_per_day, best)


def advise(
    workload: Workload,
    executor: str = "local",
    verify: int = 20,
    sim_requests: int = 3000,
    seed: int = 0,
    on_job: Callable[[int, int], None] | None = None,
) -> Advice:
    """Search, verify and plan; `on_job(done, total)` reports simulator progress."""
    t0 = time.perf_counter()
    workload, table, infeasible = stage1(workload)
    t1 = time.perf_counter()
    partition = choose_partition(table)
    rows = verification_rows(table, partition, verify)
    verified = verify_rows(table, rows, workload, sim_requests, seed, executor, on_job)
    tiers = [plan_group(table, g, verified) for g in partition]
    t2 = time.perf_counter()
    seconds = {"stage1_s": t1 - t0, "stage2_s": t2 - t1}
    return Advice(workload, table, partition, tiers, verified, infeasible, seconds, sim_requests, seed, executor)
