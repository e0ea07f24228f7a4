"""Batch tiers: a class nobody waits on may go to a provider's Batch API at its discount; others never do."""

from __future__ import annotations

import numpy as np
import pytest

from tests.advise.conftest import small_workload
from tokenomy.advise.history import hourly_demand
from tokenomy.advise.search import _means, api_usd_per_request, cheapest_api, make_groups
from tokenomy.catalog.prices import BATCH_DISCOUNT, api_prices, batch_price


def test_batch_price_is_the_providers_discount_on_every_rate() -> None:
    for offer in api_prices():
        b = batch_price(offer)
        if offer.provider not in BATCH_DISCOUNT:
            assert b is None
            continue
        keep = 1 - BATCH_DISCOUNT[offer.provider]
        assert b is not None and b.name == offer.name
        assert b.usd_per_mtok_input == pytest.approx(offer.usd_per_mtok_input * keep)
        assert b.usd_per_mtok_output == pytest.approx(offer.usd_per_mtok_output * keep)
    assert BATCH_DISCOUNT["OpenAI"] == BATCH_DISCOUNT["Anthropic"] == 0.5


def test_a_class_without_latency_slo_gets_a_batch_tier_and_the_others_do_not() -> None:
    wl = small_workload(**{"classes.code.latency_slo": False})
    groups = {g.name: g for g in make_groups(wl)}
    code, chat, both = groups["code"], groups["chat"], groups["chat+code"]
    assert code.api is not None and code.api.batch
    realtime = cheapest_api(wl, code.classes[0])
    assert realtime is not None
    # both candidate APIs are OpenAI's (50% off), so the cheapest batch offering is the cheapest real-time one
    assert code.api.per_class["code"].name == realtime.name
    expected = 0.5 * api_usd_per_request(realtime, *_means(code.classes[0]))
    assert code.api.usd_per_request == pytest.approx(expected, rel=1e-9)
    assert chat.api is not None and not chat.api.batch  # chat has a latency SLO
    assert both.api is not None and not both.api.batch  # a tier serving chat too must answer in time


def test_batch_tiers_can_be_left_out_and_latency_classes_keep_real_time_prices() -> None:
    off = small_workload(**{"classes.code.latency_slo": False, "candidates.batch_apis": False})
    code = next(g for g in make_groups(off) if g.name == "code")
    assert code.api is not None and not code.api.batch
    on = next(g for g in make_groups(small_workload()) if g.name == "code")
    assert on.api is not None and not on.api.batch
    assert code.api.usd_per_request == pytest.approx(on.api.usd_per_request)


def test_history_prices_cached_input_at_the_cached_rate() -> None:
    arrival = np.array([0.0, 10.0, 4000.0])
    tin, tout, cached = np.array([1000, 2000, 500]), np.array([100, 100, 100]), np.array([400, 0, 900])
    full = hourly_demand(arrival, tin, tout, 2.0, 8.0)
    discounted = hourly_demand(
        arrival, tin, tout, 2.0, 8.0, cached_input_tokens=cached, api_usd_per_mtok_cached_input=0.5
    )
    saved = (400 + 500) * (2.0 - 0.5) / 1e6  # the third request's cached count is capped at its input
    assert full.api_usd.sum() - discounted.api_usd.sum() == pytest.approx(saved, rel=1e-12)
    # hour 0 holds the first two requests
    assert discounted.api_usd[0] == pytest.approx(((1000 + 2000) * 2 + 200 * 8 - 400 * 1.5) / 1e6)
    same = hourly_demand(arrival, tin, tout, 2.0, 8.0, cached_input_tokens=cached)  # no cached rate: no discount
    assert same.api_usd.sum() == pytest.approx(full.api_usd.sum())


def test_advise_recommends_the_batch_tier_and_keeps_it_out_of_the_gateway(tmp_path) -> None:  # noqa: ANN001
    from tests.advise.conftest import SIM_REQUESTS
    from tokenomy.advise.advisor import advise
    from tokenomy.advise.gateway import write_gateway_config
    from tokenomy.advise.output import build_report
    from tokenomy.advise.peak import peak_hour_fleet

    wl = small_workload(**{"classes.code.latency_slo": False})
    advice = advise(wl, verify=4, sim_requests=SIM_REQUESTS, seed=0)
    report = build_report(advice, [], peak_hour_fleet(advice, minutes=3), {"total_s": 0.0})
    data = report.model_dump(mode="json")
    tiers = {t["name"]: t for t in data["recommendation"]["tiers"]}
    batch = [t for t in tiers.values() if t["kind"] == "batch"]
    assert [t["classes"] for t in batch] == [["code"]]
    code = next(g for g in make_groups(wl) if g.name == "code")
    assert batch[0]["usd_per_day"] == pytest.approx(code.api_usd_per_day(), rel=1e-9)
    path = tmp_path / "gateway.yaml"
    config = write_gateway_config(data, wl, path)  # validated by the gateway's own schema
    assert all("complex" not in t["classes"] for t in config["tiers"])  # code's gateway class goes to no tier
    assert "go to the Batch API of" in path.read_text()
