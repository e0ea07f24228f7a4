"""SLO expressions ("ttft_p99<=2s,tpot_p99<=50ms") and the search for the highest rate that meets them.

One search for `bench` (probes against an endpoint) and `simulate` (probes on the simulator): RateSearch
brackets and bisects; each probe runs to steady state (probe_size), is judged on its measured window
(window_stats, judge_probe: served >= 95% of the offered rate, every SLO term met, no errors) and says why
it failed. find_capacity drives it; the probes themselves live with their callers.

Grammar: TERM ("," TERM)*, TERM = METRIC "_" STAT ("<=" | "<") NUMBER UNIT, METRIC one of ttft, itl,
tpot, e2e; STAT `mean` or `pNN` (p50, p90, p99, p99.9 …); UNIT s, ms or us. Spaces are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SLO_METRICS = ("ttft", "itl", "tpot", "e2e")
SLO_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_TERM = re.compile(
    r"^(?P<metric>[a-z0-9]+)_(?P<stat>mean|p\d+(?:\.\d+)?)(?P<op><=|<)(?P<value>[0-9.eE+-]+)(?P<unit>[a-zµ]*)$"
)
SLO_FORM = "METRIC_STAT<=VALUE UNIT, e.g. ttft_p99<=2s,tpot_p99<=50ms (METRIC: ttft itl tpot e2e; STAT: mean or pNN)"


class SloError(ValueError):
    """An SLO expression that cannot be read; the message quotes the part at fault."""


@dataclass(frozen=True)
class SloTerm:
    """One objective: a statistic of a latency metric below a limit (seconds)."""

    metric: str  # ttft, itl, tpot or e2e
    stat: str  # "mean" or "p99", "p99.9" …
    limit_s: float
    strict: bool = False  # "<" rather than "<="

    @property
    def key(self) -> str:
        return f"{self.metric}_{self.stat}"

    def value(self, samples_s: np.ndarray) -> float:
        """The statistic of `samples_s` (inf when empty: nothing measured cannot meet an objective)."""
        if samples_s.size == 0:
            return math.inf
        if self.stat == "mean":
            return float(np.mean(samples_s))
        # linear, as the summary's p50/p90/p99; infinite samples (failures) as a huge finite value, so the
        # interpolation next to one is huge rather than NaN
        big = np.finfo(np.float64).max / 4
        value = float(np.percentile(np.minimum(samples_s, big), float(self.stat[1:])))
        return math.inf if value > 1e300 else value

    def met_by(self, value_s: float) -> bool:
        return value_s < self.limit_s if self.strict else value_s <= self.limit_s

    def __str__(self) -> str:
        return f"{self.key}{'<' if self.strict else '<='}{self.limit_s:g}s"


def parse_slo(text: str) -> list[SloTerm]:
    """Read an SLO expression; an unreadable term raises SloError naming it and what is wrong."""
    terms: list[SloTerm] = []
    parts = [p for p in text.replace(" ", "").split(",")]
    if not text.strip() or any(not p for p in parts):
        raise SloError(f"--slo '{text}': empty term; expected {SLO_FORM}")
    for part in parts:
        m = _TERM.match(part.lower())
        if m is None:
            raise SloError(f"--slo: cannot read '{part}'; expected {SLO_FORM}")
        metric, stat, unit = m["metric"], m["stat"], m["unit"]
        if metric not in SLO_METRICS:
            raise SloError(f"--slo: '{part}': unknown metric '{metric}'; one of {', '.join(SLO_METRICS)}")
        if stat != "mean" and not 0 < float(stat[1:]) <= 100:
            raise SloError(f"--slo: '{part}': percentile '{stat}' must be between p0 and p100")
        if unit not in SLO_UNITS:
            raise SloError(f"--slo: '{part}': unit '{unit or '(none)'}' must be one of s, ms, us")
        try:
            value = float(m["value"])
        except ValueError:
            raise SloError(f"--slo: '{part}': '{m['value']}' is not a number") from None
        if not (value > 0 and math.isfinite(value)):
            raise SloError(f"--slo: '{part}': the limit must be a positive number")
        terms.append(SloTerm(metric, stat, value * SLO_UNITS[unit], strict=m["op"] == "<"))
    return terms


def per_request_limits(terms: list[SloTerm]) -> dict[str, float]:
    """Per-request thresholds for goodput: the tightest limit given for each metric (statistic ignored)."""
    limits: dict[str, float] = {}
    for t in terms:
        limits[t.metric] = min(limits.get(t.metric, math.inf), t.limit_s)
    return limits


# ---------------------------------------------------------------- the search

SERVED_FRACTION = 0.95  # a probe counts only if the endpoint served at least this share of the offered rate
STEADY_MULTIPLE = 10  # the measured window sees at least this many times the mean in-flight requests complete
MIN_WINDOW_ARRIVALS = 50  # and at least this many arrivals
SERVED_NOISE_Z = 2.0  # and enough that the in-flight count's drift (±√(2L)) stays Z× inside the 5% allowance
RERUN_SERVED_FRACTION = 0.8  # a probe not steady but served at least this share of its rate is run again, longer
MAX_RERUNS = 2  # longer runs of one rate before a probe that is still not steady counts as failed
WARMUP_LATENCIES = 2.0  # the first this-many request latencies of a probe warm it up (not measured)


@dataclass(frozen=True)
class ProbeSize:
    """How long one probe offers its rate: a warm-up, then the measured window (seconds of arrivals)."""

    rate_rps: float
    warmup_s: float
    window_s: float

    @property
    def duration_s(self) -> float:
        return self.warmup_s + self.window_s

    @property
    def requests(self) -> int:
        """Arrivals needed to cover the warm-up and the window at the rate."""
        return max(int(math.ceil(self.rate_rps * self.duration_s)), 1)


def probe_size(
    rate_rps: float, latency_s: float, min_window_s: float, min_arrivals: int = MIN_WINDOW_ARRIVALS
) -> ProbeSize:
    """A probe long enough for steady state: by Little's law L = rate × latency requests are in flight, so a
    window of STEADY_MULTIPLE × latency sees STEADY_MULTIPLE × L of them complete; a warm-up of
    WARMUP_LATENCIES × latency (at least a tenth of the window) fills the queue first.

    Served vs offered: completions − arrivals in the window = in flight at its start − at its end, which drifts
    by about √(2L) at steady state; the window holds Z·√(2L) / (1 − SERVED_FRACTION) arrivals or more, so a
    probe that keeps up is not failed by that noise (about 250 arrivals at L = 20, 57 at L = 1)."""
    in_flight = rate_rps * latency_s
    noise = SERVED_NOISE_Z * math.sqrt(2 * max(in_flight, 1.0)) / (1 - SERVED_FRACTION)
    window = max(min_window_s, STEADY_MULTIPLE * latency_s, max(min_arrivals, noise) / rate_rps)
    return ProbeSize(rate_rps, max(WARMUP_LATENCIES * latency_s, 0.1 * window), window)


def at_exact_rate(arrival_s: np.ndarray, rate_rps: float) -> np.ndarray:
    """Arrival times stretched so that n arrivals span exactly n / rate_rps: a probe offers the rate it is
    recorded at (a Poisson draw of 200 arrivals alone is ±7% off its nominal rate), its gaps keep their shape."""
    arrival = np.asarray(arrival_s, dtype=float)
    if arrival.size == 0 or not arrival[-1] > 0:
        return arrival
    return arrival * (arrival.size / rate_rps) / arrival[-1]


@dataclass(frozen=True)
class WindowStats:
    """What happened inside a probe's measured window [start_s, end_s] (seconds from the probe's start)."""

    start_s: float
    end_s: float
    arrivals: int  # requests that arrived in the window
    completions: int  # requests that finished in the window, whenever they arrived
    in_flight: float  # time-averaged requests in flight over the window
    measured: np.ndarray  # mask: the requests that arrived in the window (their latencies are the probe's)
    backlog_growth: float = 0.0  # mean in flight over the window's second half − over its first half

    @property
    def offered_rps(self) -> float:
        return self.arrivals / max(self.end_s - self.start_s, 1e-12)

    @property
    def served_rps(self) -> float:
        """The rate offered less the backlog's growth: offered − (L̄₂ − L̄₁) / (T/2), with L̄ the mean in flight
        over each half of the window. Arrivals − completions in a window is exactly the change of the in-flight
        count from its start to its end, a difference of two noisy instants; averaging each half instead takes
        most of that noise out, and a queue growing at (offered − capacity) still shows as exactly that."""
        return self.offered_rps - self.backlog_growth / max((self.end_s - self.start_s) / 2, 1e-12)

    @property
    def steady(self) -> bool:
        """Enough completions to average over the queue's fluctuation (STEADY_MULTIPLE × what is in flight)."""
        return self.completions >= STEADY_MULTIPLE * self.in_flight


