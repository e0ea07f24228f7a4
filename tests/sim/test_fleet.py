"""Fleets: load-balancing policies, spill to an API tier, rate limits, the daily cost comparison, route checks.

Every test prints the simulated figures it checks (`pytest -s` shows them).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.fleet import POLICIES, ApiTier, Fleet, GpuTier, Router, compare_day, simulate_fleet, tier_share
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import Replica, ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload, daily_profile_arrivals, parse_lengths, poisson_arrivals

API_IN, API_OUT = 0.2, 0.6  # $/Mtok


@cache
def d8() -> Deployment:
    return Deployment(
        load_model("llama-3.1-8b"), load_accelerator("H100-SXM"), 1, 1, "bf16", "auto", load_profile("vllm")
    )


def poisson(n: int, rate: float, seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals = poisson_arrivals(rate, n, rng)
    isl = parse_lengths("lognormal:512:0.8", "input").sample(n, rng)
    return Workload(arrivals, isl, parse_lengths("lognormal:256:0.8", "output").sample(n, rng))


def api_usd(log, served: np.ndarray) -> float:
    return (log.input_tokens[served].sum() * API_IN + log.output_tokens[served].sum() * API_OUT) / 1e6


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_serves_every_request(policy: str) -> None:
    n = 2000
    run = simulate_fleet(Fleet((GpuTier("gpu", d8(), replicas=2, policy=policy),), {"*": ("gpu",)}), poisson(n, 30))
    s, where = run.summary, run.result.log.where
    counts = np.bincount(where[where >= 0], minlength=2)
    print(
        f"\n  {policy:17s}: {s['requests']['completed']}/{n} done, per replica {counts.tolist()}, "
        f"mean TTFT {s['ttft_s']['mean'] * 1e3:.2f} ms, {s['cost']['gpu_hours']:.4f} GPU-h, ${s['cost']['usd']:.4f}"
    )
    assert s["requests"]["completed"] == n and s["dropped"] == 0 and s["spilled"] == 0
    assert np.all(run.tier_of == 0) and counts.sum() == n and len(counts) == 2
    if policy == "round_robin":
        assert counts.tolist() == [n // 2, n // 2]
    if policy == "least_outstanding":
        assert abs(counts[0] - counts[1]) <= 0.1 * n
    assert counts.min() > 0.3 * n
    # two replicas on demand for the run's span
    hours = run.result.duration_s / 3600
    assert s["cost"]["gpu_hours"] == pytest.approx(2 * hours)
    assert s["cost"]["usd"] == pytest.approx(2 * hours * d8().gpu.usd_per_gpu_hour("on_demand"))


def test_one_replica_fleet_is_the_single_replica_simulation() -> None:
    w = poisson(1000, 20)
    alone = simulate(d8(), w).summary()
    fleet = simulate_fleet(Fleet((GpuTier("gpu", d8()),), {"*": ("gpu",)}), w).summary
    print(
        f"\n  fleet of one: out {fleet['throughput']['output_tokens_per_s']:.1f} tok/s, TTFT p99 "
        f"{fleet['ttft_s']['p99'] * 1e3:.2f} ms; simulate(): {alone['throughput']['output_tokens_per_s']:.1f}, "
        f"{alone['ttft_s']['p99'] * 1e3:.2f} ms"
    )
    for key in ("requests", "throughput", "ttft_s", "itl_s", "tpot_s", "e2e_s", "duration_s", "preemptions"):
        assert repr(fleet[key]) == repr(alone[key]), key


def gpu_then_api(ttft_slo_s: float | None, rate_limit_rps: float | None = None) -> Fleet:
    return Fleet(
        (GpuTier("gpu", d8(), ttft_slo_s=ttft_slo_s), ApiTier("api", API_IN, API_OUT, rate_limit_rps=rate_limit_rps)),
        {"*": ("gpu", "api")},
    )


def test_tight_ttft_slo_spills_to_the_api() -> None:
    n, w = 2000, poisson(2000, 80)
    run = simulate_fleet(gpu_then_api(0.2), w)
    kept = simulate_fleet(Fleet((GpuTier("gpu", d8()),), {"*": ("gpu",)}), w).summary
    s, log = run.summary, run.result.log
    gpu, api = s["tiers"]["gpu"], s["tiers"]["api"]
    print(
        f"\n  80 req/s on one H100 with a 200 ms TTFT SLO: {s['spilled']} of {n} spilled to the API "
        f"(${api['usd']:.4f}); GPU-served mean TTFT {gpu['ttft_s']['mean'] * 1e3:.1f} ms vs "
        f"{kept['ttft_s']['mean'] * 1e3:.1f} ms with no spill; total ${s['cost']['usd']:.4f}"
    )
    assert s["requests"]["completed"] == n and s["dropped"] == 0
    assert s["requests"]["rejected"] == 0  # answered by the API is not rejected
    assert s["spilled"] > 0
    assert api["requests"] == api["spilled_in"] == s["spilled"] and gpu["spilled_in"] == 0
    assert gpu["requests"] + api["requests"] == n
    on_api = run.tier_of == 1
    assert api["usd"] == pytest.approx(api_usd(log, on_api))
    assert s["cost"]["usd"] == pytest.approx(gpu["usd"] + api["usd"])
    assert gpu["ttft_s"]["mean"] < kept["ttft_s"]["mean"]


def test_rate_limited_api_without_fallback_drops_the_excess() -> None:
    n, limit = 1000, 5
    w = poisson(n, 20)
    run = simulate_fleet(Fleet((ApiTier("api", API_IN, API_OUT, rate_limit_rps=limit),), {"*": ("api",)}), w)
    s, log = run.summary, run.result.log
    served = run.tier_of == 0
    t = w.arrival_s[served]
    in_window = np.arange(len(t)) - np.searchsorted(t, t - 1.0, side="right") + 1  # served in (t − 1 s, t]
    print(
        f"\n  20 req/s at a {limit} req/s limit: {int(served.sum())} served, {s['dropped']} dropped over "
        f"{w.arrival_s[-1]:.1f} s; most served in any 1 s window {int(in_window.max())}; ${s['cost']['usd']:.5f}"
    )
    assert s["dropped"] > 0 and s["dropped"] + int(served.sum()) == n
    assert s["requests"]["rejected"] == s["dropped"]
    assert s["requests"]["completed"] == int(served.sum())
    assert in_window.max() <= limit
    assert int(served.sum()) <= limit * (w.arrival_s[-1] + 1)
    assert np.isnan(log.finish_s[~served]).all()
    assert s["cost"]["usd"] == pytest.approx(api_usd(log, served))


def test_compare_day() -> None:
    rng = np.random.default_rng(0)
    rates = [0.02] * 7 + [0.1] * 10 + [0.05] * 7  # req/s per hour: a quiet night, a busy day
    arrivals = daily_profile_arrivals(rates, rng)
    n = len(arrivals)
    isl = parse_lengths("lognormal:512:0.8", "input").sample(n, rng)
    w = Workload(arrivals, isl, parse_lengths("lognormal:256:0.8", "output").sample(n, rng))
    out = compare_day(gpu_then_api(0.05), w)
    tokens_usd = (w.input_tokens.sum() * API_IN + w.output_tokens.sum() * API_OUT) / 1e6  # all on the API
    assert set(out) == {"hybrid", "all_api", "all_self_hosted"}
    gpu = d8().gpu
    print(f"\n  a day of {n} requests:")
    for name, s in out.items():
        print(
            f"    {name:16s} ${s['cost']['usd']:9.4f}  {s['cost']['gpu_hours']:6.2f} GPU-h  "
            f"{s['requests']['completed']} done  {s['spilled']} spilled"
        )
        assert s["cost"]["usd"] > 0
        assert s["requests"]["completed"] == n and s["dropped"] == 0
    hybrid, all_api, self_hosted = out["hybrid"], out["all_api"], out["all_self_hosted"]
    assert all_api["cost"]["usd"] == pytest.approx(tokens_usd)
    assert all_api["cost"]["gpu_hours"] == 0
    assert self_hosted["cost"]["usd"] == pytest.approx(
        self_hosted["cost"]["gpu_hours"] * gpu.usd_per_gpu_hour("reserved")
    )
    assert self_hosted["cost"]["gpu_hours"] >= hybrid["cost"]["gpu_hours"] > 23  # a day's span of GPUs
    assert hybrid["spilled"] > 0
    api = hybrid["tiers"]["api"]
    assert api["requests"] == hybrid["spilled"]
    assert hybrid["cost"]["usd"] == pytest.approx(
        hybrid["cost"]["gpu_hours"] * gpu.usd_per_gpu_hour("on_demand") + api["usd"]
    )


def test_route_to_an_unknown_tier_is_refused() -> None:
    api = ApiTier("api", API_IN, API_OUT)
    with pytest.raises(ValueError, match="unknown tier.*'nope'"):
        Fleet((api,), {"*": ("api", "nope")})
    with pytest.raises(ValueError, match="'\\*' route"):
        Fleet((api,), {"chat": ("api",)})
    with pytest.raises(ValueError, match="unknown policy 'random'"):
        GpuTier("gpu", d8(), policy="random")


def test_a_tiers_share_is_the_requests_whose_route_names_it_first_or_on_spill() -> None:
    """tier_share: a class's route, its class missing from the routes taking the "*" route, no classes at all taking
    "*" for every request; None where a tier can be sent every request, all False where none."""
    fleet = Fleet((GpuTier("a", d8()), GpuTier("b", d8()), GpuTier("c", d8())), {"chat": ("a", "b"), "*": ("b",)})
    w = Workload(np.arange(4) * 0.1, [10] * 4, [10] * 4, classes=["chat", "other", "chat", "unrouted"])
    assert tier_share(fleet, w, "a").tolist() == [True, False, True, False]
    assert tier_share(fleet, w, "b") is None
    assert tier_share(fleet, w, "c").tolist() == [False] * 4
    plain = Workload(np.arange(4) * 0.1, [10] * 4, [10] * 4)
    assert tier_share(fleet, plain, "a").tolist() == [False] * 4
    assert tier_share(fleet, plain, "b") is None


def test_a_tier_sizes_a_sliding_window_kv_pool_by_the_requests_routed_to_it() -> None:
    """gpt-oss-120b (sliding-window layers keep 128 tokens) in two tiers: short chats on one, long generations on the
    other. Each tier's KV pool holds its own requests' mix of lengths, as a replica given only those requests does,
    not the whole day's mix (the short tier's pool is smaller than the whole log's would make it)."""
    d = Deployment(
        load_model("gpt-oss-120b"), load_accelerator("H200-SXM"), 1, 1, "mxfp4-experts", "auto", load_profile("vllm")
    )
    assert d.model.n_sliding_layers
    n = 400
    classes = np.array(["chat", "long"] * (n // 2), dtype=object)
    isl = np.where(classes == "chat", 200, 1024)
    osl = np.where(classes == "chat", 100, 8192)
    w = Workload(np.arange(n) * 0.01, isl, osl, classes=classes)
    fleet = Fleet((GpuTier("short", d), GpuTier("long", d)), {"chat": ("short",), "long": ("long",), "*": ("short",)})
    router = Router(fleet, RequestLog.for_workload(w), w, seed=0)
    pools = {name: rs[0].kv.total_blocks for name, rs in router.replicas.items()}

    def alone(mask: np.ndarray | None) -> int:
        sub = w if mask is None else Workload(w.arrival_s[mask], isl[mask], osl[mask])
        return Replica(d, router.replicas["short"][0].config, RequestLog.for_workload(sub)).kv.total_blocks

    short, long, whole = alone(classes == "chat"), alone(classes == "long"), alone(None)
    print(f"\n  KV blocks: short tier {pools['short']:,} (alone {short:,}), long tier {pools['long']:,} "
          f"(alone {long:,}), whole log {whole:,}")  # fmt: skip
    assert pools == {"short": short, "long": long}
    assert short < whole < long


def test_llama4_chunked_layers_size_the_kv_pool_at_full_length_on_tensorrt_llm() -> None:
    """TensorRT-LLM keeps every token's KV in Llama 4's chunked local-attention layers (EngineProfile
    .frees_chunked_attention_kv off): a replica given only 32k-token requests holds the memory plan's token count;
    on vLLM, which frees past chunks, the same requests fit more tokens."""
    pools = {}
    for engine in ("tensorrt-llm", "vllm"):
        d = Deployment(load_model("llama-4-scout-17b-16e"), load_accelerator("H200-SXM"), 4, 1, "fp8", "fp8",
                       load_profile(engine))  # fmt: skip
        assert d.memory.fits and d.model.chunked_attention
        w = Workload(np.arange(8) * 0.1, [1024] * 8, [32768] * 8)
        replica = Replica(d, ReplicaConfig(), RequestLog.for_workload(w))
        pools[engine] = (replica.kv.total_blocks, d.memory.kv_capacity_tokens // replica.config.block_tokens)
    assert pools["tensorrt-llm"][0] == pools["tensorrt-llm"][1]
    assert pools["vllm"][0] > 2 * pools["vllm"][1]
