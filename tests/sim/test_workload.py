"""Workloads: seeded length and arrival distributions, trace formats and their errors, the build rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import tokenomy
from tokenomy.sim.workload import (
    BUILTIN_TRACES,
    TraceError,
    Workload,
    WorkloadSpec,
    azure_conv_like,
    build_workload,
    builtin_trace,
    daily_profile_arrivals,
    gamma_arrivals,
    offline_arrivals,
    parse_lengths,
    poisson_arrivals,
    read_trace,
    write_trace_jsonl,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- lengths


def test_same_seed_same_workload_and_other_seed_differs() -> None:
    spec = WorkloadSpec(isl="lognormal:512:0.8", osl="uniform:16:256", rate=5.0, num_requests=500, seed=7)
    a, b = build_workload(spec), build_workload(spec)
    c = build_workload(spec.model_copy(update={"seed": 8}))
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.input_tokens, b.input_tokens)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
    assert not np.array_equal(a.input_tokens, c.input_tokens)


def test_fixed_and_uniform_lengths() -> None:
    assert set(parse_lengths("512", "input").sample(100, rng())) == {512}
    x = parse_lengths("uniform:128:1024", "output").sample(20_000, rng())
    assert x.dtype == np.int64 and x.min() == 128 and x.max() == 1024
    assert abs(x.mean() - 576) < 10


def test_lognormal_mean_within_3_percent() -> None:
    x = parse_lengths("lognormal:512:0.8", "input").sample(50_000, rng(1))
    assert x.dtype == np.int64 and x.min() >= 1 and x.max() <= 131072
    assert abs(x.mean() / 512 - 1) < 0.03


def test_sharegpt_input_and_output_differ_and_are_positive() -> None:
    isl, osl = parse_lengths("sharegpt", "input"), parse_lengths("sharegpt", "output")
    assert isl != osl
    assert isl.sample(1000, rng()).min() >= 1


def test_empirical_lengths_come_from_the_trace_column() -> None:
    wl = read_trace("azure-code")
    isl = parse_lengths("empirical:azure-code", "input").sample(5000, rng())
    osl = parse_lengths("empirical:azure-code", "output").sample(5000, rng())
    assert set(isl) <= set(wl.input_tokens) and set(osl) <= set(wl.output_tokens)
    assert len(set(isl)) > 100


@pytest.mark.parametrize("text", ["abc", "0", "-5", "uniform:10", "uniform:100:10", "lognormal:512", "gauss:1:2", ""])
def test_bad_length_text_names_the_flag_and_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"isl: cannot read .*uniform:MIN:MAX.*lognormal:MEAN:SIGMA"):
        parse_lengths(text, "input")


def test_empirical_from_missing_file_names_flag_and_file(tmp_path) -> None:
    with pytest.raises(TraceError, match=r"osl .*nope\.jsonl: no such file"):
        parse_lengths(f"empirical:{tmp_path / 'nope.jsonl'}", "output")


# ---------------------------------------------------------------- arrivals


def test_poisson_mean_rate_and_exponential_gaps() -> None:
    t = poisson_arrivals(20.0, 20_000, rng(2))
    assert len(t) == 20_000 and t[0] == 0 and np.all(np.diff(t) >= 0)
    assert abs((len(t) - 1) / t[-1] / 20.0 - 1) < 0.03
    gaps = np.diff(t)
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05  # exponential: CV = 1


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_burstiness_sets_the_cv_and_keeps_the_rate(burstiness: float) -> None:
    gaps = np.diff(gamma_arrivals(10.0, burstiness, 40_000, rng(3)))
    assert abs(gaps.mean() * 10.0 - 1) < 0.03
    assert abs(gaps.std() / gaps.mean() * np.sqrt(burstiness) - 1) < 0.05


def test_offline_is_all_zero() -> None:
    assert np.array_equal(offline_arrivals(5), np.zeros(5))


def test_daily_profile_counts_track_hourly_rates() -> None:
    rates = [0.2 + 0.1 * (h % 6) for h in range(24)]
    t = daily_profile_arrivals(rates, rng(4))
    assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 86_400
    counts = np.bincount((t // 3600).astype(int), minlength=24)
    expected = np.array(rates) * 3600
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))  # Poisson: within 5 sigma per hour
    half = daily_profile_arrivals(rates, rng(4), days=0.5)
    assert half[-1] < 43_200


def test_daily_profile_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="24 hourly rates"):
        daily_profile_arrivals([1.0] * 23, rng())


# ---------------------------------------------------------------- traces


def test_azure_conv_sample() -> None:
    wl = read_trace("azure-conv")
    assert len(wl) == 2000 and wl.name == "azure-conv"
    assert wl.arrival_s[0] == 0
    assert wl.arrival_s[1] == pytest.approx(50.9951690 - 46.6805900, abs=1e-6)  # 7 fractional digits kept
    assert list(wl.input_tokens[:2]) == [374, 396] and list(wl.output_tokens[:2]) == [44, 109]
    assert wl.prefix_ids is None and wl.classes is None
    assert 400 < wl.arrival_s[-1] < 450  # 18:15:46.68 to 18:22:50.94


def test_azure_code_sample() -> None:
    wl = read_trace(builtin_trace("azure-code"))
    assert len(wl) == 2000
    assert list(wl.input_tokens[:2]) == [4808, 3180] and list(wl.output_tokens[:2]) == [10, 8]
    assert wl.arrival_s[1] == pytest.approx(0.052, abs=1e-6)


def test_mooncake_sample_has_prefix_ids() -> None:
    wl = read_trace("mooncake-conv")
    assert len(wl) == 2000 and wl.prefix_block_tokens == 512
    assert list(wl.input_tokens[:2]) == [6758, 7322] and list(wl.output_tokens[:2]) == [500, 490]
    assert wl.prefix_ids is not None
    assert wl.prefix_ids[0] == tuple(range(14))
    assert wl.prefix_ids[1][0] == 0 and len(wl.prefix_ids[1]) == 15
    assert wl.arrival_s[-1] == pytest.approx(669.0)  # timestamps in ms


def test_time_scale_and_limit() -> None:
    full, half = read_trace("azure-conv"), read_trace("azure-conv", time_scale=0.5)
    assert half.arrival_s[-1] == pytest.approx(full.arrival_s[-1] / 2)
    first = read_trace("azure-conv", limit=10)
    assert len(first) == 10 and np.array_equal(first.input_tokens, full.input_tokens[:10])


def test_unsorted_trace_is_sorted(tmp_path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(
        '{"arrival_s": 2.0, "input_tokens": 20, "output_tokens": 2}\n'
        "\n"
        '{"arrival_s": 1.0, "input_tokens": 10, "output_tokens": 1, "class": "chat"}\n'
    )
    wl = read_trace(p)
    assert list(wl.arrival_s) == [1.0, 2.0] and list(wl.input_tokens) == [10, 20]
    assert list(wl.classes) == ["chat", "default"]


def test_own_jsonl_round_trip(tmp_path) -> None:
    wl = Workload(
        arrival_s=np.array([0.0, 0.1, 1 / 3, 2.5]),
        input_tokens=np.array([1, 20, 300, 4000]),
        output_tokens=np.array([5, 6, 7, 8]),
        classes=np.array(["chat", "batch", "chat", "rag"], dtype=object),
        prefix_ids=[(), (1, 2), (1, 2, 3), (9,)],
    )
    path = tmp_path / "own.jsonl"
    write_trace_jsonl(wl, path)
    back = read_trace(path)
    np.testing.assert_array_equal(back.arrival_s, wl.arrival_s)
    np.testing.assert_array_equal(back.input_tokens, wl.input_tokens)
    np.testing.assert_array_equal(back.output_tokens, wl.output_tokens)
    assert list(back.classes) == list(wl.classes) and back.prefix_ids == wl.prefix_ids
    assert back.name == "own"


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZURE_ROW = "2023-11-16 18:15:46.6805900,374,44\n"
OWN_ROW = '{"arrival_s": 0.5, "input_tokens": 10, "output_tokens": 5}\n'
MOONCAKE_ROW = '{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [0]}\n'


@pytest.mark.parametrize(
    ("name", "text", "line", "field"),
    [
        (
            "a.jsonl",
            OWN_ROW + OWN_ROW.replace("10", '"abc"'),
            2,
            "'input_tokens': must be a positive integer, got 'abc'",
        ),
        ("b.jsonl", OWN_ROW * 2 + OWN_ROW.replace("5}", "0}"), 3, "'output_tokens': must be a positive integer"),
        ("c.jsonl", OWN_ROW + '{"arrival_s": 1.0, "input_tokens": 10}\n', 2, "'output_tokens': missing"),
        ("d.jsonl", OWN_ROW + OWN_ROW.replace("0.5", "-1"), 2, "'arrival_s': must be a number >= 0"),
        ("e.jsonl", OWN_ROW + OWN_ROW.replace("}", ', "prefix_ids": "x"}'), 2, "'prefix_ids': must be a list"),
        ("f.jsonl", MOONCAKE_ROW + MOONCAKE_ROW.replace("0,", '"soon",', 1), 2, "'timestamp': must be a number"),
        ("g.jsonl", MOONCAKE_ROW + MOONCAKE_ROW.replace("[0]", "[0, -1]"), 2, "'hash_ids': must be a list"),
        ("h.csv", AZURE_HEADER + AZURE_ROW * 3 + "2023-11-16 18:15:47.1,x,44\n", 5, "'ContextTokens'"),
        ("i.csv", AZURE_HEADER + AZURE_ROW + "2023-11-16 18:15:47.1,374,-2\n", 3, "'GeneratedTokens'"),
        ("j.csv", AZURE_HEADER + "yesterday,374,44\n", 2, "'TIMESTAMP': cannot read 'yesterday'"),
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path, name: str, text: str, line: int, field: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert f"{name}:{line}: field {field}" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no requests"),
        (AZURE_HEADER, "no requests"),
        (OWN_ROW + "{not json\n", ":2: not valid JSON"),
        (OWN_ROW + "[1, 2]\n", ":2: expected a JSON object"),
        ('{"ts": 1, "len": 2}\n', ":1: unknown trace format"),
        ("time,in,out\n1,2,3\n", ":1: unknown trace format; accepted: Azure"),
        (AZURE_HEADER + "2023-11-16 18:15:46.6,374\n", ":2: expected 3 fields"),
    ],
)
def test_bad_files(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.trace"
    path.write_text(text)
    with pytest.raises(TraceError, match=message) as err:
        read_trace(path)
    assert "bad.trace" in str(err.value)


def test_missing_file_and_unknown_builtin_list_the_names(tmp_path) -> None:
    with pytest.raises(TraceError, match=r"missing\.csv: no such file .*azure-conv, azure-code, mooncake-conv"):
        read_trace(tmp_path / "missing.csv")
    with pytest.raises(TraceError, match="unknown built-in trace 'sharegpt'; built-in traces: azure-conv, azure-code"):
        builtin_trace("sharegpt")
    assert all(builtin_trace(name).is_file() for name in BUILTIN_TRACES)


def test_samples_live_inside_the_package() -> None:
    package_dir = Path(tokenomy.__file__).resolve().parent
    for name in BUILTIN_TRACES:
        assert builtin_trace(name).resolve().is_relative_to(package_dir / "sim" / "data" / "traces")


# ---------------------------------------------------------------- subset and azure_conv_like


def test_subset_keeps_fields_aligned() -> None:
    wl = read_trace("mooncake-conv", limit=100)
    wl.classes = np.array(["a", "b"] * 50, dtype=object)
    sub = wl.subset(wl.input_tokens > 5000)
    keep = np.flatnonzero(wl.input_tokens > 5000)
    assert len(sub) == len(keep) > 0
    assert sub.prefix_ids == [wl.prefix_ids[i] for i in keep]
    assert list(sub.classes) == list(wl.classes[keep])
    np.testing.assert_array_equal(sub.output_tokens, wl.output_tokens[keep])
    assert len(wl.subset([0, 5, 7])) == 3


def test_workload_rejects_misaligned_or_unsorted() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Workload(np.zeros(3), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="sorted"):
        Workload(np.array([1.0, 0.5]), np.ones(2), np.ones(2))


def test_azure_conv_like_million() -> None:
    sample = read_trace("azure-conv")
    wl = azure_conv_like(1_000_000, rng(5))
    assert len(wl) == 1_000_000 and wl.input_tokens.dtype == np.int64
    pairs = set(zip(sample.input_tokens.tolist(), sample.output_tokens.tolist(), strict=True))
    got = set(zip(wl.input_tokens[:5000].tolist(), wl.output_tokens[:5000].tolist(), strict=True))
    assert got <= pairs  # joint pairs, not independent draws
    sample_rate = (len(sample) - 1) / sample.arrival_s[-1]
    assert abs((len(wl) - 1) / wl.arrival_s[-1] / sample_rate - 1) < 0.01
    fast = azure_conv_like(10_000, rng(5), rate_per_s=100.0)
    assert abs(len(fast) / fast.arrival_s[-1] / 100.0 - 1) < 0.05


# ---------------------------------------------------------------- build_workload


def test_build_offline_by_default() -> None:
    wl = build_workload(WorkloadSpec(num_requests=10))
    assert len(wl) == 10 and not wl.arrival_s.any() and wl.concurrency is None
    assert set(wl.input_tokens) == {512} and set(wl.output_tokens) == {256}


def test_build_rate_is_poisson_or_gamma() -> None:
    wl = build_workload(WorkloadSpec(rate=8.0, num_requests=20_000))
    assert abs((len(wl) - 1) / wl.arrival_s[-1] / 8.0 - 1) < 0.03
    bursty = build_workload(WorkloadSpec(rate=8.0, burstiness=0.25, num_requests=20_000))
    gaps = np.diff(bursty.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.08)


def test_build_lengths_do_not_depend_on_rate() -> None:
    a = build_workload(WorkloadSpec(isl="lognormal:300:1", rate=1.0, num_requests=100))
    b = build_workload(WorkloadSpec(isl="lognormal:300:1", rate=50.0, num_requests=100))
    np.testing.assert_array_equal(a.input_tokens, b.input_tokens)


def test_build_closed_loop() -> None:
    wl = build_workload(WorkloadSpec(concurrency=16, num_requests=50))
    assert wl.concurrency == 16 and len(wl) == 50 and not wl.arrival_s.any()


def test_build_trace_takes_first_requests_and_scales_time() -> None:
    wl = build_workload(WorkloadSpec(trace="azure-conv", num_requests=100, time_scale=0.5, isl="9"))
    full = read_trace("azure-conv")
    assert len(wl) == 100 and np.array_equal(wl.input_tokens, full.input_tokens[:100])  # trace lengths win
    np.testing.assert_allclose(wl.arrival_s, full.arrival_s[:100] * 0.5)
    assert len(build_workload(WorkloadSpec(trace="azure-conv", num_requests=10**6))) == 2000


def test_build_trace_at_concurrency_keeps_trace_lengths() -> None:
    wl = build_workload(WorkloadSpec(trace="mooncake-conv", num_requests=20, concurrency=4))
    assert wl.concurrency == 4 and not wl.arrival_s.any() and wl.prefix_ids[0] == tuple(range(14))


def test_build_daily_profile_ignores_num_requests() -> None:
    wl = build_workload(WorkloadSpec(daily_rates=[0.05] * 24, num_requests=3))
    assert abs(len(wl) - 0.05 * 86_400) < 5 * np.sqrt(0.05 * 86_400)
    assert len(wl.input_tokens) == len(wl)


def test_build_class_mix() -> None:
    wl = build_workload(WorkloadSpec(num_requests=20_000, classes={"chat": 7, "batch": 3}))
    assert wl.classes is not None and set(wl.classes) == {"chat", "batch"}
    assert np.mean(wl.classes == "chat") == pytest.approx(0.7, abs=0.02)


def test_trace_classes_win_over_mix(tmp_path) -> None:
    path = tmp_path / "own.jsonl"
    path.write_text(json.dumps({"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "class": "rag"}) + "\n")
    wl = build_workload(WorkloadSpec(trace=str(path), classes={"chat": 1.0}))
    assert list(wl.classes) == ["rag"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.0, "concurrency": 4}, "at most one of rate, concurrency, daily_rates; got rate and concurrency"),
        ({"rate": 0.0}, "rate"),
        ({"concurrency": 0}, "concurrency"),
        ({"num_requests": -1}, "num_requests"),
        ({"time_scale": 0}, "time_scale"),
        ({"burstiness": 0.5}, "burstiness needs a rate"),
        ({"daily_rates": [1.0] * 23}, "24 hourly rates"),
        ({"trace": "azure-conv", "daily_rates": [1.0] * 24}, "trace and daily_rates"),
        ({"classes": {"a": -1.0, "b": 2.0}}, "classes: weights"),
        ({"qps": 3}, "qps"),
    ],
)
def test_bad_specs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkloadSpec(**kwargs)


def test_build_bad_lengths_raise_value_error() -> None:
    with pytest.raises(ValueError, match="osl: cannot read 'lots'"):
        build_workload(WorkloadSpec(osl="lots"))