def window_stats(arrival_s: np.ndarray, finish_s: np.ndarray, start_s: float, end_s: float) -> WindowStats:
    """Arrivals, completions, mean in-flight requests and the backlog's growth in [start_s, end_s]; finish_s is
    NaN for a request that never finished (failed or still running: it counts as in flight to the window's end)."""
    arrival = np.asarray(arrival_s, dtype=float)
    finish = np.where(np.isnan(finish_s), np.inf, np.asarray(finish_s, dtype=float))

    def mean_in_flight(t0: float, t1: float) -> float:
        overlap = np.clip(np.minimum(finish, t1) - np.maximum(arrival, t0), 0.0, None)
        return float(overlap.sum() / max(t1 - t0, 1e-12))

    middle = (start_s + end_s) / 2
    measured = (arrival >= start_s) & (arrival <= end_s)
    return WindowStats(
        start_s=start_s,
        end_s=end_s,
        arrivals=int(measured.sum()),
        completions=int(((finish >= start_s) & (finish <= end_s)).sum()),
        in_flight=mean_in_flight(start_s, end_s),
        measured=measured,
        backlog_growth=mean_in_flight(middle, end_s) - mean_in_flight(start_s, middle),
    )


@dataclass
class Probe:
    """One probe's outcome: the SLO statistics over its measured requests and, when it failed, why."""

    rate_rps: float
    ok: bool
    values_s: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    offered_rps: float | None = None
    served_rps: float | None = None
    in_flight: float | None = None
    window_s: float | None = None
    measured_requests: int | None = None
    failed_requests: int = 0
    steady: bool = True
    mean_latency_s: float | None = None  # mean E2E of the measured requests: sizes the next probe
    goodput_rps: float | None = None  # measured requests within every per-request limit, per second of window

    def as_dict(self) -> dict[str, object]:
        """The probe as JSON: rate, pass/fail, reasons, the served-rate check and the SLO statistics."""
        return {
            "rate_rps": self.rate_rps,
            "ok": self.ok,
            "reasons": list(self.reasons),
            "offered_rps": self.offered_rps,
            "served_rps": self.served_rps,
            "served_fraction": self.served_rps / self.offered_rps
            if self.served_rps is not None and self.offered_rps
            else None,
            "in_flight": self.in_flight,
            "window_s": self.window_s,
            "measured_requests": self.measured_requests,
            "failed_requests": self.failed_requests,
            "steady": self.steady,
            "goodput_rps": self.goodput_rps,
            **self.values_s,
        }


