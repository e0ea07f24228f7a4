"""`tokenomy simulate --slo … --find-capacity`: the SLO capacity search on the simulator, as its JSON summary.

The search and its probes are `tokenomy.bench.simprobe` (the same search `bench --slo` runs against an
endpoint); this module fixes the simulated search's settings and describes what was searched.
"""

from __future__ import annotations

from typing import Any

from tokenomy.bench.search import CapacitySettings, parse_slo
from tokenomy.bench.simprobe import simulate_capacity
from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.workload import WorkloadSpec

SIM_MAX_PROBES = 16  # simulated probes are cheap (a second or less each)
SIM_MIN_WINDOW_S = 30.0  # deployment seconds of arrivals measured per probe, at least
SIM_MIN_WINDOW_ARRIVALS = 2000  # virtual time is cheap: windows long enough that queue noise cannot decide a probe


def capacity_settings(start_rps: float | None) -> CapacitySettings:
    """The simulated search: from --rate when given (else 1 req/s), 16 probes, windows of 30 s and 2,000
    arrivals or more."""
    return CapacitySettings(
        start_rps=start_rps or 1.0,
        max_probes=SIM_MAX_PROBES,
        min_window_s=SIM_MIN_WINDOW_S,
        max_window_s=3600.0,
        min_window_arrivals=SIM_MIN_WINDOW_ARRIVALS,
    )


def find_capacity_summary(
    d: Deployment, spec: WorkloadSpec, config: ReplicaConfig, slo: str, start_rps: float | None
) -> dict[str, Any]:
    """The capacity search as JSON: the rate found (req/s per replica), every probe and why it failed."""
    terms = parse_slo(slo)
    found = simulate_capacity(d, spec, config, terms, capacity_settings(start_rps))
    return {
        "slo": [str(t) for t in terms],
        "deployment": {"model": d.model.id, "gpu": d.gpu.id, "tp": d.tp, "pp": d.pp, "precision": d.fmt.name},
        "workload": {"isl": spec.isl, "osl": spec.osl, "burstiness": spec.burstiness, "seed": spec.seed},
        "slo_search": found.to_json(),
    }
