"""Top tier only vs cheap tier first, per class: the advisor's chain choice and its break-even pass rate."""

from __future__ import annotations

import pytest

from tokenomy.advise.baselines import class_means
from tokenomy.advise.escalation import CHEAP_FIRST, TOP_ONLY, class_chain, proxy_pass_rate
from tokenomy.advise.search import api_usd_per_request

from .conftest import small_workload

NANO, BIG = "OpenAI/gpt-4.1-nano", "OpenAI/gpt-4.1"


def chat_class(**pass_rates: float):  # noqa: ANN202
    wl = small_workload(**{"classes.chat.pass_rates": pass_rates})
    return wl, next(c for c in wl.classes if c.name == "chat")


def test_a_cheap_tier_that_passes_often_enough_goes_first() -> None:
    wl, chat = chat_class(**{NANO: 0.7})
    nano = next(a for a in wl.apis if a.name == NANO)
    cheap_usd = api_usd_per_request(nano, *class_means(chat))
    top_usd = 20 * cheap_usd  # the advised tier costs 20× the cheap API per request
    out = class_chain(wl, chat, "chat-gpus", top_usd)
    assert out["choice"] == CHEAP_FIRST and out["cheap_tier"] == NANO and out["cheap_pass_rate_source"] == "workload"
    assert out["chain_usd_per_valid_answer"] == pytest.approx(cheap_usd + 0.3 * top_usd)
    assert out["top_usd_per_valid_answer"] == pytest.approx(top_usd)
    assert out["break_even_pass_rate"] == pytest.approx(1 / 20)  # c_cheap / c_top with a top tier that always passes


def test_below_the_break_even_pass_rate_the_top_tier_answers_alone() -> None:
    wl, chat = chat_class(**{NANO: 0.01})
    nano = next(a for a in wl.apis if a.name == NANO)
    top_usd = 20 * api_usd_per_request(nano, *class_means(chat))
    out = class_chain(wl, chat, "chat-gpus", top_usd)
    assert out["choice"] == TOP_ONLY and out["break_even_pass_rate"] > 0.01
    assert out["chain_usd_per_valid_answer"] > out["top_usd_per_valid_answer"]


def test_without_given_rates_the_quality_data_stands_in() -> None:
    wl, chat = chat_class()
    proxy = proxy_pass_rate(wl, NANO, chat.spec.quality)
    assert proxy is not None and 0 < proxy < 1
    out = class_chain(wl, chat, BIG, 1.0)  # an expensive top tier: any published cheap tier is worth a try
    assert out["cheap_pass_rate_source"] == "quality proxy" and out["cheap_pass_rate"] == pytest.approx(proxy)
    assert out["top_pass_rate"] == 1.0 and out["top_pass_rate_source"] == "assumed"


def test_the_advisors_class_costs_carry_the_choice(small_advice) -> None:
    from tokenomy.advise.output import class_costs

    costs = class_costs(small_advice)
    for entry in costs.values():
        chain = entry["escalation"]
        assert chain["choice"] in (CHEAP_FIRST, TOP_ONLY)
        assert chain["top_usd_per_valid_answer"] == pytest.approx(entry["usd_per_request"])