def _fmt_s(value_s: float) -> str:
    if math.isinf(value_s):
        return "inf (requests failed)"
    return f"{value_s * 1e3:.4g} ms" if value_s < 1 else f"{value_s:.4g} s"


def judge_probe(
    rate_rps: float,
    stats: WindowStats,
    values_s: dict[str, float],
    terms: list[SloTerm] | tuple[SloTerm, ...],
    failed: int,
    mean_latency_s: float | None = None,
    max_error_rate: float = 0.0,
) -> Probe:
    """A probe passes when the endpoint served ≥ SERVED_FRACTION of the rate offered in the window, every SLO
    term is met over the window's requests and at most `max_error_rate` of them failed; each miss is a reason."""
    reasons: list[str] = []
    offered, served = stats.offered_rps, stats.served_rps
    if served < SERVED_FRACTION * offered:
        reasons.append(
            f"served {served:.4g} req/s, {served / offered:.1%} of the {offered:.4g} req/s offered "
            f"(needs {SERVED_FRACTION:.0%})"
        )
    for t in terms:
        value = values_s.get(t.key, math.inf)
        if not t.met_by(value):
            reasons.append(f"SLO missed: {t.key} {_fmt_s(value)} > {_fmt_s(t.limit_s)}")
    if failed and failed > max_error_rate * max(stats.arrivals, 1):
        reasons.append(f"{failed} of {stats.arrivals} measured requests failed")
    if not stats.steady and served >= SERVED_FRACTION * offered:  # an overloaded probe is never steady
        reasons.append(
            f"not steady: {stats.completions} completions in the window, fewer than {STEADY_MULTIPLE}× the "
            f"{stats.in_flight:.3g} requests in flight"
        )
    return Probe(
        rate_rps=rate_rps,
        ok=not reasons,
        values_s=dict(values_s),
        reasons=reasons,
        offered_rps=offered,
        served_rps=served,
        in_flight=stats.in_flight,
        window_s=stats.end_s - stats.start_s,
        measured_requests=stats.arrivals,
        failed_requests=failed,
        steady=stats.steady,
        mean_latency_s=mean_latency_s,
    )


