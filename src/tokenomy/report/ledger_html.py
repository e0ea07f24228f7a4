"""Self-contained HTML report of the gateway's ledger (plotly.js inlined once; opens offline)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go

from tokenomy.report.html import figure_div, page, table_html
from tokenomy.report.tables import saving
from tokenomy.results import json_safe

SPEND_ID = "spend-by-tier-and-class"
TEAM_ID = "spend-by-team"
RATE_ID = "requests-per-hour"
WHAT_IF_ID = "what-if"
VALID_ID = "cost-per-valid-answer"


def _money(x: float | None) -> str:
    return "—" if x is None else f"${x:,.4f}"


def ledger_report(s: dict[str, Any], title: str = "tokenomy ledger") -> str:
    """The page for a `ledger_summary` dict."""
    t, sav, w = s["totals"], s["savings"], s["workload"]
    headline = table_html(
        [
            "requests",
            "answered",
            "attempts",
            "failed attempts",
            "spilled",
            "failed over",
            "spend",
            "saved vs " + sav["reference_tier"],
        ],
        [
            [
                f"{t['requests']:,}",
                f"{t['answered']:,}",
                f"{t['attempts']:,}",
                f"{t['failed_attempts']:,}",
                f"{t['spilled']:,}",
                f"{t['failed_over']:,}",
                _money(t["usd"]),
                "—"
                if sav["fraction_saved"] is None
                else f"{_money(sav['usd_saved'])} ({saving(sav['fraction_saved'])})"
                if sav["fraction_saved"] >= 0
                else saving(sav["fraction_saved"]),
            ]
        ],
    )
    groups = []
    for title_, key in (("Team", "by_team"), ("Tier", "by_tier"), ("Class", "by_class")):
        rows = [
            [name, f"{int(g['attempts']):,}", _money(g["usd"]), f"{int(g['tokens_in']):,}", f"{int(g['tokens_out']):,}"]
            for name, g in s[key].items()
        ]
        groups.append(
            f"<h2>Spend by {title_.lower()}</h2>"
            + table_html([title_, "attempts", "spend", "input tokens", "output tokens"], rows)
        )

    teams = go.Figure(go.Bar(x=list(s["by_team"]), y=[g["usd"] for g in s["by_team"].values()], name="spend"))
    teams.update_layout(title="Spend by team (USD)", yaxis_title="USD")
    tiers = go.Figure([go.Bar(name=name, x=[name], y=[g["usd"]]) for name, g in s["by_tier"].items()])
    tiers.update_layout(title="Spend by tier (USD)", yaxis_title="USD", showlegend=False)
    centres = [_utc(float(h) + 1800.0) for h in w["requests_per_hour"]]  # each bar spans its UTC hour
    rate = go.Figure(
        go.Bar(
            x=centres,
            y=list(w["requests_per_hour"].values()),
            width=[3_600_000 * 0.95] * len(centres),  # ms on a date axis
            name="requests",
            hovertemplate="hour around %{x|%Y-%m-%d %H:%M} UTC<br>%{y:,} requests",
        )
    )
    rate.update_layout(title="Answered requests per hour", xaxis_title="hour (UTC)", yaxis_title="requests per hour")
    hours = [float(h) for h in w["requests_per_hour"]]
    span_h = (max(hours) - min(hours)) / 3600.0 if hours else 0.0
    rate.update_xaxes(type="date", tickformat="%H:%M<br>%Y-%m-%d", dtick=3_600_000 if span_h <= 12 else None)
    names = list(s["what_if"])
    what_if = go.Figure(
        go.Bar(x=names, y=[s["what_if"][n]["usd_if_all"] for n in names], name="all traffic on this tier")
    )
    what_if.add_scatter(x=names, y=[t["usd"]] * len(names), mode="lines", name="actual spend", line={"dash": "dot"})
    what_if.update_layout(title="What the same tokens would cost on one tier (USD)", yaxis_title="USD")

    plan_rows = [
        [
            name,
            e["kind"],
            ", ".join(e["classes"]),
            f"{e['usd_per_mtok_input']:.3f} / {e['usd_per_mtok_output']:.3f}",
            _money(e["usd_if_all"]),
            e.get("replicas_for_peak") or "—",
            "—" if e.get("always_on_usd_per_day") is None else f"${e['always_on_usd_per_day']:,.0f}",
            e["price_source"],
        ]
        for name, e in s["what_if"].items()
    ]
    workload = table_html(
        ["", "p50", "p90", "p99", "mean"],
        [
            [
                name,
                *(
                    "—" if w[key][p] is None else f"{w[key][p]:,.{0 if key != 'ttft_s' else 3}f}"
                    for p in ("p50", "p90", "p99", "mean")
                ),
            ]
            for name, key in (
                ("prompt tokens", "prompt_tokens"),
                ("output tokens", "output_tokens"),
                ("TTFT s", "ttft_s"),
            )
        ],
    )
    validation = validation_section(s.get("validation") or {"requests": 0})
    dump = html.escape(json.dumps(json_safe(s), indent=1, default=str, allow_nan=False))
    sections = [
        "<h2>Summary</h2>",
        headline,
        figure_div(teams, TEAM_ID),
        figure_div(tiers, SPEND_ID),
        *groups,
        "<h2>Workload</h2>",
        workload,
        table_html(["class", "answered requests"], [[k, f"{v:,}"] for k, v in w["classes"].items()]),
        f"<p class='note'>Peak: {w['peak_requests_per_s']:.2f} requests/s, the busiest "
        f"{w.get('peak_window_s', 3600):g}-second window of answered requests (not the mean over the ledger); the "
        "what-if replica counts carry this peak.</p>",
        figure_div(rate, RATE_ID),
        "<h2>What-if, through the planner</h2>",
        table_html(
            [
                "tier",
                "kind",
                "classes",
                "$/Mtok in / out",
                "all traffic here",
                "replicas for peak",
                "always on / day",
                "price from",
            ],
            plan_rows,
        ),
        figure_div(what_if, WHAT_IF_ID),
        *validation,
        "<p class='note'>Savings compare the actual spend (every attempt, failed ones included) with the answered "
        "requests' tokens priced at the most capable tier. Self-hosted $/Mtok come from the cost model at the "
        "tier's assumed utilisation; replicas for the peak from the planner's maximum request rate at the observed "
        "mean prompt and output lengths.</p>",
        f"<details><summary>JSON</summary><pre>{dump}</pre></details>",
    ]
    return page(title, sections)


def _utc(epoch_s: float) -> str:
    """An epoch time as an ISO date-time in UTC (plotly's date axis reads it)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def validation_section(v: dict[str, Any]) -> list[str]:
    """Validated routes: cost per valid answer per class, measured vs top tier only, and the per-tier table."""
    if not v["requests"]:
        return []
    classes = list(v["by_class"])
    chart = go.Figure(
        [
            go.Bar(
                name="as served (cheap tier first)",
                x=classes,
                y=[c["usd_per_valid_answer"] for c in v["by_class"].values()],
            ),
            go.Bar(
                name="straight to the top tier",
                x=classes,
                y=[c["top_tier_usd_per_valid_answer"] for c in v["by_class"].values()],
            ),
        ]
    )
    chart.update_layout(title="Cost per valid answer (USD)", yaxis_title="USD", barmode="group")
    class_rows = [
        [
            name,
            f"{c['requests']:,}",
            f"{c['valid']:,}",
            _money(c["usd_per_valid_answer"]),
            _share(c["escalation_rate"]),
            f"{c['escalations_per_request']:.2f}",
            _money(c["judge_usd"]),
            c["top_tier"],
            _money(c["top_tier_usd_per_valid_answer"]),
        ]
        for name, c in v["by_class"].items()
    ]
    tier_rows = [
        [
            name,
            tier,
            f"{t['answers']:,}",
            _share(t["pass_rate"]),
            _money(t["usd_per_answer"]),
            _money(t["usd_per_valid_answer"]),
            f"{t['final']:,}",
        ]
        for name, tiers in v["by_class_and_tier"].items()
        for tier, t in tiers.items()
    ]
    return [
        "<h2>Validate and escalate</h2>",
        table_html(
            [
                "class",
                "requests",
                "valid",
                "per valid answer",
                "escalated",
                "escalations / request",
                "judges",
                "top tier",
                "top tier only, per valid answer",
            ],
            class_rows,
        ),
        table_html(
            ["class", "tier", "answers", "pass rate", "per answer", "per valid answer", "final answers"], tier_rows
        ),
        figure_div(chart, VALID_ID),
        "<p class='note'>Cost per valid answer: every attempt and judge call of a validated request, divided by the "
        "requests whose final answer passed. Top tier only: each request priced at its class's top tier (its own "
        "attempt there when it was escalated, else the final answer's tokens at the top tier's prices), divided by "
        "the top tier's measured pass rate.</p>",
    ]
