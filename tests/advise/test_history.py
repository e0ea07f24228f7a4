"""Baseline from history: the reserved count minimises the period's cost; bad sources and rows are reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenomy.advise.history import HourlyDemand, ReplicaEconomics, baseline, cost_curve_usd, hourly_demand
from tokenomy.advise.hourly import optimal_reserved
from tokenomy.cli.main import app
from tokenomy.gateway.config import load_config
from tokenomy.gateway.ledger import Attempt, Database

T0 = 1_760_000_000.0
DEPLOYMENT = ["--models", "llama-3.1-8b", "--gpus", "H100-SXM", "--precisions", "fp8"]


def brute_force_usd(demand: HourlyDemand, r: ReplicaEconomics, reserved: int) -> float:
    """The period's cost with `reserved` replicas, hour by hour in plain Python (no shared code with the module)."""
    total = demand.hours * reserved * r.reserved_usd_per_hour
    for rate, usd in zip(demand.rates_rps.tolist(), demand.api_usd.tolist(), strict=True):
        per_request = usd / (rate * 3600) if rate > 0 else 0.0
        rest = max(rate - reserved * r.capacity_rps, 0.0)
        full = math.floor(rest / r.capacity_rps)
        options = (
            math.ceil(rest / r.capacity_rps) * r.on_demand_usd_per_hour,
            full * r.on_demand_usd_per_hour + (rest - full * r.capacity_rps) * 3600 * per_request,
            rest * 3600 * per_request,
        )
        total += min(options)
    return total


