"""Escalation chains for `tokenomy plan-chain`: tiers measured from a gateway's ledger, and the chain's report.

The chain's expected cost and latency per valid answer are costmodel/escalation.py's closed forms; this module
measures the tiers of one request class from ledger rows and compares the chain with its top tier alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenomy.costmodel.escalation import ChainEstimate, EscalationTier, estimate_chain


@dataclass(frozen=True)
class ChainReport:
    """A chain's estimate beside its last (top) tier alone, and the saving of the chain against that tier."""

    tiers: tuple[EscalationTier, ...]
    chain: ChainEstimate
    top_tier_only: ChainEstimate
    saving_vs_top_tier: float | None  # 1 - chain $/valid answer / top tier's; None when the top tier costs nothing

    def to_json(self) -> dict[str, Any]:
        """The report as `plan-chain --json` prints it."""
        return {
            "tiers": [asdict(t) for t in self.tiers],
            "chain": asdict(self.chain),
            "top_tier_only": asdict(self.top_tier_only),
            "saving_vs_top_tier": self.saving_vs_top_tier,
        }


def chain_report(tiers: Sequence[EscalationTier]) -> ChainReport:
    """The chain's estimate and, for comparison, its last (top) tier alone."""
    chain = estimate_chain(tiers)
    top = estimate_chain(tiers[-1:])
    saving = 1.0 - chain.usd_per_valid_answer / top.usd_per_valid_answer if top.usd_per_valid_answer else None
    return ChainReport(tuple(tiers), chain, top, saving)


def tiers_from_ledger(rows: Sequence[Mapping[str, Any]], request_class: str) -> list[EscalationTier]:
    """Measured tiers of a class: mean cost and latency per validated answer, pass rate; cheapest first.

    An attempt's latency is its e2e_s minus the e2e_s of the request's previous row (rows time from the request's
    start); judge calls count as that tier's validation cost.
    """
    by_request: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["request_class"] == request_class and (r.get("validation") or r["status"] == "judge"):
            by_request[r["request_id"]].append(r)
    stats: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for attempts in by_request.values():
        _add_attempts(sorted(attempts, key=lambda r: r["attempt"]), stats)
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


def _add_attempts(attempts: list[Mapping[str, Any]], stats: dict[str, dict[str, float]]) -> None:
    """Add one request's attempts (in order) to the per-tier sums: answers, passes, $, latency, validation."""
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


def ledger_tiers(gateway_yaml: Path, request_class: str) -> list[EscalationTier]:
    """The tiers of a class measured from the ledger of the gateway configured in `gateway_yaml`."""
    from tokenomy.gateway.config import load_config
    from tokenomy.gateway.ledger import Database

    cfg = load_config(gateway_yaml)
    return tiers_from_ledger(Database(cfg.ledger.url, cfg.state_dir).attempts(), request_class)
