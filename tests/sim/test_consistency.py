"""The closed form (costmodel.perf.load_point / steady_state) against the simulator over the feature grid.

Every case of `sim.consistency.GRID` (dense and MoE; tp and pp; attention DP; static, continuous and chunked;
paged and contiguous; speculative decoding on and off; bf16 and fp8 KV) at 20% and 60% of the
closed form's capacity and at twice it: capacity and mean TPOT within 10%, mean TTFT within 20%
below saturation.
"""

from __future__ import annotations

import pytest

from tokenomy.sim.consistency import GRID, TOLERANCE, Case, compare

FEATURES = {
    "dense": lambda c: not c.model.startswith("qwen3-30b"),
    "moe": lambda c: c.model.startswith("qwen3-30b"),
    "tp": lambda c: c.tp > 1,
    "pp": lambda c: c.pp > 1,
    "attention DP": lambda c: c.deployment().attention_dp_ranks > 1,
    "static": lambda c: c.scheduler == "static",
    "continuous": lambda c: c.scheduler == "continuous",
    "chunked": lambda c: c.scheduler == "chunked",
    "paged": lambda c: c.kv == "paged",
    "contiguous": lambda c: c.kv == "contiguous",
    "spec": lambda c: c.spec,
    "no spec": lambda c: not c.spec,
    "bf16 KV": lambda c: c.kv_precision == "bf16",
    "fp8 KV": lambda c: c.kv_precision == "fp8",
}


def test_grid_covers_every_feature() -> None:
    missing = [name for name, has in FEATURES.items() if not any(has(c) for c in GRID)]
    assert not missing


@pytest.mark.parametrize("case", GRID, ids=lambda c: c.name)
def test_closed_form_agrees_with_simulator(case: Case) -> None:
    rows = compare(case, requests=1500)
    for r in rows:
        print(f"\n  {r.load:>10} {r.metric:8} closed form {r.closed_form:.4g} simulated {r.simulated:.4g}", end="")
    assert {(r.load, r.metric) for r in rows} == {
        ("saturating", "capacity"),
        ("saturating", "tpot"),
        ("0.2", "tpot"),
        ("0.2", "ttft"),
        ("0.6", "tpot"),
        ("0.6", "ttft"),
    }
    bad = [f"{r.load} {r.metric}: {r.closed_form:.4g} vs {r.simulated:.4g}" for r in rows if not r.within]
    assert not bad, f"{case.name}: beyond {TOLERANCE}: {bad}"
