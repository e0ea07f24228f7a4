"""Stage 1 of the advisor: enumerate deployments for every group of task classes and price them in closed form.

A group is the set of classes one tier would serve: each class alone, and (with several classes)
all of them together. For a group, the candidates are every model whose published quality meets
all the group's floors at a precision (quality.yaml), × accelerator × tensor-parallel degree ×
weight precision × KV precision × speculative decoding on/off × max batch. Each is evaluated with
`closedform` (latency and SLO-meeting capacity per replica) and `hourly` (cheapest reserved /
on-demand / API mix over the day). Rows that do not fit in memory are kept (and counted) as
infeasible, so the table records everything the closed form looked at.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from tokenomy.advise.closedform import (
    Shape,
    SpecParams,
    capacity_at,
    occupancy_grid,
    operating_points,
    replica_curves,
)
from tokenomy.advise.hourly import SECONDS_PER_HOUR, daily_cost_usd
from tokenomy.advise.workload import ClassLoad, Slo, Workload, priced_gpus
from tokenomy.catalog.prices import ApiPrice, batch_price
from tokenomy.catalog.profiles import engine_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.profile import EngineProfile
from tokenomy.costmodel.resolve import DeploymentSpec, resolve

PARETO_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)  # TTFT targets as multiples of the group's SLO


@dataclass(frozen=True)
class ApiChoice:
    """The API each class of a group would use (cheapest that meets its floors and SLO), and the mix's $/request."""

    per_class: dict[str, ApiPrice]
    usd_per_request: float
    batch: bool = False  # through the providers' Batch APIs (per_class at batch prices; no latency SLO)


@dataclass(frozen=True, eq=False)
class Group:
    name: str
    classes: tuple[ClassLoad, ...]
    rates_rps: np.ndarray  # (24,)
    shape: Shape
    slo: Slo  # the strictest of its classes
    floors: dict[str, float]  # the highest floor per benchmark
    api: ApiChoice | None  # None when some class may not (or cannot) use an API

    @property
    def requests_per_day(self) -> float:
        return float(self.rates_rps.sum() * SECONDS_PER_HOUR)

    def api_usd_per_day(self, scale: float = 1.0) -> float:
        return self.requests_per_day * scale * self.api.usd_per_request if self.api else float("inf")


def api_usd_per_request(api: ApiPrice, isl_mean: float, osl_mean: float) -> float:
    """An API's price for one request of mean lengths: (isl·$in + osl·$out) / 10⁶."""
    return (isl_mean * api.usd_per_mtok_input + osl_mean * api.usd_per_mtok_output) / 1e6


def class_shape(c: ClassLoad) -> Shape:
    isl, osl = c.samples
    return Shape.from_samples(isl, osl, c.spec.slo.attainment)


def eligible_apis(workload: Workload, c: ClassLoad) -> list[ApiPrice]:
    """APIs allowed for a class whose published scores meet its floors and whose assumed latency meets its SLO."""
    cand = workload.candidates
    if not c.spec.allow_api or cand.api_ttft_p99_s > c.spec.slo.ttft_s or cand.api_tpot_s > c.spec.slo.tpot_s:
        return []
    return [a for a in workload.apis if workload.quality.api_meets(a.name, c.spec.quality)]


def cheapest_api(workload: Workload, c: ClassLoad) -> ApiPrice | None:
    shape = class_shape(c)
    options = eligible_apis(workload, c)
    return min(options, key=lambda a: api_usd_per_request(a, shape.isl_mean, shape.osl_mean)) if options else None


def cheapest_batch_api(workload: Workload, c: ClassLoad) -> ApiPrice | None:
    """The cheapest Batch-API offering (at batch prices) for a class with no latency SLO that meets its floors."""
    if c.spec.latency_slo or not c.spec.allow_api or not workload.candidates.batch_apis:
        return None
    shape = class_shape(c)
    options = [b for a in workload.apis if workload.quality.api_meets(a.name, c.spec.quality) and (b := batch_price(a))]
    return min(options, key=lambda a: api_usd_per_request(a, shape.isl_mean, shape.osl_mean)) if options else None


