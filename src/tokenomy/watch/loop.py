"""The watch loop: scrape every engine each interval, feed its EngineWatch, hand the reports on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import httpx

from tokenomy.watch.scrape import ScrapeError, fetch_llamacpp_slots, fetch_reading
from tokenomy.watch.session import EngineWatch, IntervalReport


def watch_loop(
    watches: Sequence[EngineWatch],
    interval_s: float,
    on_reports: Callable[[list[IntervalReport]], None],
    iterations: int = 0,
    stop: threading.Event | None = None,
    dialect: str | None = None,
    model_name: str | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Scrape each engine every `interval_s` (a first scrape, then `iterations` intervals; 0: until `stop`)."""
    if interval_s <= 0:
        raise ValueError(f"--interval must be positive, got {interval_s}")
    stop = stop or threading.Event()
    done = 0
    next_s = time.monotonic()
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        while not stop.is_set():
            reports = []
            for w in watches:
                try:
                    reading = fetch_reading(client, w.url, dialect, model_name)
                    if reading.dialect == "llamacpp" and not w.slots_given:
                        w.use_engine_slots(fetch_llamacpp_slots(client, w.url))
                    report = w.feed(reading)
                except ScrapeError as exc:
                    report = w.error(str(exc))
                if report is not None:
                    reports.append(report)
            if reports:
                on_reports(reports)
                done += 1
                if iterations and done >= iterations:
                    return
            next_s += interval_s
            stop.wait(max(next_s - time.monotonic(), 0.0))
