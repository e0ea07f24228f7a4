"""`tokenomy plan-chain`: expected cost and latency per valid answer of an escalation chain.

Tiers come from `--tier NAME:usd=…,latency=…,pass=…` (cheapest first) or are measured from a gateway's ledger
(`--from-ledger gateway.yaml --class complex`): per tier of the class, its answers' mean cost and latency and
the share that passed validation, ordered cheapest first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from tokenomy.costmodel.escalation import EscalationTier, estimate_chain
from tokenomy.report.tables import saving

TIER_FIELDS = {
    "usd": "usd_per_request",
    "latency": "latency_s",
    "pass": "pass_rate",
    "validation_usd": "validation_usd",
    "validation_latency": "validation_latency_s",
}


def parse_tier_spec(spec: str) -> EscalationTier:
    """'small:usd=0.0002,latency=0.4,pass=0.7' → EscalationTier; ValueError names what is wrong."""
    name, sep, rest = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"--tier '{spec}': expected NAME:usd=…,latency=…,pass=…")
    values: dict[str, float] = {}
    for item in rest.split(","):
        key, _, value = item.partition("=")
        field = TIER_FIELDS.get(key.strip())
        if field is None:
            raise ValueError(f"--tier '{spec}': unknown field '{key}' (known: {', '.join(TIER_FIELDS)})")
        try:
            values[field] = float(value)
        except ValueError:
            raise ValueError(f"--tier '{spec}': '{key}' needs a number, got '{value}'") from None
        if not math.isfinite(values[field]) or values[field] < 0:
            raise ValueError(f"--tier '{spec}': '{key}' must be a finite number >= 0, got '{value}'")
    missing = [k for k, f in TIER_FIELDS.items() if f in ("usd_per_request", "pass_rate") and f not in values]
    if missing:
        raise ValueError(f"--tier '{spec}': missing {', '.join(missing)}")
    if not 0.0 <= values["pass_rate"] <= 1.0:
        raise ValueError(f"--tier '{spec}': pass must lie in [0, 1]")
    values.setdefault("latency_s", 0.0)
    return EscalationTier(name, **values)


def tiers_from_ledger(rows: list[dict[str, Any]], request_class: str) -> list[EscalationTier]:
    """Measured tiers of a class: mean cost and latency per validated answer, pass rate; cheapest first.

    An attempt's latency is its e2e_s minus the e2e_s of the request's previous row (rows time from the request's
    start); judge calls count as that tier's validation cost.
    """
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["request_class"] == request_class and (r.get("validation") or r["status"] == "judge"):
            by_request[r["request_id"]].append(r)
    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for attempts in by_request.values():
        attempts.sort(key=lambda r: r["attempt"])
        previous_s, answered = 0.0, None
        for r in attempts:
            e2e_s = r["e2e_s"] or previous_s
            if r["status"] == "judge" and answered is not None:
                stats[answered]["validation_usd"] += r["cost_usd"] or 0.0
                stats[answered]["validation_s"] += e2e_s - previous_s
            elif r.get("validation") in ("pass", "fail"):
                s = stats[r["tier"]]
                answered = r["tier"]
                s["answers"] += 1
                s["passes"] += r["validation"] == "pass"
                s["usd"] += r["cost_usd"] or 0.0
                s["latency_s"] += e2e_s - previous_s
            previous_s = e2e_s
    if not stats:
        raise ValueError(f"the ledger has no validated answers of class '{request_class}'")
    tiers = [
        EscalationTier(
            name,
            s["usd"] / s["answers"],
            s["latency_s"] / s["answers"],
            s["passes"] / s["answers"],
            s["validation_usd"] / s["answers"],
            s["validation_s"] / s["answers"],
        )
        for name, s in stats.items()
    ]
    return sorted(tiers, key=lambda t: t.attempt_usd)


def chain_report(tiers: list[EscalationTier]) -> dict[str, Any]:
    """The chain's estimate and, for comparison, its last (top) tier alone."""
    chain = estimate_chain(tiers)
    top = estimate_chain(tiers[-1:])
    return {
        "tiers": [asdict(t) for t in tiers],
        "chain": asdict(chain),
        "top_tier_only": asdict(top),
        "saving_vs_top_tier": 1.0 - chain.usd_per_valid_answer / top.usd_per_valid_answer
        if top.usd_per_valid_answer
        else None,
    }


def chain_lines(report: dict[str, Any]) -> list[str]:
    """The report as text lines."""
    c, top = report["chain"], report["top_tier_only"]
    lines = [f"{'tier':<12} {'$/request':>11} {'latency s':>10} {'pass rate':>10} {'asked':>7}"]
    for t, reach in zip(report["tiers"], c["reach_probability"], strict=True):
        usd = t["usd_per_request"] + t["validation_usd"]
        latency_s = t["latency_s"] + t["validation_latency_s"]
        lines.append(f"{t['name']:<12} {usd:>11.6f} {latency_s:>10.3f} {t['pass_rate']:>10.1%} {reach:>7.1%}")
    lines += [
        f"chain {' → '.join(c['tiers'])}:",
        f"  cost per valid answer   ${c['usd_per_valid_answer']:.6f}  (${c['usd_per_request']:.6f} per request)",
        f"  latency                 {c['latency_s']:.3f} s per request, "
        f"{c['latency_of_valid_s']:.3f} s per valid answer",
        f"  valid probability       {c['valid_probability']:.1%}",
        f"  escalations / request   {c['escalations_per_request']:.3f}",
    ]
    if len(c["tiers"]) > 1:
        be = c["break_even_pass_rate"]
        if be is not None and be > 1.0:
            lines.append(
                f"  break-even pass rate    none for {c['tiers'][0]}: even passing every answer, trying it first "
                "costs more per valid answer"
            )
        else:
            lines.append(
                f"  break-even pass rate    {'—' if be is None else f'{be:.1%}'} for {c['tiers'][0]} "
                "(below it, trying it first costs more per valid answer)"
            )
        saving_text = saving(report["saving_vs_top_tier"])
        lines.append(
            f"top tier only ({top['tiers'][0]}): ${top['usd_per_valid_answer']:.6f} per valid answer, "
            f"{top['latency_of_valid_s']:.3f} s; the chain {saving_text}"
        )
    return lines
