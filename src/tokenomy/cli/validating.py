"""`tokenomy validate`: read the file (broken rows reported, not fatal), predict or cross-validate, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tokenomy.calibrate.measurements import read_measurement_file, read_measurement_files, shipped_measurement_files
from tokenomy.calibrate.validate import metric_loads
from tokenomy.catalog.errors import CatalogError


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def validate_summary_table(result: dict[str, Any]) -> Table:
    """Per metric: rows predicted, skipped, median and p90 APE, and the 80 % interval's coverage."""
    table = Table(title="tokenomy validate", header_style="bold")
    for col in ("metric", "predicted", "skipped", "median APE", "p90 APE", "in 80%"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for metric, m in result["metrics"].items():
        cov = "—" if m.get("coverage_80") is None else f"{m['coverage_80']:.0%}"
        table.add_row(escape(metric), str(m["n"]), str(m["skipped"]), _pct(m["median_ape"]), _pct(m["p90_ape"]), cov)
        for load, s in metric_loads(result.get("loads", {}), metric):
            cov = "—" if s["coverage_80"] is None else f"{s['coverage_80']:.0%}"
            table.add_row(f"  {escape(load)} load", str(s["n"]), "", _pct(s["median_ape"]), _pct(s["p90_ape"]), cov)
    return table


def cv_tables(report: dict[str, Any]) -> list[Table]:
    """One table per grouping: out-of-sample error and coverage per metric, then per metric and held-out group."""
    tables = []
    for grouping, g in report["groupings"].items():
        t = Table(title=f"leave one {grouping.replace('_', ' ')} out (out of sample)", header_style="bold")
        for col in ("metric | held-out group", "n", "median APE", "p90 APE", "in 80%"):
            t.add_column(col, justify="left" if col.startswith("metric") else "right")
        for metric, m in g["metrics"].items():
            cov = "—" if m["coverage_80"] is None else f"{m['coverage_80']:.0%}"
            t.add_row(f"[bold]{escape(metric)}[/]", str(m["n"]), _pct(m["median_ape"]), _pct(m["p90_ape"]), cov)
            for load, s in metric_loads(g.get("loads", {}), metric):  # one metric measured under several loads
                cov = "—" if s["coverage_80"] is None else f"{s['coverage_80']:.0%}"
                t.add_row(f"  {escape(load)} load", str(s["n"]), _pct(s["median_ape"]), _pct(s["p90_ape"]), cov)
            for key, s in g["groups"].items():
                if key.startswith(f"{metric} | "):
                    group = key.split(" | ", 1)[1]
                    t.add_row(f"  {escape(group)}", str(s["n"]), _pct(s["median_ape"]), _pct(s["p90_ape"]), "")
        tables.append(t)
    return tables


def run_validate_command(
    file: Path | None,
    engine_profile: str | None,
    as_json: bool,
    worst: int,
    strict: bool,
    cv: bool,
    console: Console,
    err_console: Console,
) -> dict[str, Any]:
    """Read, check, predict (or cross-validate), and print; returns what was printed as data.

    Raises CatalogError for a file that cannot be read at all, or under --strict for any broken or skipped row.
    """
    from tokenomy.calibrate.validate import validate, worst_rows

    # no FILE: everything shipped (measurements.csv and every measurements_*.csv, e.g. the ROCm vLLM rows)
    read = read_measurement_file(Path(str(file))) if file else read_measurement_files(shipped_measurement_files())
    if strict and read.broken:
        raise CatalogError(f"{read.broken[0]} ({len(read.broken)} broken row(s); drop --strict to skip them)")
    for problem in read.broken:
        err_console.print(f"[yellow]skipped broken row:[/] {escape(str(problem))}")
    if cv:
        return _run_cv(read.rows, read.broken, as_json, console, err_console)
    from tokenomy.catalog.profiles import load_profile

    profile = load_profile(engine_profile) if engine_profile else None
    result = validate(read.rows, profile)
    result["broken_rows"] = [str(p) for p in read.broken]
    if strict and result["skipped_reasons"]:
        reason, n = next(iter(result["skipped_reasons"].items()))
        raise CatalogError(f"{read.path}: {n} row(s) cannot be predicted: {reason} (drop --strict to skip them)")
    if as_json:
        return result
    console.print(validate_summary_table(result))
    skipped = sum(result["skipped_reasons"].values())
    console.print(
        f"{len(read.rows)} rows read from {escape(read.path)}, {len(read.broken)} broken, {skipped} skipped; "
        "80% intervals from cross-validated residuals (catalog/data/residual_quantiles.json)"
    )
    for reason, n in result["skipped_reasons"].items():
        console.print(f"  skipped {n}: {escape(reason)}")
    for r in worst_rows(result, worst):
        iv = r.get("interval_80")
        band = f", 80% interval {iv[0]:.4g}–{iv[1]:.4g}" if iv else ""
        console.print(
            escape(
                f"  worst: {r['id']} ({r.get('file') or 'line'}:{r['line']}) {r['engine']} {r['model']} {r['gpu']} "
                f"tp{r['tp']} "
                f"{r['precision']} {r['lengths']} {r['metric']}: predicted {r['predicted']:.4g}{band}, "
                f"measured {r['measured']:.4g} ({r['ape']:.0%})"
            )
        )
    return result


def _run_cv(rows: list, broken: list, as_json: bool, console: Console, err_console: Console) -> dict[str, Any]:
    """Leave-one-group-out cross-validation of the shipped fitting recipe on `rows`."""
    from tokenomy.calibrate.fit import OTHER_ENGINES
    from tokenomy.calibrate.validate import cross_validate, cv_report
    from tokenomy.catalog.profiles import load_profile

    bases = {name: load_profile(name) for name in ("tensorrt-llm", *OTHER_ENGINES)}
    progress = None if as_json else (lambda s: err_console.print(f"[dim]cv: {escape(s)}[/]"))
    report = cv_report(cross_validate(rows, bases, progress=progress))
    report["broken_rows"] = [str(p) for p in broken]
    if as_json:
        return report
    for table in cv_tables(report):
        console.print(table)
    console.print(
        f"{report['fits']} refits; each group predicted by profiles fitted without it; "
        "its 80% intervals from the out-of-sample residuals of rows outside it"
    )
    return report
