"""Scheduler rules of issue 12: pipeline parallelism, KV allocated per chunk, verify tokens in the budget."""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import steady_state
from tokenomy.sim.block_manager import blocks_for
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import Replica, ReplicaConfig, SpecDecoding
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload, poisson_arrivals


def dep(model: str = "llama-3.1-8b", pp: int = 1) -> Deployment:
    return Deployment(load_model(model), load_accelerator("H100-SXM"), 1, pp, "bf16", "auto", load_profile("vllm"))


def replica(d: Deployment, config: ReplicaConfig, isl: list[int], osl: list[int]) -> Replica:
    w = Workload(np.zeros(len(isl)), np.array(isl), np.array(osl))
    r = Replica(d, config, RequestLog.for_workload(w))
    for rid in range(len(isl)):
        assert r.submit(rid)
    return r


def test_chunked_paged_prompt_holds_only_the_blocks_of_its_chunks() -> None:
    """vLLM v1: a 2,000-token prompt chunked by a 512-token budget takes blocks chunk by chunk."""
    r = replica(dep(), ReplicaConfig(max_num_batched_tokens=512), [2000], [4])
    chunks, _ = r.schedule()
    ((seq, n),) = chunks
    assert n == 512 and seq.blocks == blocks_for(512, 16)
    r.step()
    r.step()  # second chunk scheduled and run
    assert seq.blocks == blocks_for(1024, 16)
    while seq.remaining_prefill:
        r.step()
    assert seq.blocks == blocks_for(2000 + 1, 16)  # the whole prompt and the first output token's slot
    r.run_until(float("inf"))
    assert r.kv.free_blocks == r.kv.total_blocks


def test_contiguous_and_continuous_reserve_at_admission() -> None:
    r = replica(dep(), ReplicaConfig(scheduler="continuous", max_num_batched_tokens=512), [2000], [4])
    ((seq, _),) = r.schedule()[0]
    assert seq.blocks == blocks_for(2001, 16)


def test_verify_tokens_count_in_the_token_budget() -> None:
    """With γ draft tokens each decoding sequence takes γ+1 tokens of the budget; prompts get the rest."""
    spec = SpecDecoding(dep("llama-3.2-1b"), draft_tokens=3, acceptance=0.7)
    r = replica(dep(), ReplicaConfig(max_num_batched_tokens=256, spec=spec), [16] * 10 + [4000], [50] * 11)
    while len(r.batch.seqs) < 10:
        r.step()
    chunks, decode = r.schedule()
    assert decode and sum(n for _, n in chunks) == 256 - 10 * 4


def test_pipeline_fast_mode_matches_exact_mode() -> None:
    d = dep(pp=2)
    n = 300
    rng = np.random.default_rng(3)
    w = Workload(poisson_arrivals(20.0, n, rng), rng.integers(100, 2000, n), rng.integers(20, 300, n))
    fast = simulate(d, w, ReplicaConfig()).summary()
    exact = simulate(d, w, ReplicaConfig(exact=True)).summary()
    for key in ("ttft_s", "tpot_s"):
        assert fast[key]["mean"] == pytest.approx(exact[key]["mean"], rel=0.01)
    assert fast["throughput"]["output_tokens_per_s"] == pytest.approx(
        exact["throughput"]["output_tokens_per_s"], rel=0.01
    )


def test_pipeline_lone_request_crosses_every_stage() -> None:
    """One request on pp=2 waits for its micro-batch to cross both stages each step: the other stage idles."""
    d = dep(pp=2)
    w = Workload(np.zeros(4), np.full(4, 1024), np.full(4, 256), concurrency=1)
    s = simulate(d, w, ReplicaConfig()).summary()
    lone = d.step_cost().seconds(1, 1, 1152, 1152)
    assert s["tpot_s"]["mean"] == pytest.approx(lone, rel=0.01)
    assert s["tpot_s"]["mean"] == pytest.approx(float(steady_state(d, 1024, 256, 1).tpot_s[()]), rel=0.01)


def test_pipeline_micro_batches_overlap_at_large_batch() -> None:
    """At a large batch pp=2 runs two half batches at once: close to twice one GPU's compute-bound rate."""
    w = Workload(np.zeros(1200), np.full(1200, 1024), np.full(1200, 256))
    one = simulate(dep(), w, ReplicaConfig(max_num_seqs=256)).summary()["throughput"]["output_tokens_per_s"]
    two = simulate(dep(pp=2), w, ReplicaConfig(max_num_seqs=512)).summary()["throughput"]["output_tokens_per_s"]
    assert two > 1.5 * one
