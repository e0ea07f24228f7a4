"""Replay: a gateway ledger, a bench requests file and a trace rebuilt into workloads and run on alternatives."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.gateway.ledger import Attempt, Database
from tokenomy.replay.alternatives import Alternative, fleet_from_file, load_alternatives
from tokenomy.replay.run import replay
from tokenomy.replay.sources import SourceError, read_source, time_scaled
from tokenomy.sim.fleet import simulate_fleet
from tokenomy.sim.run import SLO
from tokenomy.sim.workload import Workload, write_trace_jsonl

API_IN, API_OUT = 0.15, 0.60  # $/Mtok of the test's API tier
T0 = 1_760_000_000.0


def attempt(rid: str, n: int, ts: float, team: str, tin: int, tout: int, **kw: object) -> Attempt:
    fields = dict(
        request_id=rid,
        attempt=n,
        ts_s=ts,
        key_id="k",
        team=team,
        model="m",
        request_class="chat",
        p_complex=None,
        tier="gpu",
        upstream_model="llama-3.1-8b",
        stream=True,
        tokens_in=tin,
        tokens_out=tout,
        cost_usd=0.001,
        ttft_s=0.2,
        e2e_s=2.0,
        status="ok",
        http_status=200,
        reason="",
    )
    fields.update(kw)
    return Attempt(**fields)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """200 requests over 10 minutes from two teams; 20 failed over to a second attempt; 1 never answered."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(200):
        ts = T0 + i * 3.0
        team = "search" if i % 3 else "support"
        tin, tout = int(rng.integers(100, 800)), int(rng.integers(20, 200))
        if i % 10 == 0:
            rows.append(attempt(f"r{i}", 0, ts, team, tin, 0, status="upstream_error", http_status=503, cost_usd=0.0))
            rows.append(attempt(f"r{i}", 1, ts + 0.1, team, tin, tout, tier="api", reason="spill: ttft slo"))
        else:
            rows.append(attempt(f"r{i}", 0, ts, team, tin, tout))
    rows.append(attempt("lost", 0, T0 + 5, "search", 10, 0, status="upstream_error", http_status=500))
    path = tmp_path / "ledger.sqlite"
    db = Database(str(path), tmp_path)
    db.insert_attempts(db.conn, rows)
    db.conn.close()
    return path


def write_fleets(tmp_path: Path) -> tuple[Path, Path]:
    api = tmp_path / "all_api.yaml"
    api.write_text(
        "tiers:\n  - name: api\n"
        f"    usd_per_mtok_input: {API_IN}\n    usd_per_mtok_output: {API_OUT}\n"
        'routes:\n  "*": [api]\n'
    )
    gpu = tmp_path / "one_l4.yaml"
    gpu.write_text(
        'tiers:\n  - name: gpu\n    model: llama-3.1-8b\n    gpu: L4\n    replicas: 1\nroutes:\n  "*": [gpu]\n'
    )
    return api, gpu


def test_ledger_rebuilt_with_actual_costs_and_skips(ledger: Path) -> None:
    rep = read_source(str(ledger))
    assert rep.kind == "ledger" and len(rep) == 200
    assert rep.skipped == {"no attempt returned tokens (status not ok)": 1}
    assert rep.workload.arrival_s[0] == 0 and rep.workload.arrival_s[-1] == pytest.approx(199 * 3.0)
    assert float(rep.actual_usd.sum()) == pytest.approx(200 * 0.001 + 0.0)
    assert rep.actual_spilled.sum() == 20
    assert set(rep.teams.tolist()) == {"search", "support"}


def test_all_api_alternative_costs_the_ledgers_tokens_at_api_prices(ledger: Path, tmp_path: Path) -> None:
    api, gpu = write_fleets(tmp_path)
    rep = read_source(str(ledger))
    actual, on_api, on_gpu = replay(
        rep, [Alternative("api", fleet_from_file(api)), Alternative("gpu", fleet_from_file(gpu))], SLO(2.0), workers=1
    )
    expected = (rep.workload.input_tokens.sum() * API_IN + rep.workload.output_tokens.sum() * API_OUT) / 1e6
    assert on_api.usd == pytest.approx(expected, rel=1e-9)
    assert sum(on_api.usd_by_team.values()) == pytest.approx(on_api.usd, rel=1e-9)
    assert sum(on_gpu.usd_by_team.values()) == pytest.approx(on_gpu.usd, rel=1e-9)
    assert on_gpu.completed == 200 and on_gpu.spilled_share == 0.0
    assert actual.usd == pytest.approx(0.2) and actual.spilled_share == pytest.approx(0.1)
    assert actual.ttft_s["p50"] == pytest.approx(0.2) and actual.slo_attainment == 1.0
    assert 0 < on_gpu.ttft_s["p50"] < on_gpu.ttft_s["p99"]
    assert 0 <= on_gpu.slo_attainment <= 1
    for f in (actual, on_api, on_gpu):  # cost by hour adds up to the total
        assert sum(f.usd_by_hour) == pytest.approx(f.usd, rel=1e-6)
    assert on_gpu.tier_requests == {"gpu": 200} and actual.tier_requests == {"api": 20, "gpu": 180}
    assert len(on_gpu.ttft_quantiles_s) == 101 and on_gpu.ttft_quantiles_s[50] == pytest.approx(on_gpu.ttft_s["p50"])


