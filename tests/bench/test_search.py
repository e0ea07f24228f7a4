"""SLO grammar, the rate search and its steady-state probes, on fake services whose latency is known (virtual
clocks: no test here waits on the wall clock)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.bench.search import (
    MIN_WINDOW_ARRIVALS,
    STEADY_MULTIPLE,
    CapacitySettings,
    Probe,
    ProbeSize,
    RateSearch,
    SloError,
    SloTerm,
    at_exact_rate,
    find_capacity,
    judge_probe,
    parse_slo,
    per_request_limits,
    probe_size,
    window_stats,
)


def test_slo_grammar_reads_metrics_statistics_and_units() -> None:
    terms = parse_slo("ttft_p99<=2s, tpot_p99<=50ms,itl_mean<300us,e2e_p99.9<=1.5s")
    assert terms == [
        SloTerm("ttft", "p99", 2.0),
        SloTerm("tpot", "p99", 0.05),
        SloTerm("itl", "mean", 300e-6, strict=True),
        SloTerm("e2e", "p99.9", 1.5),
    ]
    assert [t.key for t in terms] == ["ttft_p99", "tpot_p99", "itl_mean", "e2e_p99.9"]
    assert per_request_limits(terms + [SloTerm("ttft", "p50", 1.0)]) == {
        "ttft": 1.0,
        "tpot": 0.05,
        "itl": 300e-6,
        "e2e": 1.5,
    }


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("ttft_p99<=2", "unit '(none)'"),
        ("ttft_p99<=2h", "unit 'h'"),
        ("latency_p99<=2s", "unknown metric 'latency'"),
        ("ttft_p99>=2s", "cannot read 'ttft_p99>=2s'"),
        ("ttft_p99<=2s,,tpot_p99<=1s", "empty term"),
        ("ttft_p101<=2s", "percentile 'p101'"),
        ("ttft_p99<=0s", "positive"),
        ("ttft_p99<=2s,tpot<=50ms", "cannot read 'tpot<=50ms'"),
    ],
)
def test_bad_slo_says_which_part(text: str, names: str) -> None:
    with pytest.raises(SloError, match=None) as err:
        parse_slo(text)
    assert names in str(err.value)


def test_statistics_of_samples() -> None:
    samples = np.arange(1, 101, dtype=float)
    assert SloTerm("ttft", "p99", 1.0).value(samples) == pytest.approx(99.01)  # as np.percentile (linear)
    assert SloTerm("ttft", "mean", 1.0).value(samples) == 50.5
    assert math.isinf(SloTerm("ttft", "mean", 1.0).value(np.zeros(0)))
    assert SloTerm("ttft", "p99", 2.0).met_by(2.0) and not SloTerm("ttft", "p99", 2.0, strict=True).met_by(2.0)


def run_search(capacity_rps: float, **kwargs: float) -> RateSearch:
    """Search against a fake service that meets the SLO below `capacity_rps`."""
    search = RateSearch(**kwargs)
    rate = search.next_rate()
    while rate is not None:
        search.record(rate, rate <= capacity_rps)
        rate = search.next_rate()
    return search


@pytest.mark.parametrize("capacity", [0.3, 1.0, 7.3, 123.0])
def test_search_brackets_the_capacity_within_tolerance(capacity: float) -> None:
    s = run_search(capacity, start_rps=1.0, max_probes=20, rel_tol=0.05)
    assert s.best_ok is not None and s.lowest_fail is not None
    assert s.best_ok <= capacity < s.lowest_fail
    assert s.lowest_fail / s.best_ok <= 1.05
    assert len(s.probes) <= 20


def test_search_stops_at_its_probe_budget_and_bounds() -> None:
    assert len(run_search(1000.0, start_rps=1.0, max_probes=4).probes) == 4
    s = run_search(1e9, start_rps=1.0, max_rps=10.0)
    assert s.best_ok == 10.0 and s.lowest_fail is None  # passes at the upper bound: stops there
    s = run_search(0.001, start_rps=1.0, min_rps=0.1)
    assert s.best_ok is None and s.lowest_fail == pytest.approx(0.1)
    assert s.outcome()["best_rate_rps"] is None
    with pytest.raises(ValueError):
        RateSearch(min_rps=5, max_rps=1)


# ---------------------------------------------------------------- probes that run to steady state (virtual clock)


def fifo_queue(arrival_s: np.ndarray, service_s: float) -> np.ndarray:
    """Finish times of a one-server FIFO queue with a fixed service time: a service of known capacity 1/service_s."""
    finish = np.empty_like(arrival_s)
    free = 0.0
    for i, a in enumerate(arrival_s):
        free = max(free, a) + service_s
        finish[i] = free
    return finish


def queue_probe(service_s: float, terms: list[SloTerm], seed: int = 0):
    """A probe on the FIFO queue: Poisson arrivals over size.duration_s, judged on the window after the warm-up."""

    def probe(size: ProbeSize) -> Probe:
        rng = np.random.default_rng(seed)
        arrival = at_exact_rate(np.cumsum(rng.exponential(1 / size.rate_rps, size.requests)), size.rate_rps)
        finish = fifo_queue(arrival, service_s)
        stats = window_stats(arrival, finish, size.warmup_s, float(arrival[-1]))
        e2e = (finish - arrival)[stats.measured]
        values = {t.key: t.value(e2e) for t in terms}
        return judge_probe(size.rate_rps, stats, values, terms, failed=0, mean_latency_s=float(e2e.mean()))

    return probe


def test_probe_size_covers_several_in_flight_generations_after_a_warm_up() -> None:
    size = probe_size(rate_rps=50.0, latency_s=2.0, min_window_s=1.0)
    in_flight = 50.0 * 2.0  # Little's law
    assert size.window_s * size.rate_rps >= STEADY_MULTIPLE * in_flight
    assert size.warmup_s >= 2 * 2.0 and size.requests >= size.rate_rps * size.duration_s
    assert probe_size(1000.0, 0.001, 0.5).window_s == 0.5  # the shortest window when nothing needs longer
    assert probe_size(1.0, 0.001, 0.5).requests >= MIN_WINDOW_ARRIVALS  # enough arrivals to judge the served rate


def test_window_counts_arrivals_completions_and_what_is_in_flight() -> None:
    arrival = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    finish = np.array([0.5, 2.5, np.nan, 3.5, 6.0])  # the third never finished
    w = window_stats(arrival, finish, 1.0, 5.0)
    assert w.arrivals == 4 and w.completions == 2  # 2.5 and 3.5 (6.0 is after the window)
    assert w.in_flight == pytest.approx((1.5 + 3.0 + 0.5 + 1.0) / 4.0)
    assert w.offered_rps == 1.0
    # mean in flight (1.5 + 1 + 0 + 0) / 2 over [1, 3], (0 + 2 + 0.5 + 1) / 2 over [3, 5]: the backlog grew by
    # 0.5 in half a window (2 s), so 0.25 req/s of the 1.0 offered was not served
    assert w.backlog_growth == pytest.approx(0.5) and w.served_rps == pytest.approx(0.75)
    assert list(w.measured) == [False, True, True, True, True]


def test_a_burst_above_capacity_is_not_a_pass_however_loose_the_slo() -> None:
    """The old search's failure: 200 requests at 3× capacity meet a loose SLO; served is a third of offered."""
    service_s, terms = 0.01, parse_slo("e2e_p99<=10s")  # capacity 100 req/s
    p = queue_probe(service_s, terms)(ProbeSize(300.0, 0.0, 200 / 300.0))
    assert p.values_s["e2e_p99"] <= 10.0  # the latency terms alone would pass
    assert not p.ok and p.served_rps == pytest.approx(100.0, rel=0.1)
    assert any(r.startswith("served ") and "of the" in r and "needs 95%" in r for r in p.reasons)


