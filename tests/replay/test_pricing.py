"""One rule prices self-hosted tokens in the ledger and in replay; cached input tokens at the cached-input rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.replay.test_replay import T0, attempt
from tokenomy.catalog.prices import (
    SELF_HOSTED_PRICING_ISL,
    SELF_HOSTED_PRICING_OSL,
    SELF_HOSTED_UTILISATION,
    TokenPrices,
    api_prices,
)
from tokenomy.cli.main import app
from tokenomy.costmodel.resolve import DeploymentSpec as Spec
from tokenomy.costmodel.resolve import resolve
from tokenomy.gateway.config import TierConfig, TierDeployment
from tokenomy.gateway.ledger import Database, usage_details
from tokenomy.gateway.router import self_hosted_deployment, tier_prices
from tokenomy.replay.alternatives import Alternative, fleet_from_file
from tokenomy.replay.compare import tier_prices as replay_tier_prices
from tokenomy.replay.run import replay
from tokenomy.replay.sources import read_source, time_scaled
from tokenomy.sim.fleet import GpuTier

OFFER = "OpenAI/gpt-4.1-mini"


def test_gateway_defaults_are_the_rules_defaults() -> None:
    spec = TierDeployment(model="llama-3.1-8b")
    assert (spec.utilisation, spec.pricing_isl, spec.pricing_osl) == (
        SELF_HOSTED_UTILISATION,
        SELF_HOSTED_PRICING_ISL,
        SELF_HOSTED_PRICING_OSL,
    )


@pytest.mark.parametrize(("gpu", "precision"), [("H100-SXM", "fp8"), ("L4", "int4")])
def test_ledger_and_replay_price_a_self_hosted_token_alike(gpu: str, precision: str) -> None:
    spec = TierDeployment(model="llama-3.1-8b", gpu=gpu, precision=precision)
    tier = TierConfig(name="small", url="http://x/v1", model="m", classes=["simple"], deployment=spec)
    gateway = tier_prices(tier, self_hosted_deployment(tier))
    d = resolve(Spec(model="llama-3.1-8b", gpu=gpu, tp=1, precision=precision)).deployment
    replayed = replay_tier_prices(GpuTier("small", d, replicas=2))  # on demand: the gateway's default price
    assert replayed.usd_per_mtok_input == pytest.approx(gateway.usd_per_mtok_input, rel=1e-12)
    assert replayed.usd_per_mtok_output == pytest.approx(gateway.usd_per_mtok_output, rel=1e-12)
    assert gateway.usd_per_mtok_output > gateway.usd_per_mtok_input > 0
    # a lower planned utilisation spreads the same $/hour over fewer tokens
    assert replay_tier_prices(GpuTier("s", d, billing_utilisation=0.35)).usd_per_mtok_input == pytest.approx(
        2 * replayed.usd_per_mtok_input, rel=1e-9
    )


def test_cached_input_tokens_cost_the_cached_rate_in_gateway_and_catalogue() -> None:
    offer = next(p for p in api_prices() if p.name == OFFER)
    assert offer.usd_per_mtok_cached_input is not None and offer.usd_per_mtok_cached_input < offer.usd_per_mtok_input
    tier = TierConfig(name="api", url="http://x/v1", model="m", classes=["simple"], price=OFFER)
    gateway = tier_prices(tier, None)
    by_hand = 600 * offer.usd_per_mtok_input + 400 * offer.usd_per_mtok_cached_input + 50 * offer.usd_per_mtok_output
    assert gateway.usd(1000, 50, 400) == pytest.approx(by_hand / 1e6, rel=1e-12)
    assert gateway.usd(1000, 50) == pytest.approx(
        (1000 * offer.usd_per_mtok_input + 50 * offer.usd_per_mtok_output) / 1e6
    )
    catalogue = TokenPrices(offer.usd_per_mtok_input, offer.usd_per_mtok_output, offer.usd_per_mtok_cached_input)
    assert catalogue.usd(1000, 50, 400) == pytest.approx(gateway.usd(1000, 50, 400), rel=1e-12)
    assert catalogue.usd(10, 5, 400) == pytest.approx(catalogue.usd(10, 5, 10))  # no more cached than input
    assert TokenPrices(1.0, 2.0).usd(1000, 0, 400) == pytest.approx(1000 / 1e6)  # no cached rate: billed as input


def test_usage_details_read_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 900,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 512},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    assert usage_details(usage) == {"cached_tokens_in": 512, "reasoning_tokens_out": 200}
    assert usage_details({"prompt_tokens": 5}) == {}
    assert usage_details(None) == {}
    assert usage_details({"prompt_tokens_details": {"cached_tokens": -1}, "completion_tokens_details": None}) == {}
    assert usage_details({"prompt_tokens_details": {"cached_tokens": True}}) == {}


def test_replay_bills_the_ledgers_cached_tokens_at_the_cached_rate(tmp_path: Path) -> None:
    offer = next(p for p in api_prices() if p.name == OFFER)
    rng = np.random.default_rng(5)
    rows = []
    for i in range(50):
        tin, tout = int(rng.integers(200, 900)), int(rng.integers(10, 100))
        cached = int(rng.integers(0, tin)) if i % 2 else None  # half the rows: no cached count (NULL)
        rows.append(
            attempt(f"r{i}", 0, T0 + i, "t", tin, tout, cached_tokens_in=cached, reasoning_tokens_out=tout // 2)
        )
    path = tmp_path / "ledger.sqlite"
    db = Database(str(path), tmp_path)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    rep = read_source(str(path))
    cached = rep.cached_input_tokens
    assert cached is not None and cached.sum() == sum(r.cached_tokens_in or 0 for r in rows)
    assert rep.reasoning_tokens is not None and rep.reasoning_tokens.sum() == sum(r.tokens_out // 2 for r in rows)
    fleet = tmp_path / "api.yaml"
    fleet.write_text(f'tiers:\n  - {{name: api, api: {OFFER}}}\nroutes:\n  "*": [api]\n')
    _, on_api = replay(rep, [Alternative("api", fleet_from_file(fleet))], None, workers=1)
    w = rep.workload
    expected = (
        (w.input_tokens - cached).sum() * offer.usd_per_mtok_input
        + cached.sum() * offer.usd_per_mtok_cached_input
        + w.output_tokens.sum() * offer.usd_per_mtok_output
    ) / 1e6
    assert on_api.usd == pytest.approx(expected, rel=1e-9)
    assert on_api.fleet_usd is not None and on_api.fleet_usd > on_api.usd  # the fleet bill knows no cache discount


def test_time_scaled_replay_multiplies_every_time(tmp_path: Path) -> None:
    rows = [attempt(f"r{i}", 0, T0 + 0.5 * i, "t", 100, 10, ttft_s=0.01, e2e_s=0.1) for i in range(5)]
    path = tmp_path / "ledger.sqlite"
    db = Database(str(path), tmp_path)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    rep = time_scaled(read_source(str(path)), 4.0)
    assert rep.workload.arrival_s.tolist() == pytest.approx([0, 2, 4, 6, 8])
    assert rep.actual_ttft_s.tolist() == pytest.approx([0.04] * 5)
    assert rep.actual_e2e_s.tolist() == pytest.approx([0.4] * 5)


def test_cli_time_scale_and_fleet_bill(tmp_path: Path) -> None:
    rows = [attempt(f"r{i}", 0, T0 + 0.5 * i, "t", 100, 10) for i in range(5)]
    db = Database(str(tmp_path / "ledger.sqlite"), tmp_path)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    fleet = tmp_path / "gpu.yaml"
    fleet.write_text('tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: L4}\nroutes:\n  "*": [gpu]\n')
    args = ["replay", str(tmp_path / "ledger.sqlite"), "--fleet", str(fleet), "--workers", "1"]
    bad = CliRunner().invoke(app, [*args, "--time-scale", "0"])
    assert bad.exit_code != 0 and "--time-scale must be positive" in bad.output and "Traceback" not in bad.output
    ok = CliRunner().invoke(app, [*args, "--time-scale", "2", "--json"])
    assert ok.exit_code == 0, ok.output
    gpu = json.loads(ok.output)["figures"][1]
    assert gpu["fleet_usd"] > gpu["usd"] > 0  # one L4 idle most of the 4 s: its bill exceeds its tokens' price