class RateSearch:
    """Highest rate meeting an SLO, one probe at a time: bracket by doubling (or halving), then bisect.

    From `start_rps` the rate doubles until a probe fails (or halves until one passes), staying in
    [min_rps, max_rps]; then the geometric midpoint of the last passing and first failing rates is
    probed until they are within `rel_tol` of each other or `max_probes` runs are spent. Latency
    grows with load, so "passes" is taken as monotone in the rate (not checked).
    """

    def __init__(
        self,
        start_rps: float = 1.0,
        min_rps: float = 0.05,
        max_rps: float = 1e4,
        max_probes: int = 10,
        rel_tol: float = 0.05,
    ) -> None:
        if not 0 < min_rps <= max_rps:
            raise ValueError(f"--search-min/--search-max: need 0 < min <= max, got {min_rps:g} and {max_rps:g}")
        if max_probes < 1:
            raise ValueError(f"--search-probes: need at least 1, got {max_probes}")
        if not 0 < rel_tol:
            raise ValueError(f"the search tolerance must be positive, got {rel_tol:g}")
        self.min_rps, self.max_rps = min_rps, max_rps
        self.start_rps = min(max(start_rps, min_rps), max_rps)
        self.max_probes, self.rel_tol = max_probes, rel_tol
        self.probes: list[Probe] = []
        self.best_ok: float | None = None  # highest passing rate so far
        self.lowest_fail: float | None = None  # lowest failing rate so far

    def next_rate(self) -> float | None:
        """The rate to probe next, or None when the search is over."""
        if len(self.probes) >= self.max_probes:
            return None
        ok, bad = self.best_ok, self.lowest_fail
        if ok is None and bad is None:
            return self.start_rps
        if bad is None:  # everything passed so far: double
            return None if ok >= self.max_rps else min(ok * 2, self.max_rps)
        if ok is None:  # everything failed so far: halve
            return None if bad <= self.min_rps else max(bad / 2, self.min_rps)
        if bad / ok <= 1 + self.rel_tol:
            return None
        return math.sqrt(ok * bad)

    def record(self, rate_rps: float, ok: bool, values_s: dict[str, float] | None = None) -> None:
        """The outcome of a probe at `rate_rps`."""
        self.add(Probe(rate_rps, ok, dict(values_s or {})))

    def add(self, probe: Probe) -> None:
        """A judged probe (see judge_probe)."""
        self.probes.append(probe)
        rate_rps, ok = probe.rate_rps, probe.ok
        if ok and (self.best_ok is None or rate_rps > self.best_ok):
            self.best_ok = rate_rps
        if not ok and (self.lowest_fail is None or rate_rps < self.lowest_fail):
            self.lowest_fail = rate_rps

    def outcome(self) -> dict[str, object]:
        """What the search found: the best rate (None if none passed), the bracket and every probe."""
        return {
            "best_rate_rps": self.best_ok,
            "lowest_failing_rate_rps": self.lowest_fail,
            "bounds_rps": [self.min_rps, self.max_rps],
            "start_rps": self.start_rps,
            "rel_tol": self.rel_tol,
            "max_probes": self.max_probes,
            "served_fraction_required": SERVED_FRACTION,
            "probes": [p.as_dict() for p in self.probes],
        }


