"""`tokenomy plan-chain`: parse `--tier` specs and render the chain's report (tokenomy.advise.chain).

Tiers come from `--tier NAME:usd=…,latency=…,pass=…` (cheapest first) or are measured from a gateway's ledger
(`--from-ledger gateway.yaml --class complex`, `tokenomy.advise.chain.ledger_tiers`).
"""

from __future__ import annotations

import math

from tokenomy.advise.chain import ChainReport
from tokenomy.costmodel.escalation import EscalationTier
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


def chain_lines(report: ChainReport) -> list[str]:
    """The report as text lines."""
    c, top = report.chain, report.top_tier_only
    lines = [f"{'tier':<12} {'$/request':>11} {'latency s':>10} {'pass rate':>10} {'asked':>7}"]
    for t, reach in zip(report.tiers, c.reach_probability, strict=True):
        lines.append(
            f"{t.name:<12} {t.attempt_usd:>11.6f} {t.attempt_latency_s:>10.3f} {t.pass_rate:>10.1%} {reach:>7.1%}"
        )
    lines += [
        f"chain {' → '.join(c.tiers)}:",
        f"  cost per valid answer   ${c.usd_per_valid_answer:.6f}  (${c.usd_per_request:.6f} per request)",
        f"  latency                 {c.latency_s:.3f} s per request, {c.latency_of_valid_s:.3f} s per valid answer",
        f"  valid probability       {c.valid_probability:.1%}",
        f"  escalations / request   {c.escalations_per_request:.3f}",
    ]
    if len(c.tiers) > 1:
        be = c.break_even_pass_rate
        if be is not None and be > 1.0:
            lines.append(
                f"  break-even pass rate    none for {c.tiers[0]}: even passing every answer, trying it first "
                "costs more per valid answer"
            )
        else:
            lines.append(
                f"  break-even pass rate    {'—' if be is None else f'{be:.1%}'} for {c.tiers[0]} "
                "(below it, trying it first costs more per valid answer)"
            )
        lines.append(
            f"top tier only ({top.tiers[0]}): ${top.usd_per_valid_answer:.6f} per valid answer, "
            f"{top.latency_of_valid_s:.3f} s; the chain {saving(report.saving_vs_top_tier)}"
        )
    return lines