def test_each_reason_a_probe_failed_is_named() -> None:
    stats = window_stats(np.arange(100.0), np.arange(100.0) + 0.5, 0.0, 99.0)
    terms = parse_slo("ttft_p99<=1s,tpot_p90<=50ms")
    p = judge_probe(1.0, stats, {"ttft_p99": 1.2, "tpot_p90": 0.04}, terms, failed=3)
    assert p.reasons == ["SLO missed: ttft_p99 1.2 s > 1 s", "3 of 100 measured requests failed"]
    assert judge_probe(1.0, stats, {"ttft_p99": 0.2, "tpot_p90": 0.04}, terms, failed=3, max_error_rate=0.05).ok
    assert p.as_dict()["reasons"] == p.reasons and p.as_dict()["served_fraction"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("service_s", [0.01, 0.05])
def test_find_capacity_lands_below_a_queues_capacity_and_within_tolerance(service_s: float) -> None:
    """A FIFO queue of capacity 1/service_s and an SLO on E2E p99 of 20 service times: the highest passing
    rate is where the queue's p99 reaches the limit, below capacity; the search brackets it within rel_tol."""
    terms = parse_slo(f"e2e_p99<={20 * service_s}s")
    settings = CapacitySettings(start_rps=1.0, max_probes=20, rel_tol=0.05, min_window_s=5.0)
    search = find_capacity(queue_probe(service_s, terms), settings, latency_s=service_s)
    capacity = 1 / service_s
    assert search.best_ok is not None and search.lowest_fail is not None
    # at most 5% over capacity: the served-rate check tolerates a backlog of 5% of the arrivals
    assert 0.6 * capacity <= search.best_ok <= 1.05 * capacity
    assert search.lowest_fail / search.best_ok <= 1.05
    for p in search.probes:
        assert p.ok or p.reasons  # a failed probe says why
        assert p.measured_requests >= MIN_WINDOW_ARRIVALS


def test_a_probe_too_short_for_steady_state_is_run_again_longer() -> None:
    sizes: list[ProbeSize] = []
    base = queue_probe(0.01, parse_slo("e2e_p99<=1s"))

    def probe(size: ProbeSize) -> Probe:
        sizes.append(size)
        p = base(size)
        if len(sizes) == 1:
            p.steady, p.ok = False, False  # as if the first window were too short
        return p

    search = find_capacity(probe, CapacitySettings(start_rps=50.0, max_probes=1), latency_s=0.01)
    assert len(sizes) == 2 and sizes[1].window_s > sizes[0].window_s
    assert len(search.probes) == 1 and search.probes[0].ok  # the rerun is the one that counts


def test_a_probe_offers_exactly_its_rate() -> None:
    arrival = np.cumsum(np.random.default_rng(3).exponential(1 / 7.0, 200))
    exact = at_exact_rate(arrival, 7.0)
    assert exact[-1] == pytest.approx(200 / 7.0)
    assert np.allclose(np.diff(exact) / np.diff(arrival), exact[-1] / arrival[-1])  # the same gaps, scaled
