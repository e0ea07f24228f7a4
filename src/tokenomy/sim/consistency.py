"""The closed form against the simulator over the feature grid: the same replica asked two ways.

Each case is one replica (dense or MoE; tp or pp; attention DP or not; static, continuous or chunked; paged or
contiguous KV; speculative decoding on or off; bf16 or fp8 KV) serving requests of fixed prompt
length (output lengths ±25% around their mean except under static batching, so that finishing
times do not lock into cohorts) under Poisson arrivals at fractions of the closed form's capacity. The closed form is
`costmodel.perf.load_point` (built on `steady_state`); the simulator is `sim.run.simulate`.
Compared: capacity (completions per second with every slot busy: the simulator's rate between
its 10th and 90th percentile completions under Poisson arrivals at twice the capacity, which keep
the slots busy without the lock-step cohorts of an all-at-once start), mean TPOT at every load,
and mean TTFT below saturation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import Scheduling, load_point, replica_slots
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.replica import ReplicaConfig, SpecDecoding
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload, poisson_arrivals

LOADS = (0.2, 0.6)  # fractions of the closed form's capacity below saturation
SATURATING = 2.0  # arrivals at twice the capacity keep every slot busy
TOLERANCE = {"capacity": 0.10, "tpot": 0.10, "ttft": 0.20}
DRAFT_MODEL = "llama-3.2-1b"


@dataclass(frozen=True)
class Case:
    """One point of the feature grid."""

    model: str
    tp: int = 1
    pp: int = 1
    scheduler: str = "chunked"
    kv: str = "paged"
    spec: bool = False
    kv_precision: str = "bf16"
    max_num_seqs: int = 32
    isl: int = 512
    osl: int = 128
    engine: str = "vllm"  # tensorrt-llm: its MoE recipe runs attention DP over the tp GPUs

    @property
    def name(self) -> str:
        spec = " spec" if self.spec else ""
        engine = "" if self.engine == "vllm" else f" {self.engine}"
        return (
            f"{self.model} tp{self.tp}pp{self.pp} {self.scheduler} {self.kv} kv-{self.kv_precision}{spec}"
            f" {self.isl}/{self.osl}{engine}"
        )

    def deployment(self) -> Deployment:
        """The replica (contiguous KV reserves 4,096 tokens a request, so a handful fit)."""
        spec = DeploymentSpec(
            model=self.model,
            gpu="H100-SXM",
            tp=self.tp,
            pp=self.pp,
            precision="bf16",
            kv_precision=self.kv_precision,
            engine=self.engine,
            max_context=4096 if self.kv == "contiguous" else 0,
        )
        return resolve(spec).deployment

    def draft(self) -> SpecDecoding | None:
        if not self.spec:
            return None
        spec = DeploymentSpec(model=DRAFT_MODEL, gpu="H100-SXM", tp=1, precision="bf16", kv_precision="bf16")
        d = resolve(spec).deployment
        return SpecDecoding(d, draft_tokens=3, acceptance=0.7)

    def rules(self) -> Scheduling:
        return Scheduling(self.scheduler, None, self.draft())

    def config(self) -> ReplicaConfig:
        return ReplicaConfig(scheduler=self.scheduler, kv=self.kv, max_num_seqs=self.max_num_seqs, spec=self.draft())


GRID = (
    Case("llama-3.1-8b"),
    Case("llama-3.1-8b", scheduler="continuous", kv="contiguous", kv_precision="fp8"),
    Case("llama-3.1-8b", scheduler="static"),
    Case("llama-3.1-8b", tp=2, spec=True, kv_precision="fp8"),
    Case("llama-3.1-8b", pp=2),
    Case("llama-3.1-8b", pp=2, scheduler="continuous", kv_precision="fp8"),
    Case("llama-3.1-8b", pp=2, scheduler="static", kv="contiguous"),
    Case("llama-3.1-8b", kv="contiguous", spec=True),
    Case("llama-3.1-8b", scheduler="continuous", spec=True, isl=1024, osl=256),
    Case("qwen3-30b-a3b"),
    Case("qwen3-30b-a3b", scheduler="continuous", kv_precision="fp8"),
    Case("qwen3-30b-a3b", tp=2, scheduler="static"),
    Case("qwen3-30b-a3b", pp=2, kv="contiguous"),
    Case("qwen3-30b-a3b", spec=True, kv_precision="fp8", isl=1024, osl=256),
    Case("qwen3-30b-a3b", tp=4, kv_precision="fp8", isl=2048, engine="tensorrt-llm"),
    Case("qwen3-30b-a3b", tp=4, kv_precision="fp8", isl=16384, osl=256, engine="tensorrt-llm"),
)


@dataclass(frozen=True)
class Row:
    """One compared figure."""

    case: str
    load: str  # "0.2", "0.6" (fractions of capacity) or "saturating"
    metric: str  # capacity | tpot | ttft
    closed_form: float
    simulated: float

    @property
    def disagreement(self) -> float:
        """|closed form − simulator| / simulator."""
        return abs(self.closed_form - self.simulated) / self.simulated if self.simulated else float("inf")

    @property
    def within(self) -> bool:
        return self.disagreement <= TOLERANCE[self.metric]


def _workload(case: Case, n: int, rate_rps: float, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals = poisson_arrivals(rate_rps, n, rng)
    osl = np.full(n, case.osl)
    if case.scheduler != "static":  # ±25% around the mean, so finishing times cannot lock into cohorts
        osl = rng.integers(round(case.osl * 0.75), round(case.osl * 1.25) + 1, size=n)
    return Workload(arrivals, np.full(n, case.isl), osl, name="consistency")


def steady_window(finish_s: np.ndarray) -> tuple[float, float]:
    """Times of the 10th and the 90th percentile completion (ramp-up and drain left out)."""
    t = np.sort(finish_s[np.isfinite(finish_s)])
    return float(t[int(0.1 * len(t))]), float(t[int(0.9 * len(t))])


def compare(case: Case, requests: int = 800, seed: int = 0) -> list[Row]:
    """Capacity, mean TPOT and mean TTFT of one case, closed form against the simulator."""
    d = case.deployment()
    rules = case.rules()
    slots = replica_slots(d, case.isl, case.osl, case.kv, case.max_num_seqs)
    cap = load_point(d, case.isl, case.osl, float("inf"), slots, rules)
    rows: list[Row] = []
    n_sat = max(requests, 12 * slots)
    sat = simulate(d, _workload(case, n_sat, SATURATING * cap.capacity_rps, seed), case.config(), seed=seed)
    log = sat.log
    lo, hi = steady_window(log.finish_s)
    mid = log.done & (log.finish_s > lo) & (log.finish_s <= hi)
    served = mid.sum() / (hi - lo) if hi > lo else float("nan")
    tpot = (log.finish_s - log.first_token_s)[mid] / np.maximum(log.output_tokens[mid] - 1, 1)
    rows.append(Row(case.name, "saturating", "capacity", cap.capacity_rps, float(served)))
    rows.append(Row(case.name, "saturating", "tpot", cap.tpot_s, float(tpot.mean())))
    for load in LOADS:
        rate = load * cap.capacity_rps
        point = load_point(d, case.isl, case.osl, rate, slots, rules)
        res = simulate(d, _workload(case, requests, rate, seed), case.config(), seed=seed)
        rows.append(Row(case.name, f"{load:g}", "tpot", point.tpot_s, float(np.mean(res.log.tpot_s()))))
        rows.append(Row(case.name, f"{load:g}", "ttft", point.ttft_s, float(np.mean(res.log.ttft_s()))))
    return rows
