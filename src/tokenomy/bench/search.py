"""SLO expressions ("ttft_p99<=2s,tpot_p99<=50ms") and the search for the highest rate that meets them.

Grammar: TERM ("," TERM)*, TERM = METRIC "_" STAT ("<=" | "<") NUMBER UNIT, METRIC one of ttft, itl,
tpot, e2e; STAT `mean` or `pNN` (p50, p90, p99, p99.9 …); UNIT s, ms or us. Spaces are ignored.
"""

from __future__ import annotations

import math
import re
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


@dataclass
class Probe:
    rate_rps: float
    ok: bool
    values_s: dict[str, float] = field(default_factory=dict)


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
        self.probes.append(Probe(rate_rps, ok, dict(values_s or {})))
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
            "probes": [{"rate_rps": p.rate_rps, "ok": p.ok, **p.values_s} for p in self.probes],
        }
