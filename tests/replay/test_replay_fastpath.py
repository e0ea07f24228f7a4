"""Replay's fast path (idle replicas skip forming a step, per-request routes and lengths as Python lists, the
ledger read by column position) gives the figures the simulator gave before it, on a small busy ledger: the
code before the change (kept here as the reference) against the code now."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tokenomy.gateway.ledger import Attempt, Database
from tokenomy.replay.alternatives import Alternative, fleet_from_file
from tokenomy.replay.run import replay
from tokenomy.replay.sources import read_source
from tokenomy.sim.fleet import GpuTier, Router, predicted_ttft_s
from tokenomy.sim.replica import Replica
from tokenomy.sim.run import SLO

FLEETS = {
    "h100x1+api": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: H100-SXM, replicas: 1, policy: least_ttft,"
    " ttft_slo_s: 0.5}\n  - {name: api, api: OpenAI/gpt-4o-mini}\n"
    'routes:\n  "*": [gpu, api]\n',
    "l4x3": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: L4, precision: int4, replicas: 3, reserved: 1}\n"
    'routes:\n  "*": [gpu]\n',
    "rr-a100x2": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: A100-SXM-80GB, replicas: 2, policy: round_robin}\n"
    'routes:\n  "*": [gpu]\n',
}


def figures_of_small_ledger(tmp: Path) -> dict[str, Any]:
    """2,000 requests in about 3 minutes with bursts (two teams, two classes) replayed on FLEETS."""
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    gaps = rng.exponential(0.15, 2000) * np.where(np.arange(2000) % 400 < 150, 0.1, 1.0)
    ts = 1.7e9 + np.cumsum(gaps)
    tin = np.clip(rng.lognormal(np.log(900), 0.8, 2000), 10, 8000).astype(int)
    tout = np.clip(rng.lognormal(np.log(180), 0.7, 2000), 1, 1500).astype(int)
    rows = [
        Attempt(f"r{i}", 0, float(ts[i]), "k", "a" if i % 3 else "b", "m", "simple" if i % 2 else "complex", None,
                "gpu", "llama-3.1-8b", True, int(tin[i]), int(tout[i]), 1e-4, 0.3, 3.0, "ok", 200, "")
        for i in range(2000)
    ]  # fmt: skip
    db = Database(str(tmp / "ledger.sqlite"), tmp)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    alternatives = []
    for name, text in FLEETS.items():
        (tmp / f"{name}.yaml").write_text(text)
        alternatives.append(Alternative(name, fleet_from_file(tmp / f"{name}.yaml")))
    rep = read_source(str(tmp / "ledger.sqlite"))
    out = {}
    for f in replay(rep, alternatives, SLO(ttft_s=1.0), workers=1)[1:]:
        out[f.name] = {
            "completed": f.completed,
            "usd": f.usd,
            "fleet_usd": f.fleet_usd,
            "gpu_hours": f.gpu_hours,
            "slo_attainment": f.slo_attainment,
            "spilled_share": f.spilled_share,
            "tier_requests": f.tier_requests,
            "ttft_s": f.ttft_s,
            "tpot_s": f.tpot_s,
            "usd_by_team": f.usd_by_team,
        }
    return out


def _run_until_before(self: Replica, t_s: float) -> None:
    """Replica.run_until as it was before the idle fast path: every call forms a step."""
    while self.now < t_s:
        if not self.step(t_s):
            if math.isinf(t_s):
                return
            self._sample(t_s)
            self.now = t_s
            return


def _dispatch_before(self: Router, rid: int, now: float) -> None:
    """Router.dispatch as it was before routes and lengths became per-request lists."""
    log, w = self.log, self.workload
    cls = str(w.classes[rid]) if w.classes is not None else "*"
    route = self.fleet.route(cls)
    isl = int(log.input_tokens[rid])
    prefixes = tuple(w.prefix_ids[rid]) if w.prefix_ids else ()
    for position, name in enumerate(route):
        tier = self.fleet.tiers[self.tier_index[name]]
        last = position == len(route) - 1
        if isinstance(tier, GpuTier):
            replica, ttft = self.pick(tier, isl)
            if tier.ttft_slo_s is not None and ttft is None:
                ttft = predicted_ttft_s(replica, isl)
            in_time = tier.ttft_slo_s is None or ttft <= tier.ttft_slo_s
            if (in_time or last) and replica.submit(rid, prefixes):
                self._taken(rid, name, position)
                return
        elif self._api_accepts(tier, now):
            self._api_serve(tier, rid, now)
            self._taken(rid, name, position)
            return


def test_replay_figures_are_those_of_the_simulator_before_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = figures_of_small_ledger(tmp_path / "fast")
    assert fast["h100x1+api"]["tier_requests"]["api"] > 0  # the ledger is busy enough to spill
    monkeypatch.setattr(Replica, "run_until", _run_until_before)
    monkeypatch.setattr(Router, "dispatch", _dispatch_before)
    before = figures_of_small_ledger(tmp_path / "before")
    assert fast == before  # exactly: the fast path skips work, it does not reorder any arithmetic


def test_the_ledger_reader_rebuilds_every_request(tmp_path: Path) -> None:
    figures_of_small_ledger(tmp_path)
    rep = read_source(str(tmp_path / "ledger.sqlite"))
    rng = np.random.default_rng(11)  # the draws of figures_of_small_ledger, in its order
    gaps = rng.exponential(0.15, 2000) * np.where(np.arange(2000) % 400 < 150, 0.1, 1.0)
    tin = np.clip(rng.lognormal(np.log(900), 0.8, 2000), 10, 8000).astype(int)
    tout = np.clip(rng.lognormal(np.log(180), 0.7, 2000), 1, 1500).astype(int)
    ts = 1.7e9 + np.cumsum(gaps)
    np.testing.assert_allclose(rep.workload.arrival_s, ts - ts[0], rtol=0, atol=1e-6)
    assert rep.workload.input_tokens.tolist() == tin.tolist() and rep.workload.output_tokens.tolist() == tout.tolist()
    assert rep.workload.classes.tolist() == ["simple" if i % 2 else "complex" for i in range(2000)]
    assert rep.teams.tolist() == ["a" if i % 3 else "b" for i in range(2000)]
    assert rep.actual_usd.sum() == pytest.approx(2000 * 1e-4) and rep.cached_input_tokens.sum() == 0
