"""One replica: fast mode against exact mode, the batch's block count, and the classic serving claims.

Every test prints the simulated figures it checks (`pytest -s` shows them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.batch import DecodeBatch
from tokenomy.sim.kvcache import PagedKV, Seq, blocks_for
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import Replica, ReplicaConfig, SpecDecoding
from tokenomy.sim.run import SLO, simulate
from tokenomy.sim.workload import (
    Workload,
    azure_conv_like,
    offline_arrivals,
    parse_lengths,
    poisson_arrivals,
    read_trace,
)

# ---------------------------------------------------------------- helpers


@cache
def deployment(model: str = "llama-3.1-8b", precision: str = "bf16", overlap_k: float | None = None) -> Deployment:
    """A one-GPU H100 deployment under the vLLM profile (optionally with a non-additive step formula)."""
    profile = load_profile("vllm")
    if overlap_k is not None:
        profile = profile.with_values(overlap_k=overlap_k)
    return Deployment(load_model(model), load_accelerator("H100-SXM"), 1, 1, precision, "auto", profile)


def d8() -> Deployment:
    return deployment()


def d70_tiny_kv() -> Deployment:
    """Llama-3.1-70B in fp8 on one H100: about 3.5k tokens of KV cache, so a few requests overflow it."""
    return deployment("llama-3.1-70b", "fp8")


def d70_tiny_kv_full_length() -> Deployment:
    """d70_tiny_kv with full-length admission (TensorRT-LLM's GUARANTEED_NO_EVICT)."""
    d = d70_tiny_kv()
    return Deployment(d.model, d.gpu, 1, 1, "fp8", "auto", d.profile.with_values(kv_admission="full_length"))


def poisson(
    n: int, rate: float, isl: str = "lognormal:512:0.8", osl: str = "lognormal:256:0.8", seed: int = 0
) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals = poisson_arrivals(rate, n, rng)
    return Workload(arrivals, parse_lengths(isl, "input").sample(n, rng), parse_lengths(osl, "output").sample(n, rng))


def offline(n: int, isl: str, osl: str, seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    return Workload(
        offline_arrivals(n), parse_lengths(isl, "input").sample(n, rng), parse_lengths(osl, "output").sample(n, rng)
    )


def rel(a: float, b: float) -> float:
    return abs(a / b - 1.0)


def kv_accounting_gap(r: Replica) -> int:
    """Blocks owned by live sequences + cached prefix blocks + free blocks − total (0 when nothing leaks)."""
    kv, bs = r.kv, r.config.block_tokens
    owned = sum(s.blocks for s in r.prefilling) + sum(s.blocks for s in r.padding)
    if kv.grows:  # a decoding sequence owns the blocks of its context plus room for its next token
        owned += sum(blocks_for(r.batch.g + s.ctx_off + 1 - s.shared_tokens, bs) for s in r.batch.seqs)
    else:
        owned += sum(s.blocks for s in r.batch.seqs)
    cached = sum(kv.prefix_blocks.values()) if isinstance(kv, PagedKV) else 0
    return owned + cached + kv.free_blocks - kv.total_blocks


def drive(d: Deployment, w: Workload, config: ReplicaConfig) -> tuple[Replica, RequestLog, list[tuple]]:
    """Replay an open-loop workload exactly as `simulate` does, checking the KV cache after every step.

    Returns the replica, the log and the (free, used, total, accounting gap) of every step that broke
    free ≥ 0, used ≤ total or the block accounting.
    """
    log = RequestLog.for_workload(w)
    r = Replica(d, config, log)
    broken: list[tuple] = []
    step = r.step

    def checked_step(t_limit: float = math.inf) -> bool:
        ran = step(t_limit)
        kv = r.kv
        gap = kv_accounting_gap(r)
        if kv.free_blocks < 0 or kv.used_blocks > kv.total_blocks or gap:
            broken.append((kv.free_blocks, kv.used_blocks, kv.total_blocks, gap))
        return ran

    r.step = checked_step  # run_until calls self.step
    for rid in range(len(w)):
        r.run_until(float(w.arrival_s[rid]))
        r.submit(rid, tuple(w.prefix_ids[rid]) if w.prefix_ids else ())
    r.run_until(math.inf)
    return r, log, broken


def figures(s: dict) -> str:
    return (
        f"out {s['throughput']['output_tokens_per_s']:9.1f} tok/s  "
        f"TTFT p50 {s['ttft_s']['p50'] * 1e3:9.2f} p99 {s['ttft_s']['p99'] * 1e3:9.2f} ms  "
        f"ITL p50 {s['itl_s']['p50'] * 1e3:7.3f} p99 {s['itl_s']['p99'] * 1e3:7.3f} ms  "
        f"preemptions {s['preemptions']}"
    )


# ---------------------------------------------------------------- 1. fast mode against exact mode

# (id, deployment, workload, config, whether the case must preempt)
FAST_CASES: list[tuple[str, Callable[[], Deployment], Callable[[], Workload], dict, bool]] = [
    ("8b-chunked-5rps", d8, lambda: poisson(1000, 5), {}, False),
    ("8b-chunked-20rps", d8, lambda: poisson(1000, 20), {}, False),
    ("8b-chunked-100rps-saturated", d8, lambda: poisson(1000, 100), {}, False),
    ("8b-azure_conv_like-2000", d8, lambda: azure_conv_like(2000, np.random.default_rng(3)), {}, False),
    ("8b-continuous-20rps", d8, lambda: poisson(1000, 20), {"scheduler": "continuous"}, False),
    ("8b-continuous-60rps", d8, lambda: poisson(1000, 60), {"scheduler": "continuous"}, True),
    ("8b-static-5rps", d8, lambda: poisson(500, 5), {"scheduler": "static"}, False),
    ("8b-static-30rps", d8, lambda: poisson(500, 30), {"scheduler": "static"}, False),
    ("8b-max_num_seqs16", d8, lambda: poisson(600, 20), {"max_num_seqs": 16}, False),
    ("8b-contiguous-kv", d8, lambda: poisson(600, 20), {"kv": "contiguous"}, False),
    ("8b-block7", d8, lambda: poisson(600, 30), {"block_tokens": 7}, False),
    *[
        (
            f"70b-tiny-kv-{sch}",
            d70_tiny_kv,
            lambda: poisson(400, 5, "lognormal:256:0.6", "lognormal:128:0.6"),
            {"scheduler": sch},
            True,
        )
        for sch in ("chunked", "continuous", "static")
    ],
    *[
        (
            f"70b-tiny-kv-full-length-{sch}",
            d70_tiny_kv_full_length,
            lambda: poisson(400, 5, "lognormal:256:0.6", "lognormal:128:0.6"),
            {"scheduler": sch},
            False,
        )
        for sch in ("chunked", "continuous")
    ],
    # a step formula that is not linear in the context (overlap_k = 2), where Simpson's rule is not exact
    ("8b-overlap2-30rps", lambda: deployment(overlap_k=2.0), lambda: poisson(1000, 30), {}, False),
    (
        "8b-overlap2-azure",
        lambda: deployment(overlap_k=2.0),
        lambda: azure_conv_like(2000, np.random.default_rng(3)),
        {},
        False,
    ),
    (
        "gemma-sliding-window-overlap2",
        lambda: deployment("gemma-3-27b", overlap_k=2.0),
        lambda: poisson(300, 2, "lognormal:2048:0.8", "lognormal:1024:0.8"),
        {},
        True,
    ),
]


@pytest.mark.parametrize(("name", "d_fn", "w_fn", "kwargs", "preempts"), FAST_CASES, ids=[c[0] for c in FAST_CASES])
def test_fast_mode_matches_exact_mode(name, d_fn, w_fn, kwargs, preempts) -> None:
    d, w = d_fn(), w_fn()
    fast = simulate(d, w, ReplicaConfig(**kwargs)).summary()
    exact = simulate(d, w, ReplicaConfig(exact=True, **kwargs)).summary()
    print(f"\n  {name} ({len(w)} requests)\n    fast : {figures(fast)}\n    exact: {figures(exact)}")
    assert fast["requests"]["completed"] == exact["requests"]["completed"] == len(w)
    if preempts:
        assert fast["preemptions"] > 0 and exact["preemptions"] > 0
    assert rel(fast["throughput"]["output_tokens_per_s"], exact["throughput"]["output_tokens_per_s"]) < 0.01
    for metric in ("ttft_s", "itl_s"):
        for q in ("p50", "p99"):
            assert rel(fast[metric][q], exact[metric][q]) < 0.03, (metric, q, fast[metric][q], exact[metric][q])


# ---------------------------------------------------------------- 2. DecodeBatch.new_blocks


@pytest.mark.parametrize("bs", [16, 7])
def test_new_blocks_equals_brute_force_count(bs: int) -> None:
    rng = np.random.default_rng(bs)
    checked = 0
    for _ in range(40):
        batch = DecodeBatch(bs, paged=True)
        ctx: dict[int, int] = {}  # rid -> context now, tracked independently of the batch's offsets
        seqs: dict[int, Seq] = {}
        for rid in range(int(rng.integers(1, 30))):
            steps = int(rng.integers(0, 3 * bs))
            batch.advance(steps)
            for k in ctx:
                ctx[k] += steps
            c = int(rng.integers(1, 3000))
            s = Seq(rid, c, 10**9)
            s.ctx, s.generated = c, int(rng.integers(1, 100))
            s.shared_tokens = int(rng.integers(0, c + 1))  # any phase, including a prefix not on a block edge
            batch.add(s)
            ctx[rid], seqs[rid] = c, s
            if len(seqs) > 2 and rng.random() < 0.2:  # drop a random sequence
                gone = int(rng.choice(list(seqs)))
                batch.remove(seqs[gone])
                assert seqs[gone].ctx == ctx[gone]
                assert seqs[gone].blocks == blocks_for(ctx[gone] + 1 - seqs[gone].shared_tokens, bs)
                del seqs[gone], ctx[gone]
            if seqs and rng.random() < 0.2:  # a speculative burst on a random sequence
                lucky, extra = int(rng.choice(list(seqs))), int(rng.integers(1, 5))
                batch.bump(seqs[lucky], extra)
                ctx[lucky] += extra
        ms = [*range(1, 3 * bs + 2), *rng.integers(1, 5000, size=10).tolist()]
        for m in ms:
            brute = sum(
                blocks_for(ctx[k] + 1 - s.shared_tokens + m, bs) - blocks_for(ctx[k] + 1 - s.shared_tokens, bs)
                for k, s in seqs.items()
            )
            assert batch.new_blocks(m) == brute, (m, batch.g)
            checked += 1
    assert DecodeBatch(bs, paged=False).new_blocks(5) == 0
    print(f"\n  block {bs}: {checked} (batch, m) pairs agree with the per-sequence count")


# ---------------------------------------------------------------- 3. classic claims


def test_continuous_batching_beats_static_batching() -> None:
    """Orca / vLLM: iteration-level batching against run-to-the-longest static batches, offline.

    With output lengths uniform on 16..1024 the padding of a large static batch alone costs it
    E[max]/E[mean] ≈ 1024/520 ≈ 1.97×, so the gain stays below 2 there; a heavy-tailed length
    distribution (log-normal, σ = 1, as ShareGPT) gives the several-fold gain usually quoted.
    """
    d = d8()
    for name, osl, floor in (
        ("uniform:16:1024", "uniform:16:1024", 1.6),
        ("lognormal:256:1", "lognormal:256:1.0", 2.0),
    ):
        w = offline(2000, "uniform:64:512", osl)
        tput = {
            sch: simulate(d, w, ReplicaConfig(scheduler=sch)).summary()["throughput"]["output_tokens_per_s"]
            for sch in ("static", "continuous", "chunked")
        }
        print(
            f"\n  osl {name:16s} static {tput['static']:8.1f}  continuous {tput['continuous']:8.1f} "
            f"({tput['continuous'] / tput['static']:.2f}x)  chunked {tput['chunked']:8.1f} "
            f"({tput['chunked'] / tput['static']:.2f}x) output tok/s"
        )
        assert tput["continuous"] / tput["static"] >= floor
        assert tput["chunked"] / tput["static"] >= floor


def test_paged_kv_against_contiguous_reservation() -> None:
    d = d8()
    w = offline(2000, "uniform:64:512", "uniform:16:1024")
    paged = simulate(d, w, ReplicaConfig(kv="paged"))
    contiguous = simulate(d, w, ReplicaConfig(kv="contiguous"))
    ps, cs = paged.summary(), contiguous.summary()
    peak_paged, peak_contig = max(paged.timelines[0].running), max(contiguous.timelines[0].running)
    total_blocks = d.memory.kv_capacity_tokens // 16
    reserved_blocks = blocks_for(d.static_context_tokens, 16)
    print(
        f"\n  paged     : KV utilisation {ps['kv']['utilisation']:.4f}  peak running {peak_paged:5d}  "
        f"out {ps['throughput']['output_tokens_per_s']:8.1f} tok/s"
        f"\n  contiguous: KV utilisation {cs['kv']['utilisation']:.4f}  peak running {peak_contig:5d}  "
        f"out {cs['throughput']['output_tokens_per_s']:8.1f} tok/s  ({d.static_context_tokens}-token reservations)"
    )
    assert ps["requests"]["completed"] == cs["requests"]["completed"] == 2000
    assert ps["kv"]["utilisation"] >= 0.95
    assert cs["kv"]["utilisation"] < 0.1
    # a reservation per request: exactly as many as whole reservations fit the cache
    assert peak_contig == total_blocks // reserved_blocks
    # paged: the scheduler limit binds, not memory (a request finishing in the step the last slot fills can keep
    # the recorded peak one or two under it)
    assert 0.99 * d.profile.max_num_seqs <= peak_paged <= d.profile.max_num_seqs
    assert peak_paged >= 5 * peak_contig
    assert ps["throughput"]["output_tokens_per_s"] > 3 * cs["throughput"]["output_tokens_per_s"]


# ---------------------------------------------------------------- 4. preemption


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize("scheduler", ["chunked", "continuous", "static"])
def test_kv_overflow_preempts_and_never_over_allocates(scheduler: str, exact: bool) -> None:
    d = d70_tiny_kv()
    w = poisson(300, 5, "lognormal:256:0.6", "lognormal:128:0.6")
    config = ReplicaConfig(scheduler=scheduler, exact=exact)
    r, log, broken = drive(d, w, config)
    print(
        f"\n  {scheduler:10s} exact={exact}: KV {r.kv.total_blocks} blocks, {r.stats.preemptions} preemptions "
        f"of {int((log.preemptions > 0).sum())} requests, {int(log.done.sum())}/{len(w)} done, "
        f"free at end {r.kv.free_blocks}"
    )
    assert not broken, broken[:5]
    assert r.stats.preemptions > 0
    assert log.done.all()
    assert r.kv.free_blocks == r.kv.total_blocks  # everything released, nothing leaked
    assert r.kv.used_blocks == 0
    # the checked replay is the same run as simulate()
    np.testing.assert_array_equal(log.finish_s, simulate(d, w, config).log.finish_s)


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize("scheduler", ["chunked", "continuous"])
def test_full_length_admission_never_preempts_and_holds_what_the_kv_holds_at_full_length(
    scheduler: str, exact: bool
) -> None:
    """GUARANTEED_NO_EVICT: where on-demand admission overflows the KV cache and preempts, full-length admission
    queues instead; the requests running at once never need more than the cache at their full lengths."""
    w = poisson(300, 5, "lognormal:256:0.6", "lognormal:128:0.6")
    config = ReplicaConfig(scheduler=scheduler, exact=exact)
    on_demand, _, _ = drive(d70_tiny_kv(), w, config)
    r = Replica(d70_tiny_kv_full_length(), config, RequestLog.for_workload(w))
    worst_commitment = 0
    step = r.step

    def checked_step(t_limit: float = math.inf) -> bool:
        nonlocal worst_commitment
        ran = step(t_limit)
        running = r.prefilling + r.batch.seqs
        full = sum(blocks_for(int(w.input_tokens[s.rid] + w.output_tokens[s.rid]), 16) for s in running)
        worst_commitment = max(worst_commitment, full)
        assert r.kv.committed_blocks == sum(s.committed_blocks for s in running)
        return ran

    r.step = checked_step
    for rid in range(len(w)):
        r.run_until(float(w.arrival_s[rid]))
        r.submit(rid)
    r.run_until(math.inf)
    assert on_demand.stats.preemptions > 0
    assert r.stats.preemptions == 0
    assert r.log.done.all()
    assert 0 < worst_commitment <= r.kv.total_blocks
    assert r.kv.committed_blocks == 0 and r.kv.free_blocks == r.kv.total_blocks


@pytest.mark.parametrize("scheduler", ["chunked", "continuous"])
def test_full_length_admission_with_speculative_decoding_never_preempts(scheduler: str) -> None:
    """A burst that commits the whole KV cache, decoded with γ = 4 draft tokens: the verify step's look-ahead past a
    sequence's last token is not room it needs, so nothing is preempted and every block comes back."""
    d = d70_tiny_kv_full_length()
    total = Replica(d, ReplicaConfig(), RequestLog.for_workload(offline(1, "16", "16"))).kv.total_blocks
    n = total // 2  # 16 + 16 tokens: two blocks each, every block committed
    w = Workload(offline_arrivals(n), np.full(n, 16), np.full(n, 16))
    spec = SpecDecoding(deployment("llama-3.2-1b"), draft_tokens=4, acceptance=0.0)
    r, log, broken = drive(d, w, ReplicaConfig(scheduler=scheduler, spec=spec, max_num_seqs=4 * n))
    assert not broken, broken[:5]
    assert r.stats.preemptions == 0 and log.done.all()
    assert r.kv.committed_blocks == 0 and r.kv.free_blocks == r.kv.total_blocks


def test_speculative_decoding_keeps_kv_accounting() -> None:
    d = d70_tiny_kv()
    w = poisson(200, 3, "lognormal:256:0.6", "lognormal:128:0.6")
    spec = SpecDecoding(deployment("llama-3.2-1b"), draft_tokens=4, acceptance=0.8)
    r, log, broken = drive(d, w, ReplicaConfig(spec=spec))
    print(f"\n  spec: free at end {r.kv.free_blocks} of {r.kv.total_blocks}, preemptions {r.stats.preemptions}")
    assert log.done.all()
    assert not broken, broken[:5]
    assert r.kv.free_blocks == r.kv.total_blocks


def test_prefix_caching_with_block_size_not_dividing_prefix_block_keeps_kv_accounting() -> None:
    w = read_trace("mooncake-conv", time_scale=3, limit=300)
    r, log, broken = drive(d8(), w, ReplicaConfig(block_tokens=7))
    cached = sum(r.kv.prefix_blocks.values())
    print(f"\n  block 7: free {r.kv.free_blocks} + cached prefixes {cached} of {r.kv.total_blocks} blocks at the end")
    assert log.done.all()
    assert not broken, broken[:5]
    assert r.kv.free_blocks + cached == r.kv.total_blocks


def test_prefix_caching_block_accounting_with_default_block_size() -> None:
    w = read_trace("mooncake-conv", time_scale=3, limit=300)
    r, log, broken = drive(d8(), w, ReplicaConfig())
    cached = sum(r.kv.prefix_blocks.values())
    print(f"\n  block 16: free {r.kv.free_blocks} + cached prefixes {cached} of {r.kv.total_blocks} blocks at the end")
    assert log.done.all()
    assert not broken, broken[:5]
    assert cached > 0 and r.kv.free_blocks + cached == r.kv.total_blocks


def test_requests_that_can_never_fit_are_rejected_with_a_reason() -> None:
    d = d70_tiny_kv()
    w = Workload(np.arange(4.0), np.array([200, 5000, 300, 200]), np.array([50, 10, 50, 40000]))
    res = simulate(d, w)
    s = res.summary()
    print(f"\n  rejected {s['requests']['rejected']}: {s['rejected_reasons']}")
    assert s["requests"]["completed"] == 2 and s["requests"]["rejected"] == 2
    assert list(res.log.where) == [0, -1, 0, -1]
    assert all("KV cache" in why for why in s["rejected_reasons"])
    c = simulate(d8(), Workload([0.0, 1.0], [30000, 100], [5000, 100]), ReplicaConfig(kv="contiguous")).summary()
    assert c["requests"]["rejected"] == 1 and "reservation" in next(iter(c["rejected_reasons"]))


# ---------------------------------------------------------------- 5. prefix caching


def test_prefix_caching_on_the_mooncake_sample() -> None:
    """Caching the shared prefixes lowers mean TTFT where the KV cache holds the running requests (at 4× the trace's
    spacing a handful of preemptions; at 3× the cached prefixes' blocks push the one-H100 replica into dozens of
    recompute preemptions, and which way TTFT goes there depends on the profile's fitted step times)."""
    w = read_trace("mooncake-conv", time_scale=4)
    on = simulate(d8(), w, ReplicaConfig(prefix_caching=True))
    off = simulate(d8(), w, ReplicaConfig(prefix_caching=False)).summary()
    s = on.summary()
    print(
        f"\n  mooncake-conv x4: {s['prefix_cache_hit_tokens']} cached prompt tokens of {int(w.input_tokens.sum())}; "
        f"mean TTFT {s['ttft_s']['mean']:.3f} s with caching vs {off['ttft_s']['mean']:.3f} s without"
    )
    assert s["prefix_cache_hit_tokens"] > 0 and off["prefix_cache_hit_tokens"] == 0
    assert np.all(on.log.cached_tokens % w.prefix_block_tokens == 0)  # hits come in whole prefix blocks
    assert s["requests"]["preempted"] <= 0.01 * s["requests"]["total"]
    assert s["ttft_s"]["mean"] < off["ttft_s"]["mean"]


def test_prefix_caching_of_a_shared_system_prompt() -> None:
    n, rng = 400, np.random.default_rng(4)
    isl = 2048 + parse_lengths("uniform:64:512", "input").sample(n, rng)  # a 2,048-token shared system prompt
    w = Workload(
        poisson_arrivals(4, n, rng),
        isl,
        parse_lengths("uniform:32:256", "output").sample(n, rng),
        prefix_ids=[(1, 2, 3, 4)] * n,
    )
    on = simulate(d8(), w, ReplicaConfig()).summary()
    off = simulate(d8(), w, ReplicaConfig(prefix_caching=False)).summary()
    print(
        f"\n  shared prompt: {on['prefix_cache_hit_tokens']} cached tokens (every request after the first: "
        f"{(n - 1) * 2048}); mean TTFT {on['ttft_s']['mean'] * 1e3:.2f} ms vs {off['ttft_s']['mean'] * 1e3:.2f} ms"
    )
    assert on["prefix_cache_hit_tokens"] == (n - 1) * 2048
    assert on["ttft_s"]["mean"] < 0.5 * off["ttft_s"]["mean"]


# ---------------------------------------------------------------- 6. speculative decoding


def test_speculative_decoding_tpot() -> None:
    d, draft = d8(), deployment("llama-3.2-1b")
    w = Workload(poisson_arrivals(1.0, 200, np.random.default_rng(2)), np.full(200, 512), np.full(200, 256))
    base = simulate(d, w).summary()["tpot_s"]["mean"]
    tpot, zero_gaps = {}, {}
    for alpha in (0.8, 0.5, 0.0):
        res = simulate(d, w, ReplicaConfig(spec=SpecDecoding(draft, draft_tokens=4, acceptance=alpha)))
        tpot[alpha] = res.summary()["tpot_s"]["mean"]
        zero_gaps[alpha] = res.itl.counts[0] / res.itl.weight  # tokens that arrived in a burst
        assert res.summary()["requests"]["completed"] == 200
    print(
        f"\n  mean TPOT: no spec {base * 1e3:.3f} ms; γ=4 α=0.8 {tpot[0.8] * 1e3:.3f} ms; "
        f"α=0.5 {tpot[0.5] * 1e3:.3f} ms; α=0 {tpot[0.0] * 1e3:.3f} ms"
    )
    assert tpot[0.8] < base < tpot[0.0]
    assert tpot[0.8] < tpot[0.5] < tpot[0.0]  # the more drafts accepted, the faster
    # accepted drafts per step: E = α(1 − α^γ)/(1 − α); a burst's extra tokens are E/(1 + E) of all gaps
    for alpha in (0.8, 0.5):
        e = alpha * (1 - alpha**4) / (1 - alpha)
        print(f"  α={alpha}: burst share of gaps {zero_gaps[alpha]:.4f}, expected {e / (1 + e):.4f}")
        assert abs(zero_gaps[alpha] - e / (1 + e)) < 0.01
    assert zero_gaps[0.0] == 0.0


# ---------------------------------------------------------------- 7. closed loop


@pytest.mark.parametrize("k", [4, 16, 32])
def test_closed_loop_keeps_k_requests_running(k: int) -> None:
    n = 800
    osl = parse_lengths("uniform:64:512", "output").sample(n, np.random.default_rng(5))
    w = Workload(offline_arrivals(n), np.full(n, 512), osl, concurrency=k)
    res = simulate(d8(), w)
    s = res.summary()
    print(
        f"\n  concurrency {k}: mean decode batch {s['mean_decode_batch']:.2f}, peak running "
        f"{max(res.timelines[0].running)}, {s['requests']['completed']}/{n} done"
    )
    assert s["requests"]["completed"] == n
    assert abs(s["mean_decode_batch"] / k - 1) < 0.15
    assert max(res.timelines[0].running) <= k
    assert np.all(np.diff(res.log.arrival_s[k:]) >= 0)  # each later request is sent when one finishes


# ---------------------------------------------------------------- 8. determinism


def test_same_seed_same_summary() -> None:
    spec = SpecDecoding(deployment("llama-3.2-1b"), draft_tokens=4, acceptance=0.7)
    runs = [simulate(d8(), poisson(300, 5, seed=9), ReplicaConfig(spec=spec), seed=s).summary() for s in (1, 1, 2)]
    plain = [simulate(d8(), poisson(300, 20, seed=9), seed=s).summary() for s in (1, 1)]
    print(f"\n  seed 1: {figures(runs[0])}\n  seed 2: {figures(runs[2])}")
    assert repr(runs[0]) == repr(runs[1])
    assert repr(plain[0]) == repr(plain[1])
    assert runs[0]["tpot_s"]["mean"] != runs[2]["tpot_s"]["mean"]  # the acceptance draws follow the seed


# ---------------------------------------------------------------- 9. goodput


def test_goodput_under_an_slo() -> None:
    w = poisson(1000, 60)
    res = simulate(d8(), w, ReplicaConfig(scheduler="continuous"))
    log = res.log
    slo = SLO(ttft_s=0.2, tpot_s=0.05)
    s = res.summary(slo)
    rps = s["throughput"]["requests_per_s"]
    ttft = log.first_token_s - log.arrival_s
    tpot = (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1)
    met = int(np.sum(log.done & (ttft <= 0.2) & ((log.output_tokens <= 1) | (tpot <= 0.05))))
    print(
        f"\n  60 req/s: throughput {rps:.2f} req/s, goodput {s['goodput_rps']:.2f} req/s "
        f"(TTFT ≤ 200 ms, TPOT ≤ 50 ms), attainment {s['slo_attainment']:.3f}"
    )
    assert 0 < s["goodput_rps"] < rps
    assert s["goodput_rps"] == pytest.approx(met / res.duration_s)
    assert s["slo_attainment"] == pytest.approx(met / len(w))
    assert res.summary(SLO(ttft_s=1e-6))["goodput_rps"] == 0.0
    assert res.summary(SLO(e2e_s=1e9))["goodput_rps"] == pytest.approx(rps)
    assert "goodput_rps" not in res.summary(SLO())


def test_cancel_frees_the_kv_of_a_request_in_any_queue() -> None:
    """A cancelled request (the twin's client hung up) leaves its queue, frees its blocks and never finishes."""
    d = d8()
    w = Workload(np.zeros(3), np.array([600, 700, 800]), np.array([50, 60, 70]))
    log = RequestLog.for_workload(w)
    r = Replica(d, ReplicaConfig(exact=True, max_num_seqs=2), log)
    for rid in range(3):
        assert r.submit(rid)
    r.step()  # admits two prompts; the third waits for a sequence slot
    while not r.batch.seqs:
        r.step()
    decoding, waiting = r.batch.seqs[0], r.waiting[0]
    held = r.kv.used_blocks
    r.cancel(decoding)
    assert r.kv.used_blocks < held and decoding not in r.batch.seqs
    r.cancel(waiting)
    assert not r.waiting
    r.run_until(math.inf)
    assert np.isnan(log.finish_s[[decoding.rid, waiting.rid]]).all()
    assert not np.isnan(log.finish_s).all()  # the remaining request ran to the end
    assert r.kv.used_blocks == 0 or r.kv.available_blocks == r.kv.total_blocks
