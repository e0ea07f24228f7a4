"""Capacity-aware spill: past its TTFT SLO a self-hosted tier's requests go to the next tier, before the
upstream overloads, and the spill state does not flap."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

from tests.gateway.conftest import api_tier, self_hosted
from tokenomy.tokenizer import prompt_of

SPEEDUP = 2.0  # the small twin runs twice as fast as the H100 it stands for: the test takes half the time
SLO_S = 0.5  # the small tier's TTFT SLO in the modelled hardware's time, as the gateway predicts TTFT
RATE_RPS = 40.0 * SPEEDUP
DURATION_S = 3.0 / SPEEDUP
PROMPT_TOKENS = 3000


async def replay(url: str, headers: dict[str, str], model: str, first_seed: int) -> list[tuple[float, str]]:
    """Poisson arrivals of long-prompt streaming requests; (TTFT in the modelled hardware's time, tier) per request.

    Prompts are seeded from `first_seed` on: a second run needs fresh prompts, or the twin's prefix cache serves
    them without prefill and the tier never overloads."""
    rng = np.random.default_rng(0)
    gaps = rng.exponential(1 / RATE_RPS, int(RATE_RPS * DURATION_S))
    prompts = [prompt_of(PROMPT_TOKENS, seed=first_seed + i) for i in range(len(gaps))]
    out: list[tuple[float, str]] = []

    async def one(client: httpx.AsyncClient, prompt: str) -> None:
        t0 = time.perf_counter()
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 32, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            tier = r.headers.get("x-tokenomy-tier", "direct")
            ttft = None
            async for line in r.aiter_lines():
                if ttft is None and '"content":"' in line and '"content":""' not in line:
                    ttft = (time.perf_counter() - t0) * SPEEDUP
            out.append((ttft or float("nan"), tier))

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        tasks = []
        for gap, prompt in zip(gaps, prompts, strict=True):
            await asyncio.sleep(gap)
            tasks.append(asyncio.create_task(one(client, prompt)))
        await asyncio.gather(*tasks)
    return out


def test_spills_before_the_upstream_overloads_and_does_not_flap(twins, gateway) -> None:
    small = twins("small", speedup=SPEEDUP)
    large = twins("large")  # stands for an API: fast enough for the whole load
    direct = asyncio.run(replay(small, {}, "small", first_seed=0))
    direct_p90 = float(np.percentile([t for t, _ in direct], 90))
    assert direct_p90 > 4 * SLO_S, f"the load should overload the small tier on its own (p90 {direct_p90:.2f} s)"

    config = {
        "tiers": [
            self_hosted("small", small, "llama-3.1-8b", ["simple"], deployment={"precision": "int4"}, ttft_slo_s=SLO_S),
            api_tier("large", large, ["simple", "complex"], 3.0, 15.0),
        ]
    }
    g = gateway(config)
    _, key = g.new_key()
    time.sleep(1.0 / SPEEDUP)  # let the small twin drain the direct run
    headers = {"authorization": f"Bearer {key}", "x-tokenomy-class": "simple"}  # filler prompts: force the class
    routed = asyncio.run(replay(g.url, headers, "auto", first_seed=len(direct)))
    on_small = [t for t, tier in routed if tier == "small"]
    spilled = [t for t, tier in routed if tier == "large"]
    assert len(on_small) >= 10 and len(spilled) >= 10, (len(on_small), len(spilled))
    small_p90 = float(np.percentile(on_small, 90))
    assert small_p90 < 1.5 * SLO_S < direct_p90 / 2, (small_p90, direct_p90)
    tier = next(t for t in g.gateway.tiers if t.name == "small")
    assert tier.spill_transitions <= 0.2 * len(routed), tier.spill_transitions
