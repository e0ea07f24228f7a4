"""What the cost model predicts for an observed load, and whether the engine drifted from it (no I/O).

Prediction at the observed load (mean running batch b, prompt and output tokens per request):
- ITL/TPOT: one mixed continuous-batching step at batch b (`costmodel.perf.steady_state`: b decode tokens plus
  the prefill chunk that keeps the batch full);
- TTFT: the queued prompts (waiting + 1, each of the observed prompt length) prefilled in chunked steps beside
  the b running sequences (`costmodel.perf.queued_ttft_s`), plus half a step: a request that arrives during a
  step joins at its end;
- output throughput at batch b (`steady_state`), KV usage b·(isl + osl/2) / the KV capacity at isl + osl;
- queue: the requests in the engine (b + waiting) beyond what it admits at once (`max_num_seqs`, and the paged
  KV capacity at isl + osl: `Deployment.max_concurrency`); a queue is out of band when it exceeds that by more
  than max(1, band × predicted) requests.

Drift: a metric is out of band when |ln(observed / predicted)| > ln(1 + band). No interval helper exists in the
cost model yet, so the bands are relative and documented here (DEFAULT_BANDS); they cover the simulator's scatter
around the closed form at a steady load. A metric alarms after `confirm` consecutive out-of-band intervals;
intervals with too few samples (MIN_SAMPLES) neither count nor reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import queued_ttft_s, steady_state
from tokenomy.watch.observe import Observation

DEFAULT_BANDS = {"itl_s": 0.25, "ttft_s": 0.5, "output_tokens_per_s": 0.35, "kv_usage": 0.5, "waiting": 0.5}
DEFAULT_ALARM_ON = ("itl_s", "ttft_s")
METRICS = ("ttft_s", "itl_s", "output_tokens_per_s", "kv_usage", "waiting")
MIN_SAMPLES = {"itl_s": 20.0, "ttft_s": 3.0, "output_tokens_per_s": 20.0, "kv_usage": 0.0, "waiting": 0.0}
DEFAULT_ISL = 1024
DEFAULT_OSL = 256


@dataclass(frozen=True)
class Prediction:
    """The cost model at one observed load (cost-model seconds)."""

    batch: float
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    itl_s: float
    output_tokens_per_s: float
    kv_usage: float
    waiting: float = 0.0
    admits: int = 0  # requests the engine runs at once at these lengths


@dataclass(frozen=True)
class Check:
    """One metric of one interval against its prediction."""

    metric: str
    observed: float | None
    predicted: float
    band: float
    status: str  # "ok", "high", "low", "no data"

    @property
    def ratio(self) -> float | None:
        return self.observed / self.predicted if self.observed is not None and self.predicted > 0 else None


def load_lengths(obs: Observation, isl: int = DEFAULT_ISL, osl: int = DEFAULT_OSL) -> tuple[int, int]:
    """Prompt and output tokens per request observed, or the defaults given where the engine does not say."""
    p = obs.prompt_tokens_per_request
    o = obs.output_tokens_per_request
    return max(round(p), 1) if p else isl, max(round(o), 1) if o else osl


def predict(d: Deployment, batch: float, isl: int, osl: int, waiting: float = 0.0) -> Prediction:
    """The cost model's TTFT, ITL, throughput and KV usage at `batch` running requests of isl/osl tokens."""
    b = max(batch, 1.0)
    ss = steady_state(d, isl, osl, b)
    step_s = float(ss.step_seconds)
    running = max(round(b) - 1, 0)  # the new request's neighbours
    ttft_s = queued_ttft_s(
        d.step_cost(),
        d.profile.max_num_batched_tokens,
        running,
        running * (isl + osl / 2),
        max(round(waiting), 0) * isl + isl,
    )
    capacity = max(d.kv_capacity_tokens_at(isl + osl), 1)
    admits = max(min(d.max_concurrency(isl, osl)["paged"], d.profile.max_num_seqs), 1)
    return Prediction(
        batch=b,
        prompt_tokens=isl,
        output_tokens=osl,
        ttft_s=float(ttft_s) + 0.5 * step_s,
        itl_s=step_s,
        output_tokens_per_s=float(ss.output_tokens_per_s),
        kv_usage=min(b * (isl + osl / 2) / capacity, 1.0),
        waiting=max(batch + waiting - admits, 0.0),
        admits=admits,
    )


def _samples(obs: Observation, metric: str) -> float:
    return {
        "itl_s": obs.itl_count,
        "ttft_s": obs.ttft_count,
        "output_tokens_per_s": obs.generation_tokens,
        "kv_usage": 1.0,
        "waiting": 1.0,
    }[metric]


def compare(obs: Observation, pred: Prediction, bands: dict[str, float] | None = None) -> list[Check]:
    """Every metric of an interval against the prediction, in or out of its relative band."""
    bands = {**DEFAULT_BANDS, **(bands or {})}
    checks = []
    for metric in METRICS:
        observed = getattr(obs, metric)
        predicted = getattr(pred, metric)
        band = bands[metric]
        if metric == "waiting":
            excess = observed - predicted
            status = "high" if excess > max(1.0, band * predicted) else "ok"
        elif observed is None or _samples(obs, metric) < MIN_SAMPLES[metric] or not predicted > 0:
            status = "no data"
        elif observed <= 0:
            status = "low"
        else:
            off = math.log(observed / predicted)
            status = "ok" if abs(off) <= math.log1p(band) else ("high" if off > 0 else "low")
        checks.append(Check(metric, observed, predicted, band, status))
    return checks


@dataclass
class DriftTracker:
    """Consecutive out-of-band intervals per metric; an alarm once `confirm` in a row."""

    alarm_on: tuple[str, ...] = DEFAULT_ALARM_ON
    confirm: int = 2
    streak: dict[str, int] = field(default_factory=dict)

    def update(self, checks: list[Check]) -> list[str]:
        """Feed one interval's checks; the metrics in alarm after it."""
        for c in checks:
            if c.metric not in self.alarm_on or c.status == "no data":
                continue
            self.streak[c.metric] = self.streak.get(c.metric, 0) + 1 if c.status in ("high", "low") else 0
        return [m for m in self.alarm_on if self.streak.get(m, 0) >= self.confirm]