def make_group(workload: Workload, classes: tuple[ClassLoad, ...]) -> Group:
    """One tier's traffic: summed rates, the request-weighted length mix, the strictest SLO and floors."""
    rates = np.sum([c.rates_rps for c in classes], axis=0)
    weights = np.array([c.requests_per_day for c in classes])
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(classes), 1 / len(classes))
    rng = np.random.default_rng(0)
    isl_parts, osl_parts = [], []
    for c, w in zip(classes, weights, strict=True):
        isl, osl = c.samples
        take = rng.choice(len(isl), size=max(int(round(w * len(isl))), 1), replace=False)
        isl_parts.append(isl[take])
        osl_parts.append(osl[take])
    isl, osl = np.concatenate(isl_parts), np.concatenate(osl_parts)
    slo = Slo(
        ttft_s=min(c.spec.slo.ttft_s for c in classes),
        tpot_s=min(c.spec.slo.tpot_s for c in classes),
        attainment=max(c.spec.slo.attainment for c in classes),
    )
    floors: dict[str, float] = {}
    for c in classes:
        for bench, floor in c.spec.quality.items():
            floors[bench] = max(floors.get(bench, 0.0), floor)
    shape = Shape.from_samples(isl, osl, slo.attainment)
    per_class = {c.name: cheapest_api(workload, c) for c in classes}
    api = None
    if all(per_class.values()):
        usd = sum(w * api_usd_per_request(per_class[c.name], *_means(c)) for c, w in zip(classes, weights, strict=True))
        api = ApiChoice({k: v for k, v in per_class.items() if v}, float(usd))
    batch = {c.name: cheapest_batch_api(workload, c) for c in classes}
    if all(batch.values()):  # every class may wait: a batch tier when it is the cheaper API
        usd = sum(w * api_usd_per_request(batch[c.name], *_means(c)) for c, w in zip(classes, weights, strict=True))
        if api is None or usd < api.usd_per_request:
            api = ApiChoice({k: v for k, v in batch.items() if v}, float(usd), batch=True)
    name = "+".join(c.name for c in classes)
    return Group(name, classes, rates, shape, slo, floors, api)


def _means(c: ClassLoad) -> tuple[float, float]:
    isl, osl = c.samples
    return float(isl.mean()), float(osl.mean())


def make_groups(workload: Workload) -> list[Group]:
    """Each class alone, then all classes together (when there are several)."""
    groups = [make_group(workload, (c,)) for c in workload.classes]
    if len(workload.classes) > 1:
        groups.append(make_group(workload, workload.classes))
    return groups


@dataclass(frozen=True)
class DeploymentKey:
    model: str
    gpu: str
    tp: int
    precision: str
    kv_precision: str

    def label(self) -> str:
        return f"{self.model} {self.precision}/kv-{self.kv_precision} tp{self.tp} {self.gpu}"


@dataclass
class CandidateTable:
    """Every candidate stage 1 evaluated, one row each (numpy columns)."""

    groups: list[Group]
    keys: list[DeploymentKey]
    deployments: list[Deployment]
    drafts: list[Deployment | None]
    group: np.ndarray
    dep: np.ndarray
    spec: np.ndarray  # speculative decoding on
    max_batch: np.ndarray
    slots: np.ndarray  # effective max batch: min(max batch, KV-limited); 0 when nothing fits
    capacity_rps: np.ndarray  # SLO-meeting requests/s per replica (0: infeasible)
    occupancy: np.ndarray  # requests in the engine at that capacity
    tpot_s: np.ndarray  # mean at capacity (closed form)
    tpot_tail_s: np.ndarray  # at capacity, at the attainment quantile
    ttft_tail_s: np.ndarray  # at capacity, at the attainment quantile
    best_ttft_s: np.ndarray  # lowest tail TTFT at any load (what the hardware can reach)
    best_tpot_s: np.ndarray
    usd_on_demand: np.ndarray  # per replica-hour
    usd_reserved: np.ndarray
    usd_per_day: np.ndarray  # inf: infeasible
    reserved: np.ndarray
    pareto_targets_s: np.ndarray  # (groups, T)
    pareto_usd: np.ndarray  # (rows, T) daily cost self-hosting everything (no API) at each TTFT target
    quality_pruned: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.group)

    def feasible(self) -> np.ndarray:
        return np.isfinite(self.usd_per_day) & (self.capacity_rps > 0)

    def ranked(self, group: int) -> np.ndarray:
        """Feasible rows of a group, cheapest first (ties: lower tail TTFT)."""
        rows = np.flatnonzero((self.group == group) & self.feasible())
        return rows[np.lexsort((self.ttft_tail_s[rows], self.usd_per_day[rows]))]

    def label(self, i: int) -> str:
        spec = " +spec" if self.spec[i] else ""
        return f"{self.keys[self.dep[i]].label()} batch{self.max_batch[i]}{spec}"


