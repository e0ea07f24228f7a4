"""Validate and escalate through the gateway, against twins that answer the evaluation set at chosen pass rates."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import httpx
import pytest

from tokenomy.advise.chain import tiers_from_ledger
from tokenomy.costmodel.escalation import EscalationTier, estimate_chain
from tokenomy.evalset.check import check, load_evalset, row_for_request
from tokenomy.gateway.config import ConfigError, parse_config
from tokenomy.gateway.escalate import streamed_text
from tokenomy.gateway.ledger import Database
from tokenomy.gateway.report import escalation_summary

from .conftest import api_tier, sse_events
from .services import pg_url  # noqa: F401 - a fixture

CHEAP_PASS_RATE, TOP_PASS_RATE = 0.7, 1.0
# $/Mtok: the cheap tier costs exactly a tenth of the top tier per token, input and output
CHEAP_USD_IN, CHEAP_USD_OUT = 0.3, 1.2
TOP_USD_IN, TOP_USD_OUT = 3.0, 12.0
EVALSET_VALIDATORS = [{"kind": "refusal"}, {"kind": "python", "target": "tokenomy.evalset.check:validate_answer"}]
MAX_TOKENS = 256  # every canned answer fits (the longest is 147 tokens)
SPEEDUP = 400.0


def chain_config(small: str, big: str, **route: Any) -> dict[str, Any]:
    """small (complex only, 1/10 the price) → big; complex requests validated; `big` asked by name validated too."""
    return {
        "tiers": [
            api_tier("small", small, ["complex"], CHEAP_USD_IN, CHEAP_USD_OUT),
            api_tier("big", big, ["simple", "complex"], TOP_USD_IN, TOP_USD_OUT),
        ],
        "routes": {
            "complex": {"validators": EVALSET_VALIDATORS, "max_escalations": 1, **route},
            "big": {"validators": EVALSET_VALIDATORS, "max_escalations": 0},
        },
    }


def evalset_body(row: dict[str, Any], model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": row["messages"], "max_tokens": MAX_TOKENS, "temperature": 0, **extra}


async def send_all(url: str, key: str, bodies: list[dict[str, Any]], concurrency: int = 32) -> list[httpx.Response]:
    """POST every body to the gateway (class forced to complex), `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)
    headers = {"authorization": f"Bearer {key}", "x-tokenomy-class": "complex"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

        async def one(body: dict[str, Any]) -> httpx.Response:
            async with limit:
                return await client.post("/v1/chat/completions", json=body)

        return await asyncio.gather(*(one(b) for b in bodies))


def wait_for_rows(db: Database, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while db.count_attempts() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return db.attempts()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_cheap_tier_first_costs_what_the_planner_says_and_under_half_of_top_tier_only(twins, gateway) -> None:
    rows = load_evalset()
    assert len(rows) >= 200
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=CHEAP_PASS_RATE)
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=TOP_PASS_RATE)
    g = gateway(chain_config(small, big))
    _, key = g.new_key()
    chain = asyncio.run(send_all(g.url, key, [evalset_body(r) for r in rows]))
    top_only = asyncio.run(send_all(g.url, key, [evalset_body(r, model="big") for r in rows]))
    assert all(r.status_code == 200 for r in chain + top_only)

    # what the client saw: an escalated request was answered by big, and every answer it got is right
    escalated = [r for r in chain if r.headers["x-tokenomy-escalations"] == "1"]
    assert all(r.headers["x-tokenomy-tier"] == "big" for r in escalated)
    assert all(r.headers["x-tokenomy-validation"] == "passed" for r in chain)
    for row, r in zip(rows, chain, strict=True):
        assert check(row, r.json()["choices"][0]["message"]["content"])[0]
    assert len(escalated) == pytest.approx(len(rows) * (1 - CHEAP_PASS_RATE), abs=4)  # stratified twin answers

    db = Database(g.config.ledger.url, g.config.state_dir)
    n_attempts = 2 * len(rows) + len(escalated)
    ledger = wait_for_rows(db, n_attempts)
    assert len(ledger) == n_attempts  # one row per attempt
    chain_rows = [r for r in ledger if r["model"] == "auto"]
    top_rows = [r for r in ledger if r["model"] == "big"]
    finals = [r for r in chain_rows if r["request_usd"] is not None]
    assert len(finals) == len(rows) and all(r["passed"] == 1 for r in finals)
    for f in finals:  # the request's total is the sum of its attempts' own costs
        own = sum(r["cost_usd"] for r in chain_rows if r["request_id"] == f["request_id"])
        assert f["request_usd"] == pytest.approx(own)

    measured_usd_per_valid = sum(r["request_usd"] for r in finals) / sum(r["passed"] for r in finals)
    small_usd = mean([r["cost_usd"] for r in chain_rows if r["tier"] == "small"])
    big_usd = mean([r["cost_usd"] for r in chain_rows if r["tier"] == "big"])
    planned = estimate_chain(
        [EscalationTier("small", small_usd, 0.0, CHEAP_PASS_RATE), EscalationTier("big", big_usd, 0.0, TOP_PASS_RATE)]
    )
    top_finals = [r for r in top_rows if r["request_usd"] is not None]
    top_only_usd_per_valid = sum(r["request_usd"] for r in top_finals) / sum(r["passed"] for r in top_finals)
    print(
        f"\nmeasured ${measured_usd_per_valid * 1e6:.2f} per million valid answers, planned "
        f"${planned.usd_per_valid_answer * 1e6:.2f} ({measured_usd_per_valid / planned.usd_per_valid_answer - 1:+.2%});"
        f" top tier only ${top_only_usd_per_valid * 1e6:.2f} "
        f"({top_only_usd_per_valid / measured_usd_per_valid:.2f}× the chain); break-even pass rate "
        f"{planned.break_even_pass_rate:.3f}"
    )
    assert measured_usd_per_valid == pytest.approx(planned.usd_per_valid_answer, rel=0.05)
    assert top_only_usd_per_valid >= 2 * measured_usd_per_valid

    # budgets: every reservation (escalations' included) settled, spend = the ledger's total
    usage = [u for u in g.gateway.budgets.report() if u["scope"] == "team"]
    assert all(u["reserved_usd"] == pytest.approx(0.0, abs=1e-12) for u in usage)
    assert sum(u["spent_usd"] for u in usage if u["period"] == "day") == pytest.approx(
        sum(r["cost_usd"] for r in ledger)
    )

    # plan-chain --from-ledger measures the same tiers
    measured = tiers_from_ledger(ledger, "complex")
    assert [t.name for t in measured] == ["small", "big"]
    assert measured[0].pass_rate == pytest.approx(CHEAP_PASS_RATE, abs=0.02) and measured[1].pass_rate == 1.0
    assert measured[0].usd_per_request == pytest.approx(small_usd) and measured[0].latency_s > 0

    # the report's figures come from the same rows
    report = escalation_summary(g.config, ledger)
    complex_ = report["by_class"]["complex"]
    assert complex_["usd_per_valid_answer"] == pytest.approx(measured_usd_per_valid)
    assert complex_["escalation_rate"] == pytest.approx(len(escalated) / len(rows))
    assert report["by_class_and_tier"]["complex"]["small"]["pass_rate"] == pytest.approx(CHEAP_PASS_RATE, abs=0.02)
    assert complex_["top_tier"] == "big"
    assert complex_["top_tier_usd_per_valid_answer"] == pytest.approx(top_only_usd_per_valid, rel=0.01)


def test_failed_validation_everywhere_returns_the_last_answer_marked_failed(twins, gateway) -> None:
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=0.0)
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=0.0)
    g = gateway(chain_config(small, big, max_escalations=1))
    _, key = g.new_key()
    row = load_evalset("arithmetic")[0]
    [r] = asyncio.run(send_all(g.url, key, [evalset_body(row)]))
    assert r.status_code == 200
    assert r.headers["x-tokenomy-validation"] == "failed"
    assert r.headers["x-tokenomy-escalations"] == "1" and r.headers["x-tokenomy-tier"] == "big"
    assert not check(row, r.json()["choices"][0]["message"]["content"])[0]
    ledger = wait_for_rows(Database(g.config.ledger.url, g.config.state_dir), 2)
    assert [(x["tier"], x["validation"]) for x in ledger] == [("small", "fail"), ("big", "fail")]
    final = [x for x in ledger if x["request_usd"] is not None]
    assert len(final) == 1 and final[0]["tier"] == "big" and final[0]["passed"] == 0
    assert final[0]["final_tier"] == "big" and final[0]["escalations"] == 1
    assert "python:" in ledger[0]["reason"]


def test_zero_escalations_keeps_the_cheap_answer(twins, gateway) -> None:
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=0.0)
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=1.0)
    g = gateway(chain_config(small, big, max_escalations=0))
    _, key = g.new_key()
    [r] = asyncio.run(send_all(g.url, key, [evalset_body(load_evalset("code")[0])]))
    assert r.headers["x-tokenomy-tier"] == "small" and r.headers["x-tokenomy-validation"] == "failed"
    assert r.headers["x-tokenomy-escalations"] == "0"


def test_buffered_stream_is_validated_and_escalated_before_its_first_byte(twins, gateway) -> None:
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=0.0)
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=1.0)
    g = gateway(chain_config(small, big, stream_validation="buffer"))
    _, key = g.new_key()
    row = load_evalset("json_extraction")[0]
    body = evalset_body(row, stream=True, stream_options={"include_usage": True})
    [r] = asyncio.run(send_all(g.url, key, [body]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-tokenomy-tier"] == "big" and r.headers["x-tokenomy-validation"] == "passed"
    events = sse_events(r.text)
    assert events[-1] == "[DONE]" and '"usage"' in events[-2]
    assert check(row, streamed_text(r.content))[0]
    ledger = wait_for_rows(Database(g.config.ledger.url, g.config.state_dir), 2)
    assert [(x["tier"], x["validation"], x["stream"]) for x in ledger] == [("small", "fail", 1), ("big", "pass", 1)]


def test_recorded_stream_passes_through_and_only_records_the_verdict(twins, gateway) -> None:
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=0.0)
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=1.0)
    g = gateway(chain_config(small, big, stream_validation="record"))
    _, key = g.new_key()
    row = load_evalset("classification")[0]
    [r] = asyncio.run(send_all(g.url, key, [evalset_body(row, stream=True)]))
    assert r.status_code == 200 and r.headers["x-tokenomy-tier"] == "small"
    assert "x-tokenomy-validation" not in r.headers  # the verdict comes after the stream
    assert not check(row, streamed_text(r.content))[0]
    ledger = wait_for_rows(Database(g.config.ledger.url, g.config.state_dir), 1)
    assert len(ledger) == 1
    assert ledger[0]["validation"] == "fail" and ledger[0]["passed"] == 0 and ledger[0]["escalations"] == 0
    assert ledger[0]["request_usd"] == pytest.approx(ledger[0]["cost_usd"]) and ledger[0]["cost_usd"] > 0


def test_judge_calls_are_made_through_the_gateway_and_paid_for(twins, gateway) -> None:
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=1.0)
    big = twins("big", speedup=SPEEDUP)  # a filler-text judge: its reply is neither yes nor no
    config = chain_config(small, big)
    config["routes"]["complex"]["validators"] = [
        *EVALSET_VALIDATORS,
        {"kind": "judge", "tier": "big", "question": "Is the answer right?"},
    ]
    config["routes"]["complex"]["max_escalations"] = 0
    g = gateway(config)
    _, key = g.new_key()
    [r] = asyncio.run(send_all(g.url, key, [evalset_body(load_evalset("arithmetic")[0])]))
    assert r.headers["x-tokenomy-validation"] == "failed"  # the judge did not say yes
    ledger = wait_for_rows(Database(g.config.ledger.url, g.config.state_dir), 2)
    assert [(x["tier"], x["status"]) for x in ledger] == [("small", "ok"), ("big", "judge")]
    assert ledger[1]["cost_usd"] > 0
    assert ledger[0]["request_usd"] == pytest.approx(ledger[0]["cost_usd"] + ledger[1]["cost_usd"])
    assert "judge big: reply is not yes or no" in ledger[0]["reason"]


def test_routes_are_checked_at_load() -> None:
    tiers = [api_tier("small", "http://127.0.0.1:1", ["complex"], 1, 1)]
    judge = {"kind": "judge", "tier": "nope", "question": "ok?"}
    with pytest.raises(ConfigError, match=r"gw.yaml: field 'routes.complex.validators.0.tier': unknown tier 'nope'"):
        parse_config({"tiers": tiers, "routes": {"complex": {"validators": [judge]}}}, "gw.yaml")
    with pytest.raises(ConfigError, match=r"gw.yaml: field 'routes.hard': not a request class or model name"):
        parse_config({"tiers": tiers, "routes": {"hard": {"validators": [{"kind": "refusal"}]}}}, "gw.yaml")
    with pytest.raises(ConfigError, match=r"routes.complex.stream_validation"):
        bad = {"validators": [{"kind": "refusal"}], "stream_validation": "later"}
        parse_config({"tiers": tiers, "routes": {"complex": bad}}, "gw.yaml")


def test_evalset_validator_finds_the_row() -> None:
    row = load_evalset("arithmetic")[3]
    request = {"messages": row["messages"]}
    assert row_for_request(request) is row


OLD_COLUMNS = (
    "request_id, attempt, ts_s, key_id, team, model, request_class, p_complex, tier, upstream_model, stream, "
    "tokens_in, tokens_out, cost_usd, ttft_s, e2e_s, status, http_status, reason"
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_older_ledger_gets_the_validation_columns_at_startup(backend: str, tmp_path, request) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "old.sqlite")
    old = Database(url, tmp_path)
    old.execute("DROP TABLE attempts")
    types = {"attempt": "INTEGER", "stream": "INTEGER", "tokens_in": "BIGINT", "tokens_out": "BIGINT"}
    columns = ", ".join(
        f"{c} {types.get(c, 'DOUBLE PRECISION' if c.endswith('_s') else 'TEXT')}" for c in OLD_COLUMNS.split(", ")
    )
    columns = columns.replace("cost_usd TEXT", "cost_usd DOUBLE PRECISION")
    old.execute(f"CREATE TABLE attempts ({columns}, PRIMARY KEY (request_id, attempt))")  # as older ledgers had it
    old.execute(
        f"INSERT INTO attempts ({OLD_COLUMNS}) VALUES "
        "('r0', 0, 1.0, 'k', 't', 'auto', 'simple', 0.1, 'small', 'm', 0, 10, 5, 0.001, 0.1, 0.2, 'ok', 200, '')"
    )
    old.close()
    db = Database(url, tmp_path)  # adds request_usd, final_tier, escalations, passed, validation
    row = {**vars(_validated_attempt()), "request_id": "r1"}
    db.insert_attempts(db.conn, [type(_validated_attempt())(**row)])
    by_id = {r["request_id"]: r for r in db.attempts()}
    assert by_id["r0"]["request_usd"] is None and by_id["r0"]["passed"] is None
    assert by_id["r1"]["request_usd"] == pytest.approx(0.003) and by_id["r1"]["passed"] == 1
    assert (
        by_id["r1"]["final_tier"] == "big" and by_id["r1"]["escalations"] == 1 and by_id["r1"]["validation"] == "pass"
    )
    db.close()


def _validated_attempt():  # noqa: ANN202
    from tokenomy.gateway.ledger import Attempt

    return Attempt(
        request_id="r",
        attempt=1,
        ts_s=2.0,
        key_id="k",
        team="t",
        model="auto",
        request_class="complex",
        p_complex=None,
        tier="big",
        upstream_model="big",
        stream=False,
        tokens_in=10,
        tokens_out=5,
        cost_usd=0.002,
        ttft_s=None,
        e2e_s=0.3,
        status="ok",
        http_status=200,
        reason="",
        validation="pass",
        request_usd=0.003,
        final_tier="big",
        escalations=1,
        passed=True,
    )


def test_validated_requests_through_a_postgres_ledger(twins, gateway, request) -> None:
    url = request.getfixturevalue("pg_url")
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=0.5)
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=1.0)
    g = gateway({**chain_config(small, big), "ledger": {"url": url}})
    _, key = g.new_key()
    rows = load_evalset("arithmetic")[:20]
    responses = asyncio.run(send_all(g.url, key, [evalset_body(r) for r in rows]))
    escalated = sum(r.headers["x-tokenomy-escalations"] == "1" for r in responses)
    ledger = wait_for_rows(Database(url, g.config.state_dir), len(rows) + escalated)
    finals = [r for r in ledger if r["request_usd"] is not None]
    assert len(finals) == len(rows) and all(r["passed"] == 1 for r in finals)
    assert sum(r["escalations"] for r in finals) == escalated and 5 <= escalated <= 15
    assert sorted({r["validation"] for r in ledger}) == ["fail", "pass"]


class HeldEscalationBudgets:
    """The gateway's budgets, except that the second reservation (the escalation's, in the test below) is held until
    the test lets it go: awaited in `areserve`; a blocking `reserve` would hold the event loop's thread instead."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls = 0
        self.escalating = threading.Event()
        self.let_go_sync = threading.Event()
        self.let_go: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.order: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def areserve(self, key_id: str, team: str, usd: float, tokens: int) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.loop, self.let_go = asyncio.get_running_loop(), asyncio.Event()
            self.escalating.set()
            await asyncio.wait_for(self.let_go.wait(), 10)
            self.order.append("escalation reserved")
        return self.inner.reserve(key_id, team, usd, tokens)

    def reserve(self, key_id: str, team: str, usd: float, tokens: int) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.escalating.set()
            self.let_go_sync.wait(5)  # a slow store, asked from the event loop: nothing else runs meanwhile
            self.order.append("escalation reserved")
        return self.inner.reserve(key_id, team, usd, tokens)

    def let_go_now(self) -> None:
        self.let_go_sync.set()
        if self.loop is not None and self.let_go is not None:
            self.loop.call_soon_threadsafe(self.let_go.set)


def test_an_escalations_reservation_does_not_block_other_requests(twins, gateway) -> None:
    """While an escalation waits for its budget reservation (a slow shared store), the gateway keeps serving: a
    request sent meanwhile is answered before that reservation is made."""
    small = twins("small", speedup=SPEEDUP, answer_pass_rate=0.0)  # every cheap answer fails: always escalates
    big = twins("big", speedup=SPEEDUP, answer_pass_rate=1.0)
    g = gateway(chain_config(small, big, max_escalations=1))
    _, key = g.new_key()
    held = HeldEscalationBudgets(g.gateway.budgets)
    g.gateway.budgets = held
    headers = {"authorization": f"Bearer {key}"}
    row = load_evalset("arithmetic")[0]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        escalated = pool.submit(
            httpx.post,
            f"{g.url}/v1/chat/completions",
            json=evalset_body(row),
            headers={**headers, "x-tokenomy-class": "complex"},
            timeout=30,
        )
        assert held.escalating.wait(20), "the request did not escalate"
        try:  # the escalation's reservation is held now: another request (class simple: not validated) goes through
            other = httpx.post(
                f"{g.url}/v1/chat/completions",
                json=evalset_body(row),
                headers={**headers, "x-tokenomy-class": "simple"},
                timeout=30,
            )
            held.order.append("other answered")
        finally:
            held.let_go_now()
        r = escalated.result(timeout=30)
    assert other.status_code == 200 and other.headers["x-tokenomy-tier"] == "big"
    assert r.status_code == 200 and r.headers["x-tokenomy-escalations"] == "1"
    assert held.order == ["other answered", "escalation reserved"]
