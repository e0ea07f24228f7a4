"""SLO grammar and the rate search, on a fake service whose latency is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.bench.search import RateSearch, SloError, SloTerm, parse_slo, per_request_limits


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