def _deployment(key: DeploymentKey, profile: EngineProfile) -> Deployment:
    """The replica a candidate key names, run by the workload's (already loaded) engine profile."""
    spec = DeploymentSpec(
        model=key.model, gpu=key.gpu, tp=key.tp, precision=key.precision, kv_precision=key.kv_precision
    )
    return resolve(spec, profile).deployment


def evaluate(workload: Workload, groups: list[Group] | None = None) -> CandidateTable:
    """Stage 1: every candidate of every group, priced in closed form."""
    cand = workload.candidates
    groups = groups if groups is not None else make_groups(workload)
    spec_params = SpecParams(cand.speculative.draft_tokens, cand.speculative.acceptance)
    gpus = priced_gpus(cand.gpus)
    profiles = {g: engine_profile(cand.engine, g) for g in gpus}  # vllm on an AMD GPU: vllm-rocm
    notes = [f"no on-demand price for {g}: left out" for g in cand.gpus if g not in gpus]
    grid = occupancy_grid(max(cand.max_batch))
    keys: list[DeploymentKey] = []
    key_index: dict[DeploymentKey, int] = {}
    deployments: list[Deployment] = []
    drafts: list[Deployment | None] = []
    rows: dict[str, list] = {k: [] for k in ("group", "dep", "spec", "max_batch", "curves")}
    quality_pruned = 0
    for g_index, group in enumerate(groups):
        curves_cache = {}
        for model, precision in itertools.product(workload.models, cand.precisions):
            draft_model = cand.speculative.drafts.get(model) if cand.speculative.search else None
            if not workload.quality.model_meets(model, precision, group.floors):
                per_deployment = len(cand.max_batch) * (2 if draft_model else 1)
                quality_pruned += len(gpus) * len(cand.tensor_parallel) * len(cand.kv_precisions) * per_deployment
                continue
            for gpu, tp, kv in itertools.product(gpus, cand.tensor_parallel, cand.kv_precisions):
                key = DeploymentKey(model, gpu, tp, precision, kv)
                if key not in key_index:
                    key_index[key] = len(keys)
                    keys.append(key)
                    d = _deployment(key, profiles[gpu])
                    deployments.append(d)
                    draft = (
                        _deployment(DeploymentKey(draft_model, gpu, tp, "bf16", "bf16"), profiles[gpu])
                        if draft_model
                        else None
                    )
                    drafts.append(draft)
                i = key_index[key]
                if i not in curves_cache:
                    curves_cache[i] = replica_curves(deployments[i], group.shape, grid, drafts[i], spec_params)
                for spec_on in (False, True) if drafts[i] is not None else (False,):
                    for b in cand.max_batch:
                        rows["group"].append(g_index)
                        rows["dep"].append(i)
                        rows["spec"].append(spec_on)
                        rows["max_batch"].append(b)
                        rows["curves"].append(curves_cache[i])
    return _price_rows(workload, groups, keys, deployments, drafts, rows, grid, quality_pruned, notes)


