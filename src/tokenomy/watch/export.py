"""What watch publishes: its own Prometheus series and the refitted engine profile file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from tokenomy.costmodel.profile import EngineProfile
from tokenomy.watch.session import IntervalReport


class WatchMetrics:
    """tokenomy_watch_* series, labelled by engine URL and metric (cost-model seconds, tokens/s, fractions)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.observed = Gauge(
            "tokenomy_watch_observed", "What the engine did in the last interval.", ["engine", "metric"], registry=r
        )
        self.predicted = Gauge(
            "tokenomy_watch_predicted", "What the cost model predicts at that load.", ["engine", "metric"], registry=r
        )
        self.allowed_low = Gauge(
            "tokenomy_watch_allowed_low", "Low end of the range allowed at that load.", ["engine", "metric"], registry=r
        )
        self.allowed_high = Gauge(
            "tokenomy_watch_allowed_high",
            "High end of the range allowed at that load.",
            ["engine", "metric"],
            registry=r,
        )
        self.out_of_band = Gauge(
            "tokenomy_watch_out_of_band",
            "1 when the metric was outside its allowed range (80% interval or band).",
            ["engine", "metric"],
            registry=r,
        )
        self.alarm = Gauge(
            "tokenomy_watch_drift_alarm", "1 while a drift alarm holds.", ["engine", "metric"], registry=r
        )
        self.batch = Gauge("tokenomy_watch_batch", "Mean running sequences in the interval.", ["engine"], registry=r)
        self.fitted = Gauge(
            "tokenomy_watch_fitted_overhead_seconds", "Refitted engine overhead.", ["engine", "parameter"], registry=r
        )
        self.intervals = Counter("tokenomy_watch_intervals", "Intervals judged.", ["engine"], registry=r)
        self.errors = Counter("tokenomy_watch_scrape_errors", "Scrapes that failed.", ["engine"], registry=r)

    def update(self, report: IntervalReport) -> None:
        """Publish one interval's report."""
        url = report.url
        if report.observation is None:
            self.errors.labels(url).inc()
            return
        self.intervals.labels(url).inc()
        self.batch.labels(url).set(report.observation.batch)
        for c in report.checks:
            if c.observed is not None:
                self.observed.labels(url, c.metric).set(c.observed)
            self.predicted.labels(url, c.metric).set(c.predicted)
            self.allowed_low.labels(url, c.metric).set(c.interval[0])
            self.allowed_high.labels(url, c.metric).set(c.interval[1])
            self.out_of_band.labels(url, c.metric).set(1.0 if c.status in ("high", "low") else 0.0)
            self.alarm.labels(url, c.metric).set(1.0 if c.metric in report.alarms else 0.0)
        if report.fit is not None:
            self.fitted.labels(url, "step_overhead_s").set(report.fit.step_overhead_s)
            self.fitted.labels(url, "seq_overhead_s").set(report.fit.seq_overhead_s)


def write_profile(profile: EngineProfile, path: Path) -> None:
    """Write the profile JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".watch-", suffix=".json", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(profile.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
