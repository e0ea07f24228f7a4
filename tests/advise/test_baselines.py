"""Savings and break-even: the numbers agree with each other and with their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.advise.baselines import api_usd_per_day, break_even, most_capable_api, static_capacity
from tokenomy.advise.hourly import daily_cost_usd
from tokenomy.costmodel.economics import DAYS_PER_MONTH


def test_savings_are_one_minus_plan_over_baseline(small_report) -> None:
    plan = small_report["recommendation"]["usd_per_day"]["simulated"]
    assert small_report["recommendation"]["usd_per_month"]["simulated"] == pytest.approx(plan * DAYS_PER_MONTH)
    for key, base in (("vs_all_api", "all_api"), ("vs_fp16_static", "fp16_static")):
        other = small_report["baselines"][base]["usd_per_day"]
        saving = small_report["savings"][key]
        assert saving["fraction"] == pytest.approx(1 - plan / other)
        assert saving["usd_per_day"] == pytest.approx(other - plan)


def test_the_most_capable_api_is_the_best_published_on_the_floor_benchmarks(small_advice, small_report) -> None:
    api = most_capable_api(small_advice.workload)
    assert api.name == small_report["baselines"]["all_api"]["api"] == "OpenAI/gpt-4.1"
    expected = api_usd_per_day(small_advice.workload.classes, lambda c: api)
    assert small_report["baselines"]["all_api"]["usd_per_day"] == pytest.approx(expected)


def test_fp16_static_baseline_is_simulated_and_reports_its_attainment(small_report) -> None:
    b = small_report["baselines"]["fp16_static"]
    assert len(b["tiers"]) == 2
    for t in b["tiers"]:
        assert "fp16" in t["deployment"] and "static batch" in t["deployment"]
        assert 0 <= t["slo_attainment_simulated"] <= 1
    assert b["usd_per_day"] == pytest.approx(sum(t["usd_per_day"] for t in b["tiers"]))


@pytest.mark.parametrize("which", ["vs_most_capable_api", "vs_cheapest_floor_meeting_api"])
def test_at_the_break_even_volume_self_hosting_and_the_api_cost_the_same(small_report, which: str) -> None:
    be = small_report["break_even"][which]
    assert be is not None and be["requests_per_day"] > 0
    assert not be["at_step"]
    assert be["self_hosted_usd_per_day"] == pytest.approx(be["api_usd_per_day"], rel=0.01)


def test_break_even_recomputed_from_its_definition(small_advice) -> None:
    """Just below the break-even volume the API is cheaper; at it, self-hosting is not dearer."""
    api = most_capable_api(small_advice.workload)
    be = break_even(small_advice, lambda c: api, api.name)
    tiers = [t for t in small_advice.tiers if t.row is not None]
    table = small_advice.table

    def self_hosted(v: float) -> float:
        return sum(
            float(
                daily_cost_usd(
                    t.group.rates_rps * v,
                    t.capacity_rps,
                    table.usd_reserved[t.row],
                    table.usd_on_demand[t.row],
                    math.inf,
                )[0]
            )
            for t in tiers
        )

    classes = tuple(c for t in tiers for c in t.group.classes)
    below = be.scale * 0.99
    assert self_hosted(below) > api_usd_per_day(classes, lambda c: api, below)
    assert self_hosted(be.scale) <= api_usd_per_day(classes, lambda c: api, be.scale) * 1.0001


def test_static_batching_queue_is_loaded_until_its_tail_wait_is_one_batch() -> None:
    rate, ttft = static_capacity(batch=8, batch_s=4.0, prefill_s=0.5, attainment=0.99)
    assert 0 < rate < 8 / 4.0  # below the saturation throughput b / T(b)
    assert 4.0 < ttft <= 4.0 + 0.5 + 1e-9  # the tail wait is at most one batch run
    assert np.isfinite(ttft)
