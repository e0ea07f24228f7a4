"""Replay: every alternative's fleet run on the replayed requests (in worker processes), and the actual."""

from __future__ import annotations

import os
from collections.abc import Sequence

from tokenomy.replay.alternatives import Alternative
from tokenomy.replay.compare import Figures, actual_figures, alternative_figures
from tokenomy.replay.quality import ServedModel
from tokenomy.replay.sources import Replayed
from tokenomy.sim.fleet import simulate_fleet
from tokenomy.sim.run import SLO
from tokenomy.sim.sweep import local_pool


def run_alternative(alt: Alternative, rep: Replayed, slo: SLO | None, seed: int) -> Figures:
    """One alternative's figures (the fleet simulator on the replayed workload)."""
    run = simulate_fleet(alt.fleet, rep.workload, seed, slo)
    return alternative_figures(alt.name, alt.fleet, run, rep, slo, alt.apis)


def replay(
    rep: Replayed,
    alternatives: Sequence[Alternative],
    slo: SLO | None,
    seed: int = 0,
    workers: int | None = None,
    actual_models: dict[str, ServedModel] | None = None,
) -> list[Figures]:
    """The actual figures, then each alternative's; alternatives run in up to `workers` processes (default: CPUs).
    `actual_models`: what each ledger tier ran (replay/quality.py `gateway_models`), for the actual quality floor."""
    workers = min(workers or os.cpu_count() or 1, len(alternatives))
    if workers <= 1:
        results = [run_alternative(a, rep, slo, seed) for a in alternatives]
    else:
        with local_pool(workers) as pool:
            futures = [pool.submit(run_alternative, a, rep, slo, seed) for a in alternatives]
            results = [f.result() for f in futures]
    return [actual_figures(rep, slo, actual_models), *results]
