"""The server's own figures over a bench run, read from its Prometheus endpoint with `tokenomy watch`'s scraper.

One scrape when the measured runs start (after the warm-up), one when they end, and one every `interval_s`
between them (a background thread) for the queue and KV gauges. From the counter and histogram deltas between
the first and the last scrape (vLLM's series names; watch.scrape maps SGLang's and llama.cpp's):
- mean TTFT = Δ time_to_first_token_seconds_sum / Δ _count; mean ITL = Δ inter_token_latency_seconds_sum
  (or time_per_output_token_seconds) / Δ _count; mean E2E and queue time likewise;
- requests finished = Δ request_success_total (else Δ e2e_request_latency_seconds_count);
- the gauges num_requests_waiting, num_requests_running, kv_cache_usage_perc (or gpu_cache_usage_perc): their
  time-weighted mean over the scrapes (trapezoid rule) and their largest scraped value.
Seconds are the server's wall seconds, as it observes them (no HTTP or client time). The counters count every
client of the server, not only this bench's. A scrape that fails is a warning, never a failed bench.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tokenomy.results import ServerMetrics
from tokenomy.watch.scrape import Reading, ScrapeError, fetch_reading, metrics_url

DEFAULT_INTERVAL_S = 1.0
SETTLE_STEP_S = 0.05  # the server may record a request just after its last byte: rescrape until the count holds
SETTLE_MAX_S = 1.0
AUTO = "auto"


def server_metrics_url(option: str, base_url: str) -> str:
    """The metrics URL `--server-metrics` names: `auto` is the bench URL without /v1, plus /metrics."""
    return metrics_url(base_url if option == AUTO else option)


def _delta(first: Reading, last: Reading, key: str) -> float | None:
    """last − first of a cumulative series (None where either scrape lacks it)."""
    a, b = first.get(key), last.get(key)
    return b - a if a is not None and b is not None else None


def _mean_of(first: Reading, last: Reading, key: str) -> float | None:
    """Δ key_sum / Δ key_count between two scrapes (None without observations)."""
    total, count = _delta(first, last, key + "_sum"), _delta(first, last, key + "_count")
    return total / count if total is not None and count is not None and count > 0 else None


def _gauge(readings: list[Reading], key: str) -> tuple[float | None, float | None]:
    """A gauge's time-weighted mean (trapezoid rule over the scrapes' times) and its largest value."""
    points = [(r.time_s, v) for r in readings if (v := r.get(key)) is not None]
    if not points:
        return None, None
    peak = max(v for _, v in points)
    span_s = points[-1][0] - points[0][0]
    if len(points) < 2 or span_s <= 0:
        return sum(v for _, v in points) / len(points), peak
    area = sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False))
    return area / span_s, peak


def server_figures(url: str, readings: list[Reading]) -> ServerMetrics:
    """The server's figures over the scrapes given (first and last bound the counters' window)."""
    first, last = readings[0], readings[-1]
    requests = _delta(first, last, "requests")
    if requests is None:
        requests = _delta(first, last, "e2e_count")
    gauges = {key: _gauge(readings, key) for key in ("waiting", "running", "kv_usage")}
    return ServerMetrics(
        url=url,
        dialect=first.dialect,
        window_s=last.time_s - first.time_s,
        scrapes=len(readings),
        requests=requests,
        ttft_s_mean=_mean_of(first, last, "ttft"),
        itl_s_mean=_mean_of(first, last, "itl"),
        e2e_s_mean=_mean_of(first, last, "e2e"),
        queue_s_mean=_mean_of(first, last, "queue"),
        waiting_mean=gauges["waiting"][0],
        waiting_peak=gauges["waiting"][1],
        running_mean=gauges["running"][0],
        running_peak=gauges["running"][1],
        kv_usage_mean=gauges["kv_usage"][0],
        kv_usage_peak=gauges["kv_usage"][1],
    )


class ServerScraper:
    """Scrapes one metrics endpoint at `start`, every `interval_s` after it, and at `finish` (not thread-shared:
    the sampling thread appends, `finish` joins it first)."""

    def __init__(self, url: str, interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = 5.0):
        self.url = url
        self.interval_s = interval_s
        self.client = httpx.Client(timeout=timeout_s)
        self.readings: list[Reading] = []
        self.warning: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """The first scrape (a failure leaves a warning and turns the scraper off) and the sampling thread."""
        if self.readings or self.warning:
            return
        try:
            self.readings.append(fetch_reading(self.client, self.url))
        except ScrapeError as exc:
            self.warning = f"server metrics not read, client figures only: {exc}"
            return
        self._thread = threading.Thread(target=self._sample, name="bench-server-metrics", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        """Every interval_s until stopped: one scrape (one that fails is skipped)."""
        while not self._stop.wait(self.interval_s):
            try:
                self.readings.append(fetch_reading(self.client, self.url, self.readings[0].dialect))
            except ScrapeError:
                continue

    def finish(self) -> ServerMetrics | None:
        """The last scrape (repeated until the finished-request count holds) and the figures; None on failure."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if not self.readings:
                return None
            dialect = self.readings[0].dialect
            last = fetch_reading(self.client, self.url, dialect)
            deadline_s = time.monotonic() + SETTLE_MAX_S
            while time.monotonic() < deadline_s:
                time.sleep(SETTLE_STEP_S)
                again = fetch_reading(self.client, self.url, dialect)
                if again.get("requests") == last.get("requests") and again.get("e2e_count") == last.get("e2e_count"):
                    break
                last = again
            return server_figures(self.url, [*self.readings, last])
        except ScrapeError as exc:
            self.warning = f"server metrics not read at the end of the run, client figures only: {exc}"
            return None
        finally:
            self.client.close()

    def watching(self, watch_for: Callable[[str, int], Any] | None) -> Callable[[str, int], Any]:
        """A bench progress factory that starts the scraper at the first measured run (after the warm-up)."""

        def factory(label: str, total: int) -> Any:
            if label != "warm-up":
                self.start()
            return watch_for(label, total) if watch_for is not None else None

        return factory


def server_lines(server: dict[str, Any]) -> list[str]:
    """The server's figures in words, for the bench table."""

    def ms(value: float | None) -> str:
        return f"{value * 1e3:,.1f} ms" if value is not None else "n/a"

    def gauge(mean: float | None, peak: float | None, pct: bool = False) -> str:
        if mean is None or peak is None:
            return "n/a"
        return f"mean {mean:.1%}, peak {peak:.1%}" if pct else f"mean {mean:,.2f}, peak {peak:,.0f}"

    requests = server["requests"]
    return [
        f"server ({server['url']}, {server['scrapes']} scrapes over {server['window_s']:,.2f} s): "
        f"{requests:,.0f} requests finished; TTFT mean {ms(server['ttft_s_mean'])}, "
        f"ITL mean {ms(server['itl_s_mean'])}, E2E mean {ms(server['e2e_s_mean'])}"
        if requests is not None
        else f"server ({server['url']}): no finished-request counter",
        f"server queue: waiting {gauge(server['waiting_mean'], server['waiting_peak'])}; running "
        f"{gauge(server['running_mean'], server['running_peak'])}; KV usage "
        f"{gauge(server['kv_usage_mean'], server['kv_usage_peak'], pct=True)}",
    ]