@dataclass(frozen=True)
class CapacitySettings:
    """Bounds of the capacity search (req/s), its probe budget, and the shortest and longest measured windows."""

    start_rps: float = 1.0
    min_rps: float = 0.05
    max_rps: float = 1e4
    max_probes: int = 10
    rel_tol: float = 0.05
    min_window_s: float = 15.0
    max_window_s: float = 600.0
    min_window_arrivals: int = MIN_WINDOW_ARRIVALS  # fewer: a noisier served-rate check (tests on a twin)

    def new_search(self) -> RateSearch:
        return RateSearch(self.start_rps, self.min_rps, self.max_rps, self.max_probes, self.rel_tol)


ProbeFn = Callable[[ProbeSize], Probe]


def find_capacity(
    probe: ProbeFn, settings: CapacitySettings, latency_s: float, on_probe: Callable[[Probe], None] | None = None
) -> RateSearch:
    """The highest rate meeting the SLO, by RateSearch over probes that run to steady state.

    `probe(size)` offers `size.rate_rps` for `size.duration_s` and judges the window (judge_probe);
    `latency_s` is a first guess of a request's latency (the unloaded one). Each probe is sized from the
    longest mean latency seen so far at a passing rate; a probe too short for steady state (its window saw
    fewer than STEADY_MULTIPLE × its in-flight requests complete) is run again, longer (MAX_RERUNS times at
    most), before it counts.
    """
    search = settings.new_search()
    rate = search.next_rate()
    while rate is not None:
        size = probe_size(rate, latency_s, settings.min_window_s, settings.min_window_arrivals)
        result = probe(size)
        reruns = 0
        while _too_short(result) and size.window_s < settings.max_window_s and reruns < MAX_RERUNS:
            reruns += 1
            # Little's law on what the probe saw: latency = in flight / rate; a quarter more for the margin
            seen_s = (result.in_flight or 0.0) / max(result.offered_rps or rate, 1e-12)
            longer = probe_size(
                rate, max(seen_s * 1.25, latency_s), settings.min_window_s, settings.min_window_arrivals
            )
            window = min(max(longer.window_s, size.window_s * 1.5), settings.max_window_s)
            size = ProbeSize(rate, max(longer.warmup_s, size.warmup_s), window)
            result = probe(size)
        if result.ok and result.mean_latency_s:
            latency_s = max(latency_s, result.mean_latency_s)
        search.add(result)
        if on_probe is not None:
            on_probe(result)
        rate = search.next_rate()
    return search


def _too_short(p: Probe) -> bool:
    """Not steady, and near enough to keeping up that the queue's noise may decide it: a longer run settles it
    (a probe served well under the rate offered fails whatever its length)."""
    if p.steady or p.served_rps is None or not p.offered_rps:
        return False
    return p.served_rps >= RERUN_SERVED_FRACTION * p.offered_rps
