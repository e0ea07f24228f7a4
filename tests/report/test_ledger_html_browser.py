"""The ledger report page, from a summary of synthetic ledger rows, rendered offline in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tokenomy.gateway.config import parse_config
from tokenomy.gateway.report import ledger_summary
from tokenomy.report.ledger_html import RATE_ID, SPEND_ID, TEAM_ID, VALID_ID, WHAT_IF_ID, ledger_report

CONFIG = parse_config(
    {
        "tiers": [
            {
                "name": "small",
                "url": "http://127.0.0.1:1/v1",
                "model": "small",
                "classes": ["simple"],
                "deployment": {"model": "llama-3.1-8b", "precision": "int4"},
            },
            {
                "name": "api",
                "url": "http://127.0.0.1:2/v1",
                "model": "gpt-4.1",
                "classes": ["simple", "complex"],
                "price": "OpenAI/gpt-4.1",
            },
        ]
    }
)


def rows() -> list[dict]:
    out = []
    for i in range(300):
        hard = i % 4 == 0
        tier = "api" if hard else "small"
        usd = (500 * (2.0 if hard else 0.04) + 120 * (8.0 if hard else 0.15)) / 1e6
        out.append(
            {
                "request_id": f"r{i}",
                "attempt": 0,
                "ts_s": 1_700_000_000.0 + i * 30,
                "key_id": "k",
                "team": f"team-{i % 3}",
                "model": "auto",
                "request_class": "complex" if hard else "simple",
                "p_complex": 0.5,
                "tier": tier,
                "upstream_model": tier,
                "stream": 1,
                "tokens_in": 500,
                "tokens_out": 120,
                "cost_usd": usd,
                "ttft_s": 0.1,
                "e2e_s": 1.0,
                "status": "ok",
                "http_status": 200,
                "reason": "",
            }
        )
    return out


@pytest.fixture(scope="module")
def summary() -> dict:
    return ledger_summary(CONFIG, rows())


def test_summary_and_page(summary: dict) -> None:
    assert summary["savings"]["reference_tier"] == "api" and summary["savings"]["fraction_saved"] > 0.5
    assert len(summary["workload"]["requests_per_hour"]) == 3  # 300 requests 30 s apart span 3 UTC hours
    page = ledger_report(summary)
    assert set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page)) == {
        TEAM_ID,
        SPEND_ID,
        RATE_ID,
        WHAT_IF_ID,
    }


@pytest.mark.browser
def test_ledger_report_renders_offline_in_chromium(summary: dict, render_offline, tmp_path: Path) -> None:
    path = tmp_path / "ledger.html"
    path.write_text(ledger_report(summary))
    assert set(render_offline(path, "ledger_report.png")) == {TEAM_ID, SPEND_ID, RATE_ID, WHAT_IF_ID}


def validated_rows() -> list[dict]:
    """rows() plus 100 validated complex requests: small first (70% pass), big after a failure."""
    out = rows()
    for i in range(100):
        passed_small = i % 10 < 7
        base = {**out[0], "request_class": "complex", "ts_s": 1_700_000_000.0 + i, "tokens_in": 400, "tokens_out": 50}
        small = {**base, "request_id": f"v{i}", "attempt": 0, "tier": "small", "cost_usd": 1e-5}
        small["validation"] = "pass" if passed_small else "fail"
        attempts = [small]
        if not passed_small:
            attempts.append({**small, "attempt": 1, "tier": "api", "cost_usd": 1.2e-3, "validation": "pass"})
        final = attempts[-1]
        final.update(
            request_usd=sum(a["cost_usd"] for a in attempts),
            final_tier=final["tier"],
            escalations=len(attempts) - 1,
            passed=1,
        )
        out += attempts
    return out


@pytest.fixture(scope="module")
def validated_summary() -> dict:
    return ledger_summary(CONFIG, validated_rows())


def test_validation_summary(validated_summary: dict) -> None:
    v = validated_summary["validation"]
    c = v["by_class"]["complex"]
    assert v["requests"] == 100 and c["valid"] == 100
    assert c["escalation_rate"] == pytest.approx(0.3)
    assert c["usd_per_valid_answer"] == pytest.approx(1e-5 + 0.3 * 1.2e-3)
    assert v["by_class_and_tier"]["complex"]["small"]["pass_rate"] == pytest.approx(0.7)
    assert c["top_tier"] == "api" and c["top_tier_pass_rate"] == 1.0
    assert c["top_tier_usd_per_valid_answer"] > 2 * c["usd_per_valid_answer"]
    page = ledger_report(validated_summary)
    assert VALID_ID in page and "Validate and escalate" in page


@pytest.mark.browser
def test_ledger_report_with_validation_renders_offline_in_chromium(
    validated_summary: dict, render_offline, tmp_path: Path
) -> None:
    path = tmp_path / "ledger_validated.html"
    path.write_text(ledger_report(validated_summary))
    assert set(render_offline(path, "ledger_report_validated.png")) == {
        TEAM_ID,
        SPEND_ID,
        RATE_ID,
        WHAT_IF_ID,
        VALID_ID,
    }


def test_page_shows_real_times_no_python_dict_and_the_busiest_window_as_peak() -> None:
    """A 5-minute ledger with a one-minute burst at 12.5 req/s: the peak is the burst, not the 2.5 req/s mean."""
    base = rows()[0]
    burst = [{**base, "request_id": f"b{i}", "ts_s": 1_700_000_000.0 + 120 + i * 0.08} for i in range(750)]
    edges = [{**base, "request_id": f"e{i}", "ts_s": 1_700_000_000.0 + t} for i, t in enumerate((0.0, 300.0))]
    summary = ledger_summary(CONFIG, burst + edges)
    assert len(burst + edges) / 300 == pytest.approx(2.5, rel=0.01)  # the ledger's mean rate
    w = summary["workload"]
    assert w["peak_requests_per_s"] == pytest.approx(12.5, rel=0.02)
    page = ledger_report(summary)
    assert "since the epoch" not in page and "2023-11-14" in page  # a real UTC time on the rate chart
    assert "{'simple'" not in page and "{&#x27;simple" not in page  # classes as a table, not a Python dict
    assert "busiest 60-second window" in page


def test_a_negative_saving_reads_as_costing_more() -> None:
    summary = ledger_summary(CONFIG, rows())
    summary["savings"] = {**summary["savings"], "usd_saved": -1.16, "fraction_saved": -11.6}
    page = ledger_report(summary)
    assert "costs 12.6× more" in page and "-1160%" not in page