def test_bench_requests_and_trace_sources(tmp_path: Path) -> None:
    bench = tmp_path / "requests.jsonl"
    recs = [
        {"intended_s": 0.5 * i, "prompt_tokens": 300, "output_tokens": 50, "ttft_s": 0.1, "e2e_s": 1.0, "error": ""}
        for i in range(20)
    ]
    recs.append({"intended_s": 11.0, "prompt_tokens": 0, "output_tokens": 0, "error": "HTTP 503"})
    lines = [json.dumps(r) + "\n" for r in recs]
    lines[3:3] = ["{truncated by a crash\n", "[1, 2]\n"]  # two lines it cannot use: skipped, the rest kept
    bench.write_text("".join(lines))
    rep = read_source(str(bench))
    assert rep.kind == "bench" and len(rep) == 20
    assert rep.skipped == {"request failed in the bench run": 1, "a line that is not a JSON object": 2}
    trace = tmp_path / "trace.jsonl"
    write_trace_jsonl(
        Workload(np.arange(5.0), np.full(5, 100), np.full(5, 10), np.array(["a"] * 5, dtype=object)), trace
    )
    rep = read_source(str(trace))
    assert rep.kind == "trace" and len(rep) == 5 and list(rep.workload.classes) == ["a"] * 5
    with pytest.raises(SourceError, match="no such file"):
        read_source(str(tmp_path / "missing.csv"))


def test_alternatives_file_and_cli(ledger: Path, tmp_path: Path) -> None:
    write_fleets(tmp_path)
    alts = tmp_path / "alts.yaml"
    alts.write_text(
        "slo: {ttft_s: 1.5}\nalternatives:\n  - {name: api, fleet: all_api.yaml}\n  - {name: l4, fleet: one_l4.yaml}\n"
    )
    loaded, slo = load_alternatives(alts)
    assert [a.name for a in loaded] == ["api", "l4"] and slo.ttft_s == 1.5
    runner = CliRunner()
    r = runner.invoke(app, ["replay", str(ledger), "--alternatives", str(alts), "--json", "--workers", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [f["name"] for f in out["figures"]] == ["actual", "api", "l4"]
    page = tmp_path / "replay.html"
    r = runner.invoke(app, ["replay", str(ledger), "--alternatives", str(alts), "--workers", "1", "--html", str(page)])
    assert r.exit_code == 0 and "cost per team" in r.stdout and "support" in r.stdout
    text = page.read_text()
    assert "USD per hour" in text and "TTFT (ms)" in text and "Tier mix" in text and "<script src=" not in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("alternatives:\n  - {name: x, flet: all_api.yaml}\n")
    r = runner.invoke(app, ["replay", str(ledger), "--alternatives", str(bad)])
    assert r.exit_code == 2 and "bad.yaml" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["replay", str(ledger)])
    assert r.exit_code == 2 and "--fleet" in r.output
    r = runner.invoke(app, ["replay", str(tmp_path / "nope.sqlite"), "--fleet", str(tmp_path / "all_api.yaml")])
    assert r.exit_code == 2 and "nope.sqlite" in r.output


POSTGRES_URL = os.environ.get("TOKENOMY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def test_postgresql_ledger(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    schema = f"replay_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        db = Database(url, tmp_path)
        rows = [attempt(f"p{i}", 0, T0 + i, "ops", 100 + i, 10) for i in range(30)]
        db.insert_attempts(db.conn, rows)
        db.conn.close()
        rep = read_source(url)
        assert rep.kind == "ledger" and len(rep) == 30
        assert int(rep.workload.input_tokens.sum()) == sum(100 + i for i in range(30))
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


def test_bench_sessions_replay_closed_loop_with_their_recorded_think_times(tmp_path: Path) -> None:
    # two conversations of three turns; each later turn was sent 2 s (session 0) or 5 s (session 1) after its answer
    recs, answered = [], {}
    for k in range(3):
        for s, think in ((0, 2.0), (1, 5.0)):
            sent = answered.get(s, 0.3 * s) + (think if k else 0.0)
            e2e = 1.0 + 0.5 * k
            recs.append({"session": s, "intended_s": sent, "prompt_tokens": 400 * (k + 1), "output_tokens": 120})
            recs[-1].update(ttft_s=0.1, e2e_s=e2e)
            answered[s] = sent + e2e
    bench = tmp_path / "requests.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in sorted(recs, key=lambda r: r["intended_s"])))
    rep = read_source(str(bench))
    w = rep.workload
    assert w.closed_sessions and "closed loop" in rep.arrivals
    later = w.next_turns()[w.next_turns() >= 0]
    assert sorted(np.round(w.think_s[later], 9).tolist()) == [2.0, 2.0, 5.0, 5.0]
    # one slow GPU: the answers take longer than recorded, so later turns come later than recorded, by the think time
    run = simulate_fleet(fleet_from_file(write_fleets(tmp_path)[1]), w).result.log
    earlier = np.flatnonzero(w.next_turns() >= 0)
    np.testing.assert_allclose(run.arrival_s[later], run.finish_s[earlier] + w.think_s[later], atol=1e-9)
    scaled = time_scaled(rep, 10.0)
    np.testing.assert_allclose(scaled.workload.think_s, 10.0 * w.think_s)
    # a trace names sessions but no answer times: its turns come at their recorded times
    trace = tmp_path / "trace.jsonl"
    write_trace_jsonl(replace(w, think_s=None), trace)
    from_trace = read_source(str(trace))
    assert not from_trace.workload.closed_sessions and "recorded time" in from_trace.arrivals
    # a bench row without its answer time (e2e_s): the think time before the next turn is unknown, so the file's
    # turns come at their recorded times, and replay says so
    recs[0].pop("e2e_s")
    bench.write_text("".join(json.dumps(r) + "\n" for r in sorted(recs, key=lambda r: r["intended_s"])))
    partial = read_source(str(bench))
    assert partial.workload.session_ids is not None and not partial.workload.closed_sessions
    assert "when every answer came" in partial.arrivals
