"""80% intervals: quantiles of log residuals per pool, wider pools where a pool is thin (and saying so)."""

import numpy as np
import pytest

from tokenomy.costmodel.intervals import (
    accelerator_family,
    build_residual_table,
    interval_80,
    interval_80_for,
    model_family,
    shipped_residual_table,
)


@pytest.mark.parametrize(
    ("gpu", "family"),
    [
        ("H100-SXM", "hopper"),
        ("GH200", "hopper"),
        ("B200", "blackwell"),
        ("GB200", "blackwell"),
        ("RTX-PRO-6000", "blackwell-gddr"),
        ("A100-SXM-80GB", "ampere"),
        ("L40S", "ada"),
        ("MI300X", "amd-cdna3"),
        ("my-host", "my-host"),
    ],
)
def test_accelerator_family(gpu, family):
    assert accelerator_family(gpu) == family


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("llama-3.1-70b", "llama"),
        ("llama-4-maverick-17b-128e", "llama-4-moe"),
        ("mixtral-8x7b", "mixtral-moe"),
        ("mistral-7b", "mistral"),
        ("qwen3-30b-a3b", "qwen3-moe"),
        ("qwen3-8b", "qwen"),
        ("gpt-oss-120b", "gpt-oss-moe"),
    ],
)
def test_model_family(model, family):
    assert model_family(model) == family


def test_interval_from_the_narrowest_pool_with_enough_residuals():
    rng = np.random.default_rng(0)
    residuals = [("mean_ttft", "hopper", "llama", r) for r in rng.normal(0.1, 0.2, 200)]
    residuals += [("mean_ttft", "ampere", "llama", r) for r in rng.normal(-0.5, 0.05, 4)]
    table = build_residual_table(residuals, min_rows=10)
    iv = table.interval("mean_ttft", "hopper", "llama", 1.0)
    assert iv.pool == "mean_ttft|hopper|llama" and not iv.note
    assert iv.lo == pytest.approx(np.exp(0.1 - 1.2816 * 0.2), rel=0.08)
    assert iv.hi == pytest.approx(np.exp(0.1 + 1.2816 * 0.2), rel=0.08)
    thin = table.interval("mean_ttft", "ampere", "llama", 1.0)  # 4 rows: falls back to the llama-wide pool
    assert thin.pool == "mean_ttft|*|llama" and "has 4" in thin.note
    other = table.interval("mean_itl", "hopper", "llama", 2.0)  # no ITL residuals: the kind, then all metrics
    assert other.pool == "*|*|*" and other.n == 204


def test_empirical_coverage_of_a_table_on_fresh_draws_is_near_80_percent():
    rng = np.random.default_rng(7)
    table = build_residual_table([("m", "a", "b", r) for r in rng.normal(0, 0.3, 3000)])
    fresh = rng.normal(0, 0.3, 5000)
    iv = table.interval("m", "a", "b", 1.0)
    coverage = np.mean((np.exp(fresh) >= iv.lo) & (np.exp(fresh) <= iv.hi))
    assert 0.75 <= coverage <= 0.85


def test_table_round_trips_through_its_dict():
    table = build_residual_table([("m", "a", "b", r) for r in np.linspace(-1, 1, 21)])
    again = type(table).from_dict(table.to_dict())
    assert again.interval("m", "a", "b", 3.0) == table.interval("m", "a", "b", 3.0)


def test_shipped_table_gives_plan_and_simulate_an_interval():
    if shipped_residual_table() is None:
        pytest.skip("catalog/data/residual_quantiles.json not generated (scripts/fit_profiles.py)")
    iv = interval_80("output_throughput", "hopper", "llama", 1000.0)
    assert iv is not None and iv.lo < 1000.0 < iv.hi
    assert interval_80_for("output_throughput", "H200-SXM", "llama-3.1-8b", 1000.0) == iv
