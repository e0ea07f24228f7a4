"""What a simulation records: per-request times, a pooled inter-token-gap histogram, and a timeline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tokenomy.sim.workload import Workload


class GapHistogram:
    """Weighted samples of a positive quantity in log-spaced bins (0.5% wide); exact mean and count.

    Pooling every inter-token gap of a million requests would take hundreds of millions of
    samples; 2,001 bins keep percentiles within half a bin.
    """

    BINS_PER_DECADE = 200
    LOG10_LOW = -6.0  # 1 µs; smaller gaps (tokens of one speculative burst) go in bin 0
    N_BINS = 2001

    def __init__(self) -> None:
        self.counts = [0.0] * self.N_BINS
        self.weight = 0.0
        self.total = 0.0

    def add(self, value_s: float, weight: float = 1.0) -> None:
        if value_s > 1e-6:
            i = int((math.log10(value_s) + 6.0) * 200.0) + 1  # (log10 − LOG10_LOW) · BINS_PER_DECADE + 1
            self.counts[i if i < 2001 else 2000] += weight
        else:
            self.counts[0] += weight
        self.weight += weight
        self.total += value_s * weight

    def merge(self, other: GapHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.weight += other.weight
        self.total += other.total

    def mean(self) -> float:
        return self.total / self.weight if self.weight else math.nan

    def percentile(self, q: float) -> float:
        """Value below which q% of the weight lies (geometric centre of its bin)."""
        if not self.weight:
            return math.nan
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, q / 100.0 * self.weight))
        if i == 0:
            return 0.0
        return 10 ** (self.LOG10_LOW + (i - 0.5) / self.BINS_PER_DECADE)


@dataclass
class RequestLog:
    """Per-request outcomes, indexed like the workload (NaN until it happens)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions: np.ndarray
    cached_tokens: np.ndarray
    where: np.ndarray  # index of the replica or tier that served it (-1: rejected)

    @classmethod
    def for_workload(cls, w: Workload) -> RequestLog:
        n = len(w)
        return cls(
            arrival_s=np.array(w.arrival_s, dtype=float),
            input_tokens=np.asarray(w.input_tokens, dtype=np.int64),
            output_tokens=np.asarray(w.output_tokens, dtype=np.int64),
            first_token_s=np.full(n, np.nan),
            finish_s=np.full(n, np.nan),
            preemptions=np.zeros(n, dtype=np.int64),
            cached_tokens=np.zeros(n, dtype=np.int64),
            where=np.full(n, -1, dtype=np.int64),
        )

    @property
    def done(self) -> np.ndarray:
        return ~np.isnan(self.finish_s)

    def ttft_s(self) -> np.ndarray:
        return (self.first_token_s - self.arrival_s)[self.done]

    def e2e_s(self) -> np.ndarray:
        return (self.finish_s - self.arrival_s)[self.done]

    def tpot_s(self) -> np.ndarray:
        """Per request (E2E − TTFT) / (output − 1), requests with more than one output token."""
        ok = self.done & (self.output_tokens > 1)
        return (self.finish_s - self.first_token_s)[ok] / (self.output_tokens[ok] - 1)


@dataclass
class Timeline:
    """The replica's state sampled at regular simulated times."""

    t_s: list[float] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    kv_live_tokens: list[float] = field(default_factory=list)
    kv_allocated_tokens: list[float] = field(default_factory=list)

    def record(self, t: float, running: int, waiting: int, live: float, allocated: float) -> None:
        self.t_s.append(t)
        self.running.append(running)
        self.waiting.append(waiting)
        self.kv_live_tokens.append(live)
        self.kv_allocated_tokens.append(allocated)


@dataclass
class ReplicaStats:
    """Time and work totals of one replica over a run."""

    busy_s: float = 0.0
    prefill_s: float = 0.0  # busy time charged to prompt tokens
    steps: int = 0
    preemptions: int = 0
    live_token_seconds: float = 0.0  # ∫ tokens in KV dt
    allocated_token_seconds: float = 0.0  # ∫ tokens of allocated KV blocks dt
    decode_batch_seconds: float = 0.0  # ∫ decoding sequences dt (for the mean batch)
    decode_ctx_seconds: float = 0.0  # ∫ summed decode context dt

    def merge(self, other: ReplicaStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def summary_stats(values: np.ndarray) -> dict[str, float]:
    """mean, p50, p90, p99 of an array (NaN when empty)."""
    if values.size == 0:
        return {"mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def histogram_stats(h: GapHistogram) -> dict[str, float]:
    return {"mean": h.mean(), "p50": h.percentile(50), "p90": h.percentile(90), "p99": h.percentile(99)}
