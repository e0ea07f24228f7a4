"""`tokenomy ledger report`: what the traffic cost, what it looked like, and what it would cost elsewhere.

- spend by team, tier and class (every attempt's cost counts, failed ones too);
- the workload actually seen: prompt and output lengths, class mix, requests per hour;
- savings against sending every answered request to the most capable tier (the one good enough
  for every class, the priciest if several);
- a what-if through the planner per tier: the same tokens at that tier's $/Mtok, and for
  self-hosted tiers the replicas the busiest hour needs and their always-on cost per day;
- validated routes (escalate.py): cost per valid answer by class and by class and tier, escalation rates,
  measured pass rates, and what the same requests would have cost sent straight to the class's top tier.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from tokenomy.costmodel.plan import Workload, plan
from tokenomy.gateway.config import GatewayConfig
from tokenomy.gateway.router import self_hosted_deployment, tier_prices


def _group(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"attempts": 0, "usd": 0.0, "tokens_in": 0, "tokens_out": 0})
    for r in rows:
        g = out[r[key] or "—"]
        g["attempts"] += 1
        g["usd"] += r["cost_usd"] or 0.0
        g["tokens_in"] += r["tokens_in"] or 0
        g["tokens_out"] += r["tokens_out"] or 0
    return dict(sorted(out.items()))


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    a = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


PEAK_WINDOW_S = 60.0  # the peak is the busiest minute: replicas sized on an hour's mean would miss its bursts


def busiest_rate(ts_s: list[float], window_s: float = PEAK_WINDOW_S) -> float:
    """Arrivals per second in the busiest `window_s` window (sliding, starting at an arrival).

    A ledger shorter than the window counts its arrivals over its own span (at least 1 s).
    """
    t = np.sort(np.asarray(ts_s, dtype=float))
    if t.size == 0:
        return 0.0
    span = float(t[-1] - t[0])
    if span < window_s:
        return t.size / max(span, 1.0)
    ends = np.searchsorted(t, t + window_s, side="left")  # arrivals in [t_i, t_i + window)
    return float((ends - np.arange(t.size)).max()) / window_s


def most_capable_tier(config: GatewayConfig) -> str:
    """The tier good enough for the most classes; among those, the one listed last (tiers go cheap → capable)."""
    best = max(len(t.classes) for t in config.tiers)
    return [t.name for t in config.tiers if len(t.classes) == best][-1]


def ledger_summary(config: GatewayConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the report shows, as a JSON-ready dict."""
    answered = [r for r in rows if r["status"] == "ok"]
    requests = {r["request_id"] for r in rows}
    t0 = min((r["ts_s"] for r in rows), default=0.0)
    t1 = max((r["ts_s"] + (r["e2e_s"] or 0.0) for r in rows), default=0.0)
    hours = max((t1 - t0) / 3600.0, 1 / 3600.0)
    per_hour: dict[int, int] = defaultdict(int)
    for r in answered:
        per_hour[int(r["ts_s"] // 3600)] += 1
    peak_rps = busiest_rate([r["ts_s"] for r in answered])
    isl = float(np.mean([r["tokens_in"] for r in answered])) if answered else 0.0
    osl = float(np.mean([r["tokens_out"] for r in answered])) if answered else 0.0
    tokens_in = sum(r["tokens_in"] for r in answered)
    tokens_out = sum(r["tokens_out"] for r in answered)
    actual_usd = sum(r["cost_usd"] or 0.0 for r in rows)

    what_if = {}
    for t in config.tiers:
        d = self_hosted_deployment(t) if t.self_hosted else None
        prices = tier_prices(t, d)
        entry: dict[str, Any] = {
            "kind": "self-hosted" if d else "API",
            "classes": t.classes,
            "usd_per_mtok_input": prices.usd_per_mtok_input,
            "usd_per_mtok_output": prices.usd_per_mtok_output,
            "price_source": prices.source,
            "usd_if_all": sum(prices.usd(r["tokens_in"], r["tokens_out"]) for r in answered),
        }
        if d is not None and answered and t.deployment is not None:
            spec = t.deployment
            per_gpu = spec.usd_per_hour / spec.count if spec.usd_per_hour is not None else d.gpu.usd_per_gpu_hour()
            p = plan(d, Workload(max(int(isl), 1), max(int(osl), 1), spec.utilisation), spec.count, per_gpu)
            if p["fits"] and p.get("usd_per_hour"):
                replicas = max(math.ceil(peak_rps / p["max_requests_per_s"]), 1) if p["max_requests_per_s"] else None
                entry.update(
                    {
                        "planned_usd_per_mtok_input": p["usd_per_mtok"]["input"],
                        "planned_usd_per_mtok_output": p["usd_per_mtok"]["output"],
                        "max_requests_per_s_per_replica": p["max_requests_per_s"],
                        "replicas_for_peak": replicas,
                        "always_on_usd_per_day": replicas * p["usd_per_hour"] * 24 if replicas else None,
                        "ttft_s_unloaded": p["ttft_s"],
                    }
                )
        what_if[t.name] = entry
    top = most_capable_tier(config)
    top_usd = what_if[top]["usd_if_all"]
    return {
        "window": {"from_s": t0, "to_s": t1, "hours": hours},
        "totals": {
            "requests": len(requests),
            "answered": len(answered),
            "attempts": len(rows),
            "failed_attempts": sum(1 for r in rows if r["status"] in ("upstream_error", "stream_error")),
            "spilled": sum(1 for r in answered if "spill:" in (r["reason"] or "")),
            "failed_over": sum(1 for r in answered if "failover:" in (r["reason"] or "")),
            "usd": actual_usd,
            # requests a stopped gateway left open, billed at restart (ledger.recover): their cost is in "usd"
            "reconciled": sum(1 for r in rows if r["status"] == "reconciled"),
            "reconciled_usd": sum(r["cost_usd"] or 0.0 for r in rows if r["status"] == "reconciled"),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
        },
        "by_team": _group(rows, "team"),
        "by_tier": _group(rows, "tier"),
        "by_class": _group(rows, "request_class"),
        "workload": {
            "prompt_tokens": _percentiles([r["tokens_in"] for r in answered]),
            "output_tokens": _percentiles([r["tokens_out"] for r in answered]),
            "ttft_s": _percentiles([r["ttft_s"] for r in answered if r["ttft_s"] is not None]),
            "classes": {k: int(v["attempts"]) for k, v in _group(answered, "request_class").items()},
            "requests_per_hour": {str(h * 3600): n for h, n in sorted(per_hour.items())},
            "peak_requests_per_s": peak_rps,
            "peak_window_s": PEAK_WINDOW_S,
        },
        "savings": {
            "reference_tier": top,
            "usd_if_all_on_reference": top_usd,
            "usd_actual": actual_usd,
            "usd_saved": top_usd - actual_usd,
            "fraction_saved": (top_usd - actual_usd) / top_usd if top_usd else None,
        },
        "what_if": what_if,
        "validation": escalation_summary(config, rows),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def top_tier_for(config: GatewayConfig, request_class: str) -> str:
    """The tier a class's chain ends on: the priciest tier serving the class (the most capable tier otherwise)."""
    serving = [t for t in config.tiers if request_class in t.classes]
    if not serving:
        return most_capable_tier(config)
    prices = {t.name: tier_prices(t, self_hosted_deployment(t) if t.self_hosted else None) for t in serving}
    return max(serving, key=lambda t: prices[t.name].usd(1000, 250)).name


def escalation_summary(config: GatewayConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Validated requests (rows with per-request columns): cost per valid answer, escalations, pass rates, top-tier.

    Per class: usd_per_valid_answer = Σ request_usd / #passed; escalation_rate = share of requests with ≥ 1
    escalation. Per class and tier: pass_rate = passes / validated answers; usd_per_valid_answer = the tier's
    attempt cost / its passes. Top tier only: each request priced at the class's top tier (its own attempt's
    tokens when it was asked, else the final answer's), divided by requests × the top tier's measured pass rate
    (1 when it was never measured).
    """
    finals = [r for r in rows if r.get("request_usd") is not None and r.get("final_tier") is not None]
    validated_ids = {r["request_id"] for r in finals}
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["request_id"] in validated_ids:
            by_request[r["request_id"]].append(r)
    tier_prices_ = {t.name: tier_prices(t, self_hosted_deployment(t) if t.self_hosted else None) for t in config.tiers}
    by_class: dict[str, Any] = {}
    by_class_and_tier: dict[str, dict[str, Any]] = {}
    for request_class in sorted({r["request_class"] for r in finals}):
        class_finals = [r for r in finals if r["request_class"] == request_class]
        n, valid = len(class_finals), sum(1 for r in class_finals if r["passed"])
        usd = sum(r["request_usd"] for r in class_finals)
        tiers: dict[str, dict[str, Any]] = defaultdict(lambda: {"answers": 0, "passes": 0, "usd": 0.0, "final": 0})
        for f in class_finals:
            tiers[f["final_tier"]]["final"] += 1
            for r in by_request[f["request_id"]]:
                if r["validation"] in ("pass", "fail"):
                    t = tiers[r["tier"]]
                    t["answers"] += 1
                    t["passes"] += r["validation"] == "pass"
                    t["usd"] += r["cost_usd"] or 0.0
        for t in tiers.values():
            t["pass_rate"] = _ratio(t["passes"], t["answers"])
            t["usd_per_answer"] = _ratio(t["usd"], t["answers"])
            t["usd_per_valid_answer"] = _ratio(t["usd"], t["passes"])
        top = top_tier_for(config, request_class)
        top_rate = tiers[top]["pass_rate"] if top in tiers and tiers[top]["answers"] else None
        top_usd = sum(_top_tier_usd(by_request[f["request_id"]], f, top, tier_prices_[top]) for f in class_finals)
        by_class[request_class] = {
            "requests": n,
            "valid": valid,
            "usd": usd,
            "usd_per_request": usd / n,
            "usd_per_valid_answer": _ratio(usd, valid),
            "escalation_rate": sum(1 for r in class_finals if r["escalations"]) / n,
            "escalations_per_request": sum(r["escalations"] or 0 for r in class_finals) / n,
            "judge_usd": sum(
                r["cost_usd"] or 0.0
                for f in class_finals
                for r in by_request[f["request_id"]]
                if r["status"] == "judge"
            ),
            "top_tier": top,
            "top_tier_pass_rate": top_rate,
            "top_tier_usd": top_usd,
            "top_tier_usd_per_valid_answer": _ratio(top_usd, n * (1.0 if top_rate is None else top_rate)),
        }
        by_class_and_tier[request_class] = dict(sorted(tiers.items()))
    return {"requests": len(finals), "by_class": by_class, "by_class_and_tier": by_class_and_tier}


def _top_tier_usd(attempts: list[dict[str, Any]], final: dict[str, Any], top: str, prices: Any) -> float:
    """One request's cost on the top tier: its own attempt there, else the final answer's tokens at its prices."""
    own = [r for r in attempts if r["tier"] == top and r["status"] == "ok"]
    if own:
        return own[0]["cost_usd"] or 0.0
    return prices.usd(final["tokens_in"], final["tokens_out"])


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The report as plain text lines."""
    t, sav = s["totals"], s["savings"]
    lines = [
        f"{t['requests']:,} requests ({t['answered']:,} answered, {t['attempts']:,} attempts, "
        f"{t['failed_attempts']:,} failed, {t['spilled']:,} spilled, {t['failed_over']:,} failed over) "
        f"over {s['window']['hours']:.2f} h: ${t['usd']:.4f} "
        f"for {t['tokens_in']:,} input + {t['tokens_out']:,} output tokens",
    ]
    if t.get("reconciled"):
        lines.append(
            f"  {t['reconciled']:,} requests left open by a stopped gateway were billed at restart "
            f"(status 'reconciled'): ${t['reconciled_usd']:.4f}"
        )
    for title, key in (("team", "by_team"), ("tier", "by_tier"), ("class", "by_class")):
        for name, g in s[key].items():
            lines.append(
                f"  by {title:<5} {name:<14} {int(g['attempts']):>7,} attempts  ${g['usd']:>10.4f}  "
                f"{int(g['tokens_in']):>10,} in  {int(g['tokens_out']):>9,} out"
            )
    w = s["workload"]
    if w["prompt_tokens"]["p50"] is not None:
        lines.append(
            f"workload: prompt tokens p50 {w['prompt_tokens']['p50']:.0f} / p90 {w['prompt_tokens']['p90']:.0f}, "
            f"output p50 {w['output_tokens']['p50']:.0f} / p90 {w['output_tokens']['p90']:.0f}, "
            f"classes {w['classes']}, "
            f"peak {w['peak_requests_per_s']:.2f} req/s"
        )
    if sav["fraction_saved"] is not None:
        lines.append(
            f"savings: ${sav['usd_actual']:.4f} actual vs ${sav['usd_if_all_on_reference']:.4f} if everything had gone "
            f"to '{sav['reference_tier']}' ({sav['fraction_saved']:.0%} saved)"
        )
    lines += validation_lines(s["validation"])
    for name, e in s["what_if"].items():
        line = f"what-if all on {name} ({e['kind']}): ${e['usd_if_all']:.4f}"
        if e.get("replicas_for_peak"):
            line += (
                f"; the planner says {e['replicas_for_peak']} replica(s) carry the peak, "
                f"${e['always_on_usd_per_day']:,.0f}/day always on"
            )
        lines.append(line)
    return lines


def _usd(x: float | None) -> str:
    return "—" if x is None else f"${x:.6f}"


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def validation_lines(v: dict[str, Any]) -> list[str]:
    """The validated routes' part of the report as text lines (none when no route validates)."""
    if not v["requests"]:
        return []
    lines = [f"validated requests: {v['requests']:,}"]
    for name, c in v["by_class"].items():
        lines.append(
            f"  class {name:<8} {c['requests']:>6,} requests, {c['valid']:,} valid: {_usd(c['usd_per_valid_answer'])} "
            f"per valid answer; escalated {_share(c['escalation_rate'])}; straight to {c['top_tier']}: "
            f"{_usd(c['top_tier_usd_per_valid_answer'])} per valid answer"
        )
        for tier, t in v["by_class_and_tier"][name].items():
            lines.append(
                f"    tier {tier:<12} {t['answers']:>6,} answers, pass rate {_share(t['pass_rate'])}, "
                f"{_usd(t['usd_per_answer'])} per answer, {_usd(t['usd_per_valid_answer'])} per valid answer, "
                f"final for {t['final']:,}"
            )
    return lines