def synthetic_history(seed: int, days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrivals with a business-hours peak, lengths drawn per request."""
    rng = np.random.default_rng(seed)
    shape = np.array([1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 9, 9, 10, 10, 9, 7, 5, 3, 2, 2, 1, 1, 1], dtype=float)
    counts = rng.poisson(np.tile(shape, days) * rng.uniform(20, 60))
    hours = np.repeat(np.arange(len(counts)), counts)
    arrival = np.sort(hours * 3600.0 + rng.random(len(hours)) * 3600.0)
    return arrival, rng.integers(100, 3000, len(arrival)), rng.integers(20, 600, len(arrival))


@pytest.mark.parametrize("seed", range(8))
def test_chosen_reserved_count_is_the_true_minimum(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    arrival, tin, tout = synthetic_history(seed, days=int(rng.integers(1, 4)))
    demand = hourly_demand(arrival, tin, tout, rng.uniform(0.1, 3.0), rng.uniform(0.4, 12.0), rng.uniform(5, 50))
    replica = ReplicaEconomics(rng.uniform(0.3, 2.0), 3.0, rng.uniform(1, 3), rng.uniform(3, 6))
    b = baseline(demand, replica)
    counts = range(b.peak_replicas + 4)  # past the peak too: more reserved replicas never help
    brute = [brute_force_usd(demand, replica, n) for n in counts]
    assert b.reserved == int(np.argmin(brute))
    assert b.hybrid_usd == pytest.approx(min(brute), rel=1e-9)
    assert b.cost_curve_usd == pytest.approx(brute[: b.peak_replicas + 1], rel=1e-9)
    # the hour-by-hour plan adds up to the chosen cost
    assert b.gpu_usd_by_hour.sum() + b.api_usd_by_hour.sum() == pytest.approx(b.hybrid_usd, rel=1e-9)
    assert b.hybrid_usd <= min(b.all_api_usd, b.self_hosted_usd, b.all_reserved_usd) + 1e-9


def test_an_interior_optimum_exists_among_the_cases() -> None:
    """Neither 0 nor the peak: reserved for the baseline, the peaks on demand or the API."""
    arrival, tin, tout = synthetic_history(1, days=2)
    demand = hourly_demand(arrival, tin, tout, 0.4, 1.6, 40)
    b = baseline(demand, ReplicaEconomics(1.0, 1.4, 2.0, 4.0))
    assert 0 < b.reserved < b.peak_replicas
    assert 0 < b.api_share < 1 or b.on_demand_by_hour.any()
    assert 0 < b.utilisation_of_max <= b.utilisation_of_capacity <= 1


def test_agrees_with_the_advisors_bisection_on_one_day() -> None:
    """advise/hourly.py finds the same count by bisection on S(R) (a different algorithm) for a flat API price."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        rates = rng.uniform(0, 40, 24) * np.r_[np.full(8, 0.2), np.ones(10), np.full(6, 0.4)]
        per_request = rng.uniform(1e-4, 2e-3)
        demand = HourlyDemand(rates, rates * 3600 * per_request, rates * 3600 * 1000, 24)
        replica = ReplicaEconomics(rng.uniform(1, 8), 10.0, rng.uniform(1, 3), rng.uniform(3, 6))
        b = baseline(demand, replica)
        expected = int(
            optimal_reserved(
                rates,
                replica.capacity_rps,
                replica.reserved_usd_per_hour,
                replica.on_demand_usd_per_hour,
                per_request,
            )
        )
        curve = cost_curve_usd(demand, replica, b.peak_replicas)
        # equal counts, or a tie in cost (bisection takes the largest of equals, argmin the smallest)
        assert b.reserved == expected or curve[expected] == pytest.approx(curve[b.reserved], rel=1e-12)


def test_hourly_demand_pads_to_whole_days_and_scales() -> None:
    arrival = np.array([0.0, 10.0, 3600.0 * 25 + 1])
    d = hourly_demand(arrival, np.array([1000, 1000, 2000]), np.array([100, 100, 200]), 1.0, 2.0, demand_scale=3)
    assert d.hours == 48 and d.observed_hours == 26 and d.days == 2
    assert d.requests == pytest.approx(9)
    assert d.api_usd[0] == pytest.approx(3 * 2 * (1000 * 1.0 + 100 * 2.0) / 1e6)
    assert d.api_usd_per_request[25] == pytest.approx((2000 * 1.0 + 200 * 2.0) / 1e6)
    assert d.tokens.sum() == pytest.approx(3 * 4400)


def test_break_even_volume_is_where_one_reserved_replica_matches_the_api() -> None:
    arrival, tin, tout = synthetic_history(2, days=1)
    demand = hourly_demand(arrival, tin, tout, 0.4, 1.6)
    replica = ReplicaEconomics(20.0, 30.0, 2.0, 4.0)
    b = baseline(demand, replica)
    per_request = demand.api_usd.sum() / demand.requests
    assert b.break_even_requests_per_day * per_request == pytest.approx(24 * 2.0, rel=1e-9)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A day of gateway traffic: 600 requests, one whose every attempt failed (cannot be used)."""
    rows = []
    for i in range(600):
        ts = T0 + i * 144.0
        rows.append(
            Attempt(
                request_id=f"r{i}",
                attempt=0,
                ts_s=ts,
                key_id="k",
                team="search",
                model="auto",
                request_class="simple" if i % 4 else "complex",
                p_complex=None,
                tier="gpu",
                upstream_model="llama-3.1-8b",
                stream=True,
                tokens_in=800 + i % 300,
                tokens_out=150 + i % 90,
                cost_usd=0.0002,
                ttft_s=0.2,
                e2e_s=2.0,
                status="ok" if i != 7 else "upstream_error",
                http_status=200 if i != 7 else 503,
                reason="",
            )
        )
    path = tmp_path / "ledger.sqlite"
    db = Database(str(path), tmp_path)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    return path


def test_cli_on_a_ledger_skips_the_unusable_row_and_emits_a_gateway_config(ledger: Path, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    args = ["advise", "--from-ledger", str(ledger), *DEPLOYMENT, "--apis", "OpenAI/gpt-4.1-mini"]
    r = CliRunner().invoke(app, [*args, "--requests-per-day", "2000000", "--emit-gateway-config", str(config)])
    assert r.exit_code == 0, r.output
    assert "1 requests skipped: no attempt returned tokens" in r.output
    assert "reserved baseline:" in r.output and "break-even" in r.output and "vs all-API" in r.output
    gw = load_config(config)
    assert gw.tiers[0].deployment is not None and gw.tiers[0].deployment.model == "llama-3.1-8b"
    assert gw.tiers[1].price == "OpenAI/gpt-4.1-mini"
    assert sorted(gw.tiers[0].classes) == ["complex", "simple"]
    r = CliRunner().invoke(app, [*args, "--requests-per-day", "2000000", "--json"])
    out = json.loads(r.stdout)
    assert out["source"]["requests"] == 599 and out["source"]["skipped"] == {
        "no attempt returned tokens (status not ok)": 1
    }
    assert out["requests_per_day"] == pytest.approx(2_000_000)
    curve = out["cost_by_reserved_usd"]
    assert out["usd"]["hybrid"] == min(curve) == curve[out["reserved"]]
    assert out["per_replica"]["capacity_rps"] == pytest.approx(
        out["per_replica"]["max_rps"] * out["per_replica"]["utilisation_planned"]
    )


def test_capacity_is_the_one_tokenomy_plan_reports(ledger: Path) -> None:
    r = CliRunner().invoke(app, ["advise", "--from-ledger", str(ledger), *DEPLOYMENT, "--json"])
    out = json.loads(r.stdout)
    isl, osl = out["deployment"]["isl"], out["deployment"]["osl"]
    p = CliRunner().invoke(
        app,
        [
            "plan",
            "--model",
            "llama-3.1-8b",
            "--gpu",
            "H100-SXM",
            "--precision",
            "fp8",
            "--isl",
            str(isl),
            "--osl",
            str(osl),
            "--json",
        ],
    )
    assert p.exit_code == 0, p.output
    plan = json.loads(p.stdout)
    plan = plan[0] if isinstance(plan, list) else plan
    assert out["per_replica"]["max_rps"] == pytest.approx(plan["max_requests_per_s_per_replica"], rel=1e-9)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.sqlite", None, "no such file"),
        ("notes.txt", "hello, this is not traffic\n", "unknown trace format"),
        ("broken.jsonl", '{"arrival_s": 0, "input_tokens": 5}\n', "output_tokens"),
    ],
)
def test_bad_source_is_one_line_naming_the_file(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    r = CliRunner().invoke(app, ["advise", "--from-ledger", str(path), *DEPLOYMENT])
    assert r.exit_code == 2
    assert name in r.output and expected in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_bad_options_are_named(ledger: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["advise", "--from-ledger", str(ledger), *DEPLOYMENT, "--apis", "OpenAI/gpt-4.1-mnii"])
    assert r.exit_code == 2 and "--apis" in r.output and "gpt-4.1-mini" in r.output
    r = runner.invoke(app, ["advise", "--from-ledger", str(ledger), *DEPLOYMENT, "--time-scale", "0"])
    assert r.exit_code == 2 and "--time-scale" in r.output
    r = runner.invoke(app, ["advise", "--from-ledger", str(ledger), *DEPLOYMENT, "--html", "x.html"])
    assert r.exit_code == 2 and "--html" in r.output
