"""`tokenomy replay SOURCE`: what the traffic that happened would have cost and how it would have run elsewhere."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tokenomy.catalog.errors import CatalogError
from tokenomy.results import dumps

if TYPE_CHECKING:
    from tokenomy.replay.alternatives import Alternative
    from tokenomy.replay.compare import Figures
    from tokenomy.replay.quality import ServedModel
    from tokenomy.replay.sources import Replayed
    from tokenomy.sim.run import SLO


def _fail(message: str) -> None:
    Console(stderr=True, soft_wrap=True, emoji=False, highlight=False).print(
        f"[bold red]error:[/] {escape(' '.join(message.split()))}"
    )
    raise typer.Exit(2)


def _usd(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"${x:,.2f}"


def _ms(stats: dict[str, float], key: str) -> str:
    v = stats.get(key)
    return "–" if v is None else f"{v * 1e3:,.0f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def figures_table(rows: list[Figures], title: str) -> Table:
    """Actual and alternatives side by side (whole replayed period, all tiers)."""
    t = Table(title=escape(title), title_justify="left")
    cols = ("", "requests", "cost (billed)", "fleet bill", "$/Mtok", "SLO met", "TTFT p50/p90 ms", "TPOT p50/p90 ms")
    for col in (*cols, "spilled"):
        t.add_column(col, justify="left" if not col else "right")
    for f in rows:
        t.add_row(
            escape(f.name),
            f"{f.completed:,}/{f.requests:,}",
            _usd(f.usd),
            _usd(f.fleet_usd),
            _usd(f.usd_per_mtok),
            _pct(f.slo_attainment),
            f"{_ms(f.ttft_s, 'p50')}/{_ms(f.ttft_s, 'p90')}",
            f"{_ms(f.tpot_s, 'p50')}/{_ms(f.tpot_s, 'p90')}",
            _pct(f.spilled_share),
        )
    return t


def teams_table(rows: list[Figures]) -> Table | None:
    teams = sorted({team for f in rows for team in f.usd_by_team})
    if not teams or teams == ["(none)"]:
        return None
    t = Table(title="cost per team (whole replayed period)", title_justify="left")
    t.add_column("team")
    for f in rows:
        t.add_column(escape(f.name), justify="right")
    for team in teams:
        t.add_row(escape(team), *(_usd(f.usd_by_team.get(team)) if f.usd_by_team else "–" for f in rows))
    return t


def quality_table(rows: list[Figures]) -> tuple[Table | None, list[str]]:
    """Per class and benchmark, the lowest published score among the models that served the class, per row;
    the reasons for 'unknown' as numbered notes."""
    from tokenomy.replay.compare import quality_cells

    header, body, notes = quality_cells(rows)
    if not body:
        return None, notes
    t = Table(title="quality floor per class (lowest published score among the models that served it)")
    t.title_justify = "left"
    for i, col in enumerate(header):
        t.add_column(escape(col), justify="left" if i < 2 else "right")
    for cells in body:
        t.add_row(*(escape(c) for c in cells))
    return t, notes


def replay_command(
    source: Annotated[
        str, typer.Argument(help="gateway ledger (SQLite file or postgresql:// URL), bench --requests-jsonl, or trace")
    ],
    alternatives: Annotated[
        Path | None, typer.Option(help="YAML: alternatives (name + fleet file) and an optional slo")
    ] = None,
    fleet: Annotated[
        list[Path] | None, typer.Option(help="a fleet YAML (as simulate --fleet) to replay on; repeat for more")
    ] = None,
    slo_ttft: Annotated[float | None, typer.Option(help="TTFT objective, seconds (overrides the file's)")] = None,
    slo_tpot: Annotated[float | None, typer.Option(help="TPOT objective, seconds (overrides the file's)")] = None,
    seed: Annotated[int, typer.Option(help="random seed of the simulator (API latencies)")] = 0,
    workers: Annotated[int | None, typer.Option(help="processes for the alternatives (default: CPUs)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report")] = None,
    time_scale: Annotated[float, typer.Option(help="multiply the source's times (a run on twin --speedup K: K)")] = 1.0,
    gateway_config: Annotated[
        Path | None, typer.Option(help="the gateway.yaml the ledger was written under: what each tier ran (quality)")
    ] = None,
) -> None:
    """Replay real traffic through the fleet simulator under alternatives, beside what actually happened."""
    from tokenomy.replay.sources import SourceError, read_source, time_scaled

    try:
        alts, slo = parse_alternatives(alternatives, fleet, slo_ttft, slo_tpot)
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        rep = time_scaled(read_source(source), time_scale)
        models = ledger_models(gateway_config)
    except (CatalogError, SourceError, ValueError) as exc:
        _fail(str(exc))
        return
    rows = run_replay(rep, alts, slo, seed, workers, models)
    render_replay(rep, rows, as_json, html)


def parse_alternatives(
    alternatives: Path | None, fleet: list[Path] | None, slo_ttft: float | None, slo_tpot: float | None
) -> tuple[list[Alternative], SLO | None]:
    """The alternatives to replay on (the file's, then one per --fleet) and the SLO, --slo-* over the file's."""
    from tokenomy.replay.alternatives import alternative_from_file, load_alternatives
    from tokenomy.sim.run import SLO

    alts: list[Alternative] = []
    slo = None
    if alternatives is not None:
        alts, slo = load_alternatives(alternatives)
    for path in fleet or []:
        alts.append(alternative_from_file(path.stem, path))
    if not alts:
        raise ValueError("give --alternatives FILE or at least one --fleet FILE to replay on")
    for flag, value in (("--slo-ttft", slo_ttft), ("--slo-tpot", slo_tpot)):
        if value is not None and not value > 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    if slo_ttft is not None or slo_tpot is not None:
        base = slo or SLO()
        slo = SLO(slo_ttft if slo_ttft is not None else base.ttft_s, slo_tpot or base.tpot_s, base.e2e_s)
    return alts, slo


def ledger_models(path: Path | None) -> dict[str, ServedModel] | None:
    """What each tier of a gateway config ran (None without one)."""
    if path is None:
        return None
    from tokenomy.gateway.config import load_config
    from tokenomy.replay.quality import gateway_models

    return gateway_models(load_config(path))


def run_replay(
    rep: Replayed,
    alts: list[Alternative],
    slo: SLO | None,
    seed: int,
    workers: int | None,
    models: dict[str, ServedModel] | None = None,
) -> list[Figures]:
    """The replay under every alternative (tokenomy.replay.run), skipped requests warned about on stderr."""
    from tokenomy.replay.run import replay

    err = Console(stderr=True, emoji=False)
    for reason, n in rep.skipped.items():
        err.print(f"[yellow]warning:[/] {n:,} requests skipped: {escape(reason)}")
    with err.status(f"replaying {len(rep):,} requests on {len(alts)} alternative(s)"):
        return replay(rep, alts, slo, seed, workers, models)


def render_replay(rep: Replayed, rows: list[Figures], as_json: bool, html: Path | None) -> None:
    """The HTML report when asked, then JSON or the figures and per-team tables."""
    span_h = float(rep.workload.arrival_s[-1]) / 3600 if len(rep) else 0.0
    title = f"{rep.kind} {rep.source}: {len(rep):,} requests over {span_h:,.2f} h"
    if html is not None:
        from tokenomy.replay.html import replay_report

        html.write_text(replay_report(rows, f"{title}; {rep.arrivals}", rep.skipped))
    if as_json:
        out = {"source": rep.source, "kind": rep.kind, "arrivals": rep.arrivals, "skipped": rep.skipped, "figures": []}
        out["figures"] = [dataclasses.asdict(f) for f in rows]
        sys.stdout.write(dumps(out) + "\n")
        return
    console = Console(emoji=False)
    console.print(figures_table(rows, title))
    console.print(f"arrivals: {escape(rep.arrivals)}", soft_wrap=True)
    team = teams_table(rows)
    if team is not None:
        console.print(team)
    quality, notes = quality_table(rows)
    if quality is not None:
        console.print(quality)
        for note in notes:
            console.print(escape(note), soft_wrap=True)
    if html is not None:
        console.print(f"written: {escape(str(html))}")