def _price_rows(workload, groups, keys, deployments, drafts, rows, grid, quality_pruned, notes) -> CandidateTable:  # noqa: ANN001
    """Operating points, capacity, daily cost and Pareto costs for every row (vectorised per group)."""
    n = len(rows["group"])
    group = np.array(rows["group"], dtype=int)
    dep = np.array(rows["dep"], dtype=int)
    spec = np.array(rows["spec"], dtype=bool)
    max_b = np.array(rows["max_batch"], dtype=int)
    curves = rows["curves"]
    slots = np.zeros(n, dtype=int)
    for r, cv in enumerate(curves):
        if cv is not None:
            slots[r] = min(max_b[r], cv.slots_kv_spec if spec[r] else cv.slots_kv)
    capacity, occupancy, tpot, tpot_tail, ttft = (np.zeros(n) for _ in range(5))
    best_ttft, best_tpot = np.full(n, np.inf), np.full(n, np.inf)
    usd_od = np.array([d.gpu.usd_per_gpu_hour("on_demand") * d.n_gpus for d in deployments])[dep] if n else np.zeros(0)
    usd_res = np.array([d.gpu.usd_per_gpu_hour("reserved") * d.n_gpus for d in deployments])[dep] if n else np.zeros(0)
    usd_day, reserved = np.full(n, np.inf), np.zeros(n)
    targets = np.array([[g.slo.ttft_s * f for f in PARETO_FACTORS] for g in groups])
    pareto = np.full((n, len(PARETO_FACTORS)), np.inf)
    for g_index, g in enumerate(groups):
        rows_g = np.flatnonzero((group == g_index) & (slots > 0))
        if not len(rows_g):
            continue
        points = operating_points(
            np.array([curves[r].tpot_rows(spec[r]) for r in rows_g]),
            np.array([curves[r].ttft_mean_s for r in rows_g]),
            np.array([curves[r].ttft_tail_s for r in rows_g]),
            np.array([curves[r].prefill_s_per_token for r in rows_g]),
            grid,
            slots[rows_g],
            g.shape,
            g.slo.attainment,
        )
        cap, col = capacity_at(points, np.full(len(rows_g), g.slo.ttft_s), g.slo.tpot_s)
        at = np.arange(len(rows_g)), np.maximum(col, 0)
        capacity[rows_g] = cap
        occupancy[rows_g] = np.where(col >= 0, points.occupancy[at], 0.0)
        tpot[rows_g] = np.where(col >= 0, points.tpot_mean_s[at], np.inf)
        tpot_tail[rows_g] = np.where(col >= 0, points.tpot_tail_s[at], np.inf)
        ttft[rows_g] = np.where(col >= 0, points.ttft_tail_s[at], np.inf)
        best_ttft[rows_g] = points.ttft_tail_s.min(axis=1)
        best_tpot[rows_g] = points.tpot_tail_s.min(axis=1)
        api = g.api.usd_per_request if g.api else np.inf
        usd, res = daily_cost_usd(g.rates_rps, cap, usd_res[rows_g], usd_od[rows_g], api)
        usd_day[rows_g] = np.where(cap > 0, usd, np.inf)
        reserved[rows_g] = res
        cap_t, _ = capacity_at(
            points, np.broadcast_to(targets[g_index], (len(rows_g), len(PARETO_FACTORS))), g.slo.tpot_s
        )
        # The Pareto front is for self-hosting alone (no API): how much a tighter TTFT costs in replicas.
        usd_t, _ = daily_cost_usd(g.rates_rps, cap_t, usd_res[rows_g, None], usd_od[rows_g, None], np.inf)
        pareto[rows_g] = np.where(cap_t > 0, usd_t, np.inf)
    return CandidateTable(
        groups=groups,
        keys=keys,
        deployments=deployments,
        drafts=drafts,
        group=group,
        dep=dep,
        spec=spec,
        max_batch=max_b,
        slots=slots,
        capacity_rps=capacity,
        occupancy=occupancy,
        tpot_s=tpot,
        tpot_tail_s=tpot_tail,
        ttft_tail_s=ttft,
        best_ttft_s=best_ttft,
        best_tpot_s=best_tpot,
        usd_on_demand=usd_od,
        usd_reserved=usd_res,
        usd_per_day=usd_day,
        reserved=reserved,
        pareto_targets_s=targets,
        pareto_usd=pareto,
        quality_pruned=quality_pruned,
        notes=notes,
    )


def group_best_usd(table: CandidateTable, g_index: int) -> float:
    """A group's cheapest daily cost: its best GPU candidate or everything on its API."""
    ranked = table.ranked(g_index)
    gpu = float(table.usd_per_day[ranked[0]]) if len(ranked) else np.inf
    return min(gpu, table.groups[g_index].api_usd_per_day())


def choose_partition(table: CandidateTable) -> list[int]:
    """Group indices of the cheaper of: every class on its own tier, or all classes on one tier."""
    singles = [i for i, g in enumerate(table.groups) if len(g.classes) == 1]
    merged = [i for i, g in enumerate(table.groups) if len(g.classes) > 1]
    cost_singles = sum(group_best_usd(table, i) for i in singles)
    if merged and group_best_usd(table, merged[0]) < cost_singles:
        return merged
    return singles
