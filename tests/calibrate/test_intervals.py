"""80% intervals: bands of out-of-sample log residuals per pool; a thin pool (few rows or few groups) gives way to
its metric's band pooled over groups, and says so; the cross-validation's coverage figure is nested."""

import math
from fractions import Fraction

import numpy as np
import pytest

from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.validate import CrossValidation, cv_report
from tokenomy.costmodel.intervals import (
    MIN_GROUPS,
    MIN_POOLED_GROUPS,
    Residual,
    ResidualTable,
    accelerator_family,
    build_residual_table,
    conformal_ranks,
    interval_80,
    interval_80_for,
    model_family,
    pool_keys,
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
        ("MI325X", "amd-cdna3"),
        ("MI355X", "amd-cdna4"),
        ("B300", "blackwell"),
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


def grouped_residuals(rng, metric, accel, model, groups, rows_per_group, shift_sd, noise_sd, tag=""):
    """Residuals of `groups` groups of one cell: each group shifted by its own N(0, shift_sd), rows scattered by
    N(0, noise_sd) around that, as rows of one source share a bias and a new source brings its own."""
    out = []
    for g in range(groups):
        shift = rng.normal(0.0, shift_sd)
        for i in range(rows_per_group):
            out.append(Residual(metric, accel, model, shift + rng.normal(0.0, noise_sd), f"{tag}{g}-{i}", f"{tag}{g}"))
    return out


def test_a_rich_own_pool_gives_its_own_band():
    rng = np.random.default_rng(0)
    table = build_residual_table(grouped_residuals(rng, "mean_ttft", "hopper", "llama", 8, 25, 0.02, 0.2))
    iv = table.interval("mean_ttft", "hopper", "llama", 1.0)
    assert iv.pool == "mean_ttft|hopper|llama" and not iv.thin and not iv.note and iv.n == 200
    assert math.log(iv.lo) == pytest.approx(-1.2816 * 0.2, abs=0.06)
    assert math.log(iv.hi) == pytest.approx(1.2816 * 0.2, abs=0.06)


def test_a_pool_with_few_rows_falls_back_to_the_metric_band_and_is_flagged_thin():
    rng = np.random.default_rng(1)
    rich = grouped_residuals(rng, "mean_ttft", "hopper", "llama", 10, 20, 0.3, 0.1)
    few = [Residual("mean_ttft", "ampere", "llama", -2.0, f"a{i}", "a") for i in range(4)]
    table = build_residual_table(rich + few)
    iv = table.interval("mean_ttft", "ampere", "llama", 1.0)
    pooled = table.pools["mean_ttft|*|*"]
    assert iv.thin and iv.pool == "mean_ttft|*|*" and "ampere|llama has 4 rows from 1 groups" in iv.note
    assert (math.log(iv.lo), math.log(iv.hi)) == pytest.approx((pooled.q10, pooled.q90))  # 4 rows: weight 0


def test_many_rows_from_one_group_are_blended_with_the_pooled_band_not_trusted_alone():
    rng = np.random.default_rng(2)
    others = grouped_residuals(rng, "output_throughput", "hopper", "llama", 12, 20, 0.3, 0.05)
    one_source = [
        Residual("output_throughput", "blackwell", "qwen3-moe", v, f"b{i}", "b")
        for i, v in enumerate(rng.normal(-0.8, 0.05, 60))
    ]
    table = build_residual_table(others + one_source)
    own, pooled = table.pools["output_throughput|blackwell|qwen3-moe"], table.pools["output_throughput|*|*"]
    assert own.n == 60 and own.groups == 1
    iv = table.interval("output_throughput", "blackwell", "qwen3-moe", 1.0)
    w = 1 / MIN_GROUPS
    assert (
        iv.thin
        and "weighted 0.33" in iv.note
        and iv.pool == "output_throughput|blackwell|qwen3-moe + output_throughput|*|*"
    )
    assert math.log(iv.lo) == pytest.approx(w * own.q10 + (1 - w) * pooled.q10)
    assert math.log(iv.hi) == pytest.approx(w * own.q90 + (1 - w) * pooled.q90)
    # wider than the 60 rows' own scatter alone: one source's spread says nothing of the next source's shift
    assert iv.hi / iv.lo > 2 * math.exp(own.q90 - own.q10)


@pytest.mark.parametrize("groups", [4, MIN_POOLED_GROUPS])
def test_a_stand_in_pool_of_few_groups_lends_its_5_to_95_percent_band_and_says_so(groups: int) -> None:
    """A thin figure's stand-in pool resting on under MIN_POOLED_GROUPS groups (NIM's few tables behind the online
    TTFT rows) lends its wider 5-95% band; from MIN_POOLED_GROUPS groups on, its 10-90% band."""
    rng = np.random.default_rng(groups)
    table = build_residual_table(grouped_residuals(rng, "mean_ttft", "hopper", "llama", groups, 30, 0.3, 0.2))
    pooled = table.pools["mean_ttft|*|*"]
    assert pooled.groups == groups and pooled.q05 < pooled.q10 < pooled.q90 < pooled.q95
    iv = table.interval("mean_ttft", "ada", "llama", 1.0)  # no ada rows: the pooled band stands in
    wide = groups < MIN_POOLED_GROUPS
    expected = (pooled.q05, pooled.q95) if wide else (pooled.q10, pooled.q90)
    assert iv.thin and (math.log(iv.lo), math.log(iv.hi)) == pytest.approx(expected)
    assert ("5-95% band" in iv.note and f"only {groups} groups" in iv.note) == wide
    own = table.interval("mean_ttft", "hopper", "llama", 1.0)  # a rich own pool keeps its 10-90% band
    assert not own.thin and (math.log(own.lo), math.log(own.hi)) == pytest.approx((pooled.q10, pooled.q90))
    old = ResidualTable.from_dict(  # a table written before the 5-95% band: its 10-90% band stands in
        {"pools": {k: {"n": p.n, "groups": p.groups, "q10": p.q10, "q90": p.q90} for k, p in table.pools.items()}}
    )
    assert old.interval("mean_ttft", "ada", "llama", 1.0).lo == pytest.approx(math.exp(pooled.q10))
    assert ResidualTable.from_dict(table.to_dict()) == table


def test_a_thin_own_pool_blends_with_the_wide_band_of_a_few_groups_stand_in() -> None:
    """12 rows from one group (own weight 1/3) beside a pooled band on 4 groups: the blend takes the pool's
    5-95% ends, and names both pools."""
    rng = np.random.default_rng(7)
    others = grouped_residuals(rng, "mean_itl", "hopper", "llama", 3, 30, 0.3, 0.1)
    one_source = [
        Residual("mean_itl", "ada", "llama", v, f"a{i}", "a") for i, v in enumerate(rng.normal(0.2, 0.05, 12))
    ]
    table = build_residual_table(others + one_source)
    own, pooled = table.pools["mean_itl|ada|llama"], table.pools["mean_itl|*|*"]
    assert own.groups == 1 and pooled.groups == 4 < MIN_POOLED_GROUPS
    iv = table.interval("mean_itl", "ada", "llama", 1.0)
    w = 1 / MIN_GROUPS
    assert math.log(iv.lo) == pytest.approx(w * own.q10 + (1 - w) * pooled.q05)
    assert math.log(iv.hi) == pytest.approx(w * own.q90 + (1 - w) * pooled.q95)
    assert iv.thin and iv.pool == "mean_itl|ada|llama + mean_itl|*|*" and "5-95% band" in iv.note
    assert "weighted 0.33" in iv.note


@pytest.mark.parametrize("n", [10, 19, 20, 39, 59, 157, 200, 564])
def test_a_small_pools_band_reaches_the_split_conformal_order_statistics(n: int) -> None:
    """The band of n residuals (one per row, in shuffled order) is their k_lo-th and k_hi-th smallest, k_lo the
    largest integer <= (n+1)/10 and k_hi the smallest >= 9(n+1)/10 (exact fractions: n = 157 and 564 are where
    float arithmetic picks the next one), wider than numpy's 10th/90th percentiles and equal to them in the limit;
    with three residuals per row (one per grouping) the ranks scale by three."""
    values = np.random.default_rng(n).permutation(np.arange(1.0, n + 1))
    pool = build_residual_table(Residual("mean_itl", "hopper", "llama", v, f"r{v}", "g") for v in values).pools[
        "mean_itl|hopper|llama"
    ]
    k_lo, k_hi = math.floor(Fraction(n + 1, 10)), math.ceil(Fraction(9 * (n + 1), 10))
    assert (pool.q10, pool.q90) == (max(k_lo, 1), min(k_hi, n))
    assert pool.q90 - pool.q10 >= np.quantile(values, 0.9) - np.quantile(values, 0.1)
    tripled = build_residual_table(
        Residual("mean_itl", "hopper", "llama", v, f"r{v}", "g") for v in values for _ in range(3)
    ).pools["mean_itl|hopper|llama"]
    assert (tripled.q10, tripled.q90, tripled.q05, tripled.q95) == (pool.q10, pool.q90, pool.q05, pool.q95)
    assert tripled.n == n
    assert conformal_ranks(100_000) == (10_000, 90_001)
    w_lo, w_hi = math.floor(Fraction(n + 1, 20)), math.ceil(Fraction(19 * (n + 1), 20))
    assert conformal_ranks(n, wide=True) == (max(w_lo, 1), min(w_hi, n))
    assert (pool.q05, pool.q95) == (max(w_lo, 1), min(w_hi, n))
    assert conformal_ranks(100_000, wide=True) == (5_000, 95_001)


def test_pooled_out_of_group_band_covers_a_held_out_group_at_about_80_percent():
    """Split-conformal over groups: each of 40 groups (a cell of its own) held out in turn and banded from the
    other groups' residuals; its rows fall inside ~80 % of the time, where its own in-group scatter covers far less."""
    rng = np.random.default_rng(3)
    shifts = rng.normal(0.0, 0.3, 40)
    data = [
        [
            Residual("output_throughput", f"acc{g}", "llama", s + e, f"{g}-{i}", str(g))
            for i, e in enumerate(rng.normal(0.0, 0.1, 15))
        ]
        for g, s in enumerate(shifts)
    ]
    pooled_hits, own_hits = [], []
    for g, held in enumerate(data):
        table = build_residual_table(r for h, rows in enumerate(data) if h != g for r in rows)
        iv = table.interval("output_throughput", f"acc{g}", "llama", 1.0)
        assert iv.thin and iv.pool == "output_throughput|*|*"
        lo, hi = np.quantile([r.log_ratio for r in held], [0.1, 0.9]) - np.mean([r.log_ratio for r in held])
        for r in held:
            pooled_hits.append(math.log(iv.lo) <= r.log_ratio <= math.log(iv.hi))
            own_hits.append(lo <= r.log_ratio <= hi)  # the group's spread about its own mean: no shift
    assert 0.72 <= np.mean(pooled_hits) <= 0.88
    assert np.mean(own_hits) < 0.6 < np.mean(pooled_hits) - 0.1


def test_a_metric_without_enough_rows_takes_its_kinds_band_then_every_metrics():
    rng = np.random.default_rng(4)
    itl = grouped_residuals(rng, "mean_itl", "hopper", "llama", 5, 10, 0.2, 0.1, "i")
    median = [Residual("median_tpot", "hopper", "llama", 0.5, f"m{i}", f"m{i % 4}") for i in range(8)]
    ttft = grouped_residuals(rng, "mean_ttft", "hopper", "llama", 5, 10, 0.2, 0.1, "t")
    table = build_residual_table(itl + median + ttft)
    iv = table.interval("median_tpot", "hopper", "llama", 1.0)
    assert iv.thin and iv.pool == "kind:itl|*|*" and iv.n == 58
    none = table.interval("batch_e2e_latency", "amd-cdna3", "llama", 1.0)  # no e2e residual at all
    assert none.thin and none.pool == "*|*|*" and "has 0 rows" in none.note


def test_plain_tuples_count_as_rows_and_groups_of_their_own():
    table = build_residual_table([("output_throughput", "x", "y", v) for v in np.linspace(-0.1, 0.1, 12)])
    pool = table.pools["output_throughput|x|y"]
    assert pool.n == 12 and pool.groups == 12 and table.rich(pool)
    assert pool_keys("output_throughput", "x", "y")[0] == "output_throughput|x|y"


def test_table_round_trips_through_its_dict():
    rng = np.random.default_rng(5)
    table = build_residual_table(grouped_residuals(rng, "m", "a", "b", 2, 11, 0.2, 0.1))
    again = type(table).from_dict(table.to_dict())
    assert again == table and again.interval("m", "a", "b", 3.0) == table.interval("m", "a", "b", 3.0)


def row(i: int, gpu: str, value: float) -> Measurement:
    return Measurement(
        f"r{i}",
        "tensorrt-llm",
        "llama-3.1-8b",
        gpu,
        1,
        1,
        1,
        "fp8",
        "",
        128,
        128,
        "fixed",
        "offline",
        None,
        "output_throughput",
        value,
        "tok/s",
        "core",
        i,
        "",
        "v1",
    )


def test_cv_coverage_bands_a_held_out_row_without_its_own_group():
    """Two accelerator families, each held out once: Hopper's rows miss by 1.0 in log, Ampere's by 0. Banded with
    their own group's residuals they would all be covered; nested, each group's band is the other's and none is."""
    held = [("hopper", row(i, "H100-SXM", math.e), 1.0) for i in range(12)]
    held += [("ampere", row(100 + i, "A100-SXM-80GB", 1.0 + 0.001 * i), 1.0) for i in range(12)]
    cv = CrossValidation(held_out={"accelerator_family": held})
    report = cv_report(cv)
    assert report["groupings"]["accelerator_family"]["metrics"]["output_throughput"]["coverage_80"] == 0.0
    assert report["coverage_80"] == {"output_throughput": 0.0}
    everything = build_residual_table(cv.residuals())
    iv = everything.interval("output_throughput", "hopper", "llama", 1.0)
    assert iv.lo <= math.e <= iv.hi  # the same rows banded in sample: covered


def test_shipped_table_gives_plan_and_simulate_an_interval():
    if shipped_residual_table() is None:
        pytest.skip("catalog/data/residual_quantiles.json not generated (scripts/fit_profiles.py)")
    iv = interval_80("output_throughput", "hopper", "llama", 1000.0)
    assert iv is not None and iv.lo < 1000.0 < iv.hi
    assert interval_80_for("output_throughput", "H200-SXM", "llama-3.1-8b", 1000.0) == iv


def test_shipped_bands_say_when_a_pool_stood_in():
    table = shipped_residual_table()
    if table is None:
        pytest.skip("catalog/data/residual_quantiles.json not generated (scripts/fit_profiles.py)")
    for key in table.pools:
        metric, accel, model = key.split("|")
        if metric.startswith("kind:") or "*" in (metric, accel, model):
            continue
        iv = table.interval(metric, accel, model, 1.0)
        own = table.pools[key]
        assert iv.thin == (not table.rich(own)) and bool(iv.note) == iv.thin, key
        assert iv.lo < iv.hi


def test_cv_report_gives_a_metric_per_load_kind_and_the_cli_prints_them_under_it():
    """Offline output throughput is reported apart from the same metric under a fixed concurrency (the goal is on
    offline rows): 12 offline rows miss by 50%, 12 concurrency rows by 9%; the metric line pools all 24."""
    from dataclasses import replace

    from rich.console import Console

    from tokenomy.cli.validating import cv_tables

    held = [("hopper", row(i, "H100-SXM", 2.0), 1.0) for i in range(12)]
    held += [("hopper", replace(row(100 + i, "H100-SXM", 1.1), load_kind="concurrency"), 1.0) for i in range(12)]
    report = cv_report(CrossValidation(held_out={"accelerator_family": held}))
    g = report["groupings"]["accelerator_family"]
    assert g["loads"]["output_throughput | offline"]["median_ape"] == pytest.approx(0.5)
    assert g["loads"]["output_throughput | concurrency"]["median_ape"] == pytest.approx(0.1 / 1.1)
    assert g["metrics"]["output_throughput"]["n"] == 24
    assert {h["load_kind"] for h in report["held_out"]} == {"offline", "concurrency"}
    console = Console(width=200, record=True)
    for table in cv_tables(report):
        console.print(table)
    text = console.export_text()
    assert "offline load" in text and "concurrency load" in text


def test_throughput_under_load_pools_apart_from_offline_throughput():
    """A concurrency row's throughput residual joins `output_throughput@load`, so the offline band (which plan's
    throughput figures take) holds offline rows only; latency metrics keep their own name under any load."""
    from dataclasses import replace

    from tokenomy.calibrate.validate import residual
    from tokenomy.costmodel.intervals import metric_kind, residual_metric

    assert residual_metric("output_throughput", "concurrency") == "output_throughput@load"
    assert residual_metric("request_throughput", "rate") == "request_throughput@load"
    assert residual_metric("output_throughput", "offline") == "output_throughput"
    assert residual_metric("mean_ttft", "concurrency") == "mean_ttft"
    assert metric_kind("output_throughput@load") == "throughput"
    versions = [f"v{i % 3}" for i in range(12)]  # three groups: each pool rich enough for a band of its own
    offline = [residual(replace(row(i, "H100-SXM", 1.0), engine_version=v), 1.0) for i, v in enumerate(versions)]
    loaded = [
        residual(replace(row(50 + i, "H100-SXM", 2.0), load_kind="concurrency", engine_version=v), 1.0)
        for i, v in enumerate(versions)
    ]
    table = build_residual_table(offline + loaded)
    band = table.interval("output_throughput", "hopper", "llama", 1.0)
    assert band is not None and band.lo == band.hi == 1.0  # the 2x misses under load are not in the offline band
    assert table.pools["output_throughput@load|hopper|llama"].q10 == pytest.approx(math.log(2.0))
