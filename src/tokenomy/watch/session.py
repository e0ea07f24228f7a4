"""One watched engine: readings in, interval reports out (prediction, checks, alarms, refit); no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tokenomy.costmodel.deployment import Deployment
from tokenomy.watch.compare import (
    DEFAULT_ALARM_ON,
    DEFAULT_ISL,
    DEFAULT_OSL,
    JUDGED,
    METRICS,
    Check,
    DriftTracker,
    Prediction,
    compare,
    load_lengths,
    predict,
    prediction_intervals,
)
from tokenomy.watch.observe import CounterReset, Observation, observe
from tokenomy.watch.refit import OverheadFit, OverheadRefit
from tokenomy.watch.scrape import Reading


@dataclass(frozen=True)
class WatchOptions:
    """How to judge an engine: bands given, alarm rule, refit window, fallback lengths, time scale."""

    bands: dict[str, float] = field(default_factory=dict)  # relative bands given; each replaces that metric's
    # 80 % interval (ITL, TTFT, throughput) or its default band (KV usage, queue)
    alarm_on: tuple[str, ...] = DEFAULT_ALARM_ON
    confirm: int = 2
    window: int = 20
    isl: int = DEFAULT_ISL
    osl: int = DEFAULT_OSL
    time_scale: float | None = None  # None: the twin's `twin:speedup` when exported, else 1
    # requests the engine runs at once (vLLM --max-num-seqs, llama-server -np); None: the engine profile's, or
    # what a llama.cpp server says it has (/props total_slots)
    max_num_seqs: int | None = None

    def __post_init__(self) -> None:
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ValueError(f"--max-num-seqs must be at least 1, got {self.max_num_seqs}")
        if self.confirm < 1:
            raise ValueError(f"--confirm must be at least 1, got {self.confirm}")
        if self.time_scale is not None and not self.time_scale > 0:
            raise ValueError(f"--time-scale must be positive, got {self.time_scale}")
        for name, band in self.bands.items():
            if name not in METRICS:
                raise ValueError(f"band for unknown metric '{name}'; choose from {', '.join(METRICS)}")
            if not band > 0 or not band < float("inf"):
                raise ValueError(f"band for {name} must be positive, got {band}")


@dataclass(frozen=True)
class IntervalReport:
    """What one interval of one engine showed."""

    url: str
    index: int
    time_scale: float
    observation: Observation | None
    prediction: Prediction | None
    checks: tuple[Check, ...]
    alarms: tuple[str, ...]
    fit: OverheadFit | None
    note: str = ""


class EngineWatch:
    """Feeds readings of one engine through observe → predict → compare → track → refit."""

    def __init__(self, url: str, d: Deployment, options: WatchOptions | None = None):
        self.url = url
        self.options = options or WatchOptions()
        self.slots_given = self.options.max_num_seqs is not None  # else the engine may say (use_engine_slots)
        self.d = with_max_num_seqs(d, self.options.max_num_seqs) if self.options.max_num_seqs else d
        self.tracker = DriftTracker(self.options.alarm_on, self.options.confirm)
        self.refit = OverheadRefit(self.d, self.options.window)
        self.prev: Reading | None = None
        self.time_scale: float | None = self.options.time_scale
        self.index = 0
        self.last_fit: OverheadFit | None = None
        self.lengths = (self.options.isl, self.options.osl)  # the last ones observed, else the options'
        self.note = ""  # said with every interval's report (e.g. where the queue's limit came from)

    def use_engine_slots(self, slots: int | None) -> None:
        """The requests the engine itself says it runs at once (a llama.cpp server's slots), unless given; None:
        it did not say, and the profile's max_num_seqs stands (the reports say so)."""
        if self.slots_given:
            return
        self.slots_given = True
        if slots is None:
            seqs = self.d.max_seqs
            self.note = (
                f"the server gave no slot count (/props total_slots): the queue is predicted with the engine profile's "
                f"limit, {seqs} requests at once (max_num_seqs); give --max-num-seqs if it runs more at once"
            )
        elif slots != self.d.max_seqs:
            self.d = with_max_num_seqs(self.d, slots)
            self.refit = OverheadRefit(self.d, self.options.window)

    def feed(self, reading: Reading) -> IntervalReport | None:
        """Take one reading; the report of the interval it closes (None for the first)."""
        if self.time_scale is None:
            self.time_scale = reading.get("time_scale") or 1.0
        prev, self.prev = self.prev, reading
        if prev is None:
            return None
        self.index += 1
        try:
            obs = observe(prev, reading, self.time_scale)
        except CounterReset as exc:
            return self._empty(f"counter {exc} went down: the engine restarted; interval skipped")
        isl, osl = self.lengths = load_lengths(obs, *self.lengths)
        pred = predict(self.d, obs.batch, isl, osl, obs.waiting)
        intervals = prediction_intervals(pred, self.d.gpu.id, self.d.model.id)
        checks = compare(obs, pred, self.options.bands, intervals)
        alarms = self.tracker.update(checks)
        itl = next(c for c in checks if c.metric == "itl_s")
        if obs.itl_s is not None and itl.status in JUDGED:
            self.refit.add(obs.itl_s, obs.batch, isl, osl)
            self.last_fit = self.refit.fit()
        return IntervalReport(
            self.url, self.index, self.time_scale, obs, pred, tuple(checks), tuple(alarms), self.last_fit, self.note
        )

    def _empty(self, note: str) -> IntervalReport:
        return IntervalReport(self.url, self.index, self.time_scale or 1.0, None, None, (), (), self.last_fit, note)

    def error(self, message: str) -> IntervalReport:
        """A report for an interval whose scrape failed (the next reading starts afresh)."""
        self.index += 1
        self.prev = None
        return self._empty(message)


def with_max_num_seqs(d: Deployment, seqs: int) -> Deployment:
    """The deployment with its engine admitting `seqs` requests at once (the profile's limit: per attention-DP rank)."""
    return replace(d, profile=d.profile.with_values(max_num_seqs=-(-seqs // d.attention_dp_ranks)))
