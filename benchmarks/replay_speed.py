"""Replay speed: a 24-hour gateway ledger replayed under 5 alternatives (issue goal: 1M requests in < 2 min).

Builds a ledger (SQLite, through the gateway's own Database) of N requests over 24 hours with a business-day
shape, then times `tokenomy.replay` reading it and simulating 5 fleets (GPU-only, hybrid with API spill,
all-API), the alternatives in parallel processes. Building the ledger is not timed.

Run: python benchmarks/replay_speed.py [--requests 1000000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tokenomy.gateway.ledger import Attempt, Database
from tokenomy.replay.alternatives import Alternative, fleet_from_file
from tokenomy.replay.run import replay
from tokenomy.replay.sources import read_source
from tokenomy.sim.run import SLO
from tokenomy.sim.workload import daily_profile_arrivals

# Relative load per hour of the day: quiet night, business-hours plateau.
SHAPE = np.array([2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 10, 11, 12, 12, 11, 9, 7, 5, 4, 3, 3, 2], dtype=float)

FLEETS = {
    "h100x3": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: H100-SXM, replicas: 3, reserved: 3}\n"
    'routes:\n  "*": [gpu]\n',
    "h100x2+api": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: H100-SXM, replicas: 2, reserved: 2,"
    " policy: least_ttft, ttft_slo_s: 1.0}\n  - {name: api, api: OpenAI/gpt-4o-mini}\n"
    'routes:\n  "*": [gpu, api]\n',
    "h100x1+api": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: H100-SXM, replicas: 1, reserved: 1,"
    " policy: least_ttft, ttft_slo_s: 1.0}\n  - {name: api, api: OpenAI/gpt-4o-mini}\n"
    'routes:\n  "*": [gpu, api]\n',
    "l40s-int4x4+api": "tiers:\n  - {name: gpu, model: llama-3.1-8b, gpu: L40S, precision: int4, replicas: 4,"
    " policy: least_ttft, ttft_slo_s: 1.0}\n  - {name: api, api: OpenAI/gpt-4o-mini}\n"
    'routes:\n  "*": [gpu, api]\n',
    "all-api": 'tiers:\n  - {name: api, api: OpenAI/gpt-4o-mini}\nroutes:\n  "*": [api]\n',
}


def build_ledger(path: Path, n: int, seed: int = 0) -> None:
    """A ledger of about n requests over 24 hours (two teams, lognormal lengths)."""
    rng = np.random.default_rng(seed)
    rates = SHAPE / SHAPE.sum() * n / 3600.0
    arrivals = daily_profile_arrivals(list(rates), rng)
    m = len(arrivals)
    tin = np.clip(rng.lognormal(np.log(600), 0.8, m), 10, 8000).astype(int)
    tout = np.clip(rng.lognormal(np.log(150), 0.7, m), 1, 2000).astype(int)
    db = Database(str(path), path.parent)
    batch = []
    for i in range(m):
        batch.append(
            Attempt(
                f"r{i}",
                0,
                1.7e9 + float(arrivals[i]),
                "k",
                "search" if i % 3 else "support",
                "m",
                "chat",
                None,
                "gpu",
                "llama-3.1-8b",
                True,
                int(tin[i]),
                int(tout[i]),
                1e-4,
                0.3,
                3.0,
                "ok",
                200,
                "",
            )
        )
        if len(batch) == 50_000:
            db.insert_attempts(db.conn, batch)
            batch = []
    if batch:
        db.insert_attempts(db.conn, batch)
    db.conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ledger = tmp_path / "ledger.sqlite"
        t = time.perf_counter()
        build_ledger(ledger, args.requests)
        print(f"ledger of {args.requests:,} requests built in {time.perf_counter() - t:.1f} s (not timed)")
        alternatives = []
        for name, text in FLEETS.items():
            (tmp_path / f"{name}.yaml").write_text(text)
            alternatives.append(Alternative(name, fleet_from_file(tmp_path / f"{name}.yaml")))
        t = time.perf_counter()
        rep = read_source(str(ledger))
        read_s = time.perf_counter() - t
        rows = replay(rep, alternatives, SLO(ttft_s=1.0), workers=args.workers)
        total_s = time.perf_counter() - t
    for f in rows:
        fleet = f"  fleet bill ${f.fleet_usd:,.0f}" if f.fleet_usd is not None else ""
        print(
            f"{f.name:>16}: billed ${f.usd or 0:,.0f}{fleet}  SLO {f.slo_attainment or 0:.1%}"
            f"  spilled {f.spilled_share or 0:.1%}"
        )
    print(f"{len(rep):,} requests, {len(alternatives)} alternatives, {args.workers} worker(s); reading {read_s:.1f} s")
    print(f"replay_seconds: {total_s:.1f} s")


if __name__ == "__main__":
    main()
