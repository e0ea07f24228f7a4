"""`tokenomy simulate --slo … --find-capacity`: the search's output in words (the search itself is
`tokenomy.bench.simcapacity`)."""

from __future__ import annotations

from typing import Any


def capacity_lines(summary: dict[str, Any]) -> list[str]:
    """The search in words, as `bench` prints it (per replica; deployment time)."""
    from tokenomy.cli.bench import search_lines

    dep, wl = summary["deployment"], summary["workload"]
    head = (
        f"capacity search on the simulator: {dep['model']} on {dep['gpu']} tp={dep['tp']} pp={dep['pp']} "
        f"({dep['precision']}), {wl['isl']} in / {wl['osl']} out, Poisson arrivals; SLO {', '.join(summary['slo'])}; "
        "rates per replica"
    )
    return [head, *search_lines(summary["slo_search"], unit="req/s")]
