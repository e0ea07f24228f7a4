"""What the cost model predicts for an observed load, and whether the engine drifted from it (no I/O).

Prediction at the observed load (mean running batch b, prompt and output tokens per request):
- ITL/TPOT: the steps a decoding request sits in at batch b (`costmodel.perf.steady_state`'s tpot: the mixed
  continuous-batching steps, b decode tokens plus the prefill chunks that keep the batch full, weighted by the
  requests decoding in each — not a request's own prompt steps, which engines count in TTFT, not ITL);
- TTFT: the queued prompts (waiting + 1, each of the observed prompt length) prefilled in chunked steps beside
  the b running sequences (`costmodel.perf.queued_ttft_s`), plus half a step: a request that arrives during a
  step joins at its end;
- output throughput at batch b (`steady_state`), KV usage b·(isl + osl/2) / the KV capacity at isl + osl;
- queue: the requests in the engine (b + waiting) beyond what it admits at once (`max_num_seqs`, and the paged
  KV capacity at isl + osl: `Deployment.max_concurrency`); a queue is out of band when it exceeds that by more
  than max(1, band × predicted) requests.

Drift: each metric has a range the observed value may take at the predicted one, and where it came from:
- ITL/TPOT, TTFT and output throughput: the prediction's 80 % interval from cross-validated residuals
  (`costmodel.intervals.figure_interval_80`, the pool of the engine's accelerator family × model family, or the
  first wider pool that holds enough residuals: `thin`), the same intervals `plan` and `simulate` show, never
  narrower than WINDOW_BANDS (what a few seconds' window of a steady engine scatters by even where the model is
  exact: the interval is the model's error over long runs, not one window's sampling noise); an explicit relative
  band (`--band-itl` …) replaces both, and without a shipped residual table WINDOW_BANDS stand in alone;
- KV usage and queue length have no residual pool: always a band (DEFAULT_BANDS). A relative band B allows
  [predicted ÷ (1 + B), predicted × (1 + B)]; the queue allows up to predicted + max(1, B × predicted) requests.
A metric is "high" above its range, "low" below it. A metric alarms after `confirm` consecutive out-of-range
intervals; intervals that cannot be judged ("no data": too few samples, MIN_SAMPLES; "too few requests": fewer
than MIN_REQUESTS finished, so the per-request means and the load rest on one or two requests) neither count nor
reset. The queue is judged whatever finished: it is a gauge, and a queue that grows while nothing finishes is drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.intervals import figure_interval_80
from tokenomy.costmodel.perf import queued_ttft_s, steady_state
from tokenomy.results import FigureInterval
from tokenomy.watch.observe import MIN_REQUESTS, Observation

METRICS = ("ttft_s", "itl_s", "output_tokens_per_s", "kv_usage", "waiting")
# Metrics with a residual pool: their names are plan/simulate figure names that FIGURE_METRICS maps
# (itl_s -> mean_itl, ttft_s -> mean_ttft, output_tokens_per_s -> output_throughput).
INTERVAL_METRICS = ("ttft_s", "itl_s", "output_tokens_per_s")
# Relative bands of the metrics without a residual pool (set by hand: the simulator's scatter around the closed
# form at a steady load, as before the intervals existed).
DEFAULT_BANDS = {"kv_usage": 0.5, "waiting": 0.5}
# The narrowest relative range of the metrics with a residual pool (same origin: a window of a few seconds of a
# steady twin scatters this much around the closed form — ITL 0.59–1.66× of it in single windows of a 3-client
# probe); alone where no residual table is shipped.
WINDOW_BANDS = {"itl_s": 0.25, "ttft_s": 0.5, "output_tokens_per_s": 0.35}
DEFAULT_ALARM_ON = ("itl_s", "ttft_s")
# Samples an interval needs before a metric is judged: token gaps for ITL, first tokens for TTFT, generated
# tokens for throughput and KV usage (an idle engine's KV usage is not compared with a one-request prediction).
MIN_SAMPLES = {"itl_s": 20.0, "ttft_s": 3.0, "output_tokens_per_s": 20.0, "kv_usage": 20.0, "waiting": 0.0}
JUDGED = ("ok", "high", "low")  # statuses that count towards (or reset) an alarm
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
    """One metric of one interval against the range its prediction allows, and where that range came from."""

    metric: str
    observed: float | None
    predicted: float
    interval: tuple[float, float]  # [lo, hi] the observed value may take without drift
    status: str  # "ok", "high", "low", "no data", "too few requests"
    source: str  # "80% interval", "band" (given), "fallback band" (no residual table), "band (no residual pool)"
    band: float | None = None  # the relative band, where a band set the range
    pool: str = ""  # the residual pool of an 80 % interval ('metric|accelerator family|model family')
    n: int = 0  # residuals in that pool
    thin: bool = False  # the deployment's own pool was too thin: a wider pool stood in
    note: str = ""

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
        d.token_budget,
        running,
        running * (isl + osl / 2),
        max(round(waiting), 0) * isl + isl,
    )
    capacity = max(d.kv_capacity_tokens_at(isl + osl), 1)
    admits = max(min(d.max_concurrency(isl, osl)["paged"], d.max_seqs), 1)
    return Prediction(
        batch=b,
        prompt_tokens=isl,
        output_tokens=osl,
        ttft_s=float(ttft_s) + 0.5 * step_s,
        itl_s=float(ss.tpot_s),
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
        "kv_usage": obs.generation_tokens,
        "waiting": 1.0,
    }[metric]


def prediction_intervals(pred: Prediction, gpu_id: str, model_id: str) -> dict[str, FigureInterval]:
    """The 80 % interval of each predicted metric that has a residual pool, for this accelerator and model."""
    out = {}
    for metric in INTERVAL_METRICS:
        iv = figure_interval_80(metric, gpu_id, model_id, getattr(pred, metric))
        if iv is not None:
            out[metric] = iv
    return out


def _range(metric: str, predicted: float, bands: dict[str, float], intervals: dict[str, FigureInterval]) -> dict:
    """The allowed range of one metric and its origin: a band given, the 80 % interval, or a default band."""
    if metric in bands or metric not in intervals:
        given = metric in bands
        band = bands.get(metric, DEFAULT_BANDS.get(metric, WINDOW_BANDS.get(metric, 0.0)))
        source = "band (no residual pool)" if metric in DEFAULT_BANDS else "band" if given else "fallback band"
        if metric == "waiting":
            lo, hi = 0.0, predicted + max(1.0, band * predicted)
        else:
            lo, hi = predicted / (1 + band), predicted * (1 + band)
        return dict(interval=(lo, hi), source=source, band=band)
    iv, floor = intervals[metric], WINDOW_BANDS[metric]
    lo, hi = min(iv.interval_80[0], predicted / (1 + floor)), max(iv.interval_80[1], predicted * (1 + floor))
    return dict(interval=(lo, hi), source="80% interval", pool=iv.pool, n=iv.n, thin=iv.thin, note=iv.note)


def _status(obs: Observation, metric: str, observed: float | None, predicted: float, lo: float, hi: float) -> str:
    if metric == "waiting":
        return "high" if observed is not None and observed > hi else "ok"
    if obs.requests is not None and obs.requests < MIN_REQUESTS:
        return "too few requests"
    if observed is None or _samples(obs, metric) < MIN_SAMPLES[metric] or not predicted > 0:
        return "no data"
    return "low" if observed < lo else "high" if observed > hi else "ok"


def compare(
    obs: Observation,
    pred: Prediction,
    bands: dict[str, float] | None = None,
    intervals: dict[str, FigureInterval] | None = None,
) -> list[Check]:
    """Every metric of an interval against its allowed range: the prediction's 80 % interval (`intervals`), or a
    relative band where one is given in `bands` (it replaces the interval) or the metric has no interval."""
    bands, intervals = bands or {}, intervals or {}
    checks = []
    for metric in METRICS:
        observed, predicted = getattr(obs, metric), getattr(pred, metric)
        allowed = _range(metric, predicted, bands, intervals)
        lo, hi = allowed["interval"]
        checks.append(
            Check(metric, observed, predicted, status=_status(obs, metric, observed, predicted, lo, hi), **allowed)
        )
    return checks


@dataclass
class DriftTracker:
    """Consecutive out-of-range intervals per metric; an alarm once `confirm` in a row."""

    alarm_on: tuple[str, ...] = DEFAULT_ALARM_ON
    confirm: int = 2
    streak: dict[str, int] = field(default_factory=dict)

    def update(self, checks: list[Check]) -> list[str]:
        """Feed one interval's checks; the metrics in alarm after it (unjudged intervals neither count nor reset)."""
        for c in checks:
            if c.metric not in self.alarm_on or c.status not in JUDGED:
                continue
            self.streak[c.metric] = self.streak.get(c.metric, 0) + 1 if c.status in ("high", "low") else 0
        return [m for m in self.alarm_on if self.streak.get(m, 0) >= self.confirm]
