"""`tokenomy gateway` and `tokenomy ledger`: serve the gateway, manage keys, report on the ledger."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from tokenomy.catalog.errors import CatalogError

gateway_app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    help="OpenAI-compatible gateway: route to the cheapest good-enough tier, with budgets and a ledger.",
)
keys_app = typer.Typer(add_completion=False, help="Virtual API keys (stored hashed in the gateway's database).")
ledger_app = typer.Typer(add_completion=False, help="What the gateway's traffic cost, and what it could have cost.")
gateway_app.add_typer(keys_app, name="keys")

ConfigOption = Annotated[Path, typer.Option("--config", help="gateway.yaml")]
CONFIG_ENV = "TOKENOMY_GATEWAY_CONFIG"  # how `--workers N` tells each worker process its gateway.yaml


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _config(path: Path):  # noqa: ANN202
    from tokenomy.gateway.config import load_config

    try:
        return load_config(path)
    except CatalogError as exc:
        _fail(str(exc))


@gateway_app.callback()
def serve(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="gateway.yaml")] = None,
    host: Annotated[str | None, typer.Option(help="listen address (default: the config's)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: the config's)")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="worker processes on one port; more than 1 needs shared.redis_url (budgets)")
    ] = 1,
) -> None:
    """Serve the gateway (SIGINT/SIGTERM shut it down gracefully, writing every ledger row)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        _fail("--config gateway.yaml is required (see examples/gateway.yaml)")
        return
    import uvicorn

    from tokenomy.gateway.app import build_app

    cfg = _config(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tokenomy.gateway.serve import run_server, server_options  # slow-client limits, "listening on" line

    options = {"host": host or cfg.host, "port": cfg.port if port is None else port, **server_options(cfg)}
    if workers > 1:
        if not cfg.shared.redis_url:
            _fail(
                f"--workers {workers} needs shared budgets: set shared.redis_url in {config} "
                "(e.g. redis://127.0.0.1:6379/0); each worker is a separate process"
            )
        os.environ[CONFIG_ENV] = str(config.resolve())
        uvicorn.run("tokenomy.cli.gateway:worker_app", factory=True, workers=workers, **options)
        return
    try:
        app = build_app(cfg)
    except (CatalogError, RuntimeError, ValueError) as exc:
        _fail(str(exc))
        return
    run_server(app, options)


def worker_app():  # noqa: ANN201
    """The app of one `--workers` process, built from the gateway.yaml named in $TOKENOMY_GATEWAY_CONFIG."""
    from tokenomy.gateway.app import build_app
    from tokenomy.gateway.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return build_app(load_config(Path(os.environ[CONFIG_ENV])))


def _keystore(config: Path):  # noqa: ANN202
    from tokenomy.gateway.keys import KeyStore
    from tokenomy.gateway.ledger import Database

    cfg = _config(config)
    try:
        store = KeyStore(Database(cfg.ledger.url, cfg.state_dir), cfg.state_dir, cfg.key_secret_env)
    except (RuntimeError, ValueError) as exc:
        _fail(str(exc))
    if cfg.shared.redis_url:  # running gateways hear of a revocation at once (else at their next poll)
        from tokenomy.gateway.shared import publish_change

        url, namespace = cfg.shared.redis_url, cfg.shared.namespace

        def announce() -> None:
            publish_change(url, namespace)

        store.on_change = announce
    return store


@keys_app.command("create")
def keys_create(
    config: ConfigOption,
    team: Annotated[str, typer.Option(help="the team the key's spend counts against")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
) -> None:
    """Create a key; it is printed once (only its HMAC digest is stored)."""
    record, key = _keystore(config).create(team, name)
    typer.echo(f"key_id: {record.key_id}\nteam:   {record.team}\nkey:    {key}")


@keys_app.command("list")
def keys_list(config: ConfigOption) -> None:
    """List active keys (ids and teams, never the keys)."""
    for k in _keystore(config).list():
        typer.echo(f"{k.key_id}  team={k.team}  name={k.name}")


@keys_app.command("revoke")
def keys_revoke(config: ConfigOption, key_id: Annotated[str, typer.Argument(help="key id")]) -> None:
    """Revoke a key (running gateways on the same database drop it within shared.poll_s, 0.25 s by default)."""
    if not _keystore(config).revoke(key_id):
        _fail(f"no active key '{key_id}'")
    typer.echo(f"revoked {key_id}")


@ledger_app.command("report")
def ledger_report(
    config: ConfigOption,
    html: Annotated[Path | None, typer.Option(help="also write a self-contained HTML report")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
    since_hours: Annotated[float | None, typer.Option(help="only the last N hours")] = None,
) -> None:
    """Spend by team, tier and class; the workload; savings vs the most capable tier; what-ifs via the planner."""
    import json
    import time

    from tokenomy.gateway.ledger import Database
    from tokenomy.gateway.report import ledger_summary, summary_lines

    cfg = _config(config)
    try:
        db = Database(cfg.ledger.url, cfg.state_dir)
    except RuntimeError as exc:
        _fail(str(exc))
        return
    since = time.time() - since_hours * 3600 if since_hours else 0.0
    try:
        summary = ledger_summary(cfg, db.attempts(since))
    except CatalogError as exc:
        _fail(str(exc))
        return
    if html:
        from tokenomy.report.ledger_html import ledger_report as write_html

        html.write_text(write_html(summary))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    for line in summary_lines(summary):
        typer.echo(line)
    if html:
        typer.echo(f"written: {html}")
