"""Multi-turn sessions: prompts that carry the conversation, turns that wait for answers plus think time (on the
simulated clock), the prefix cache they feed, and Mooncake-style shared blocks in replayed traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.replay.sources import read_source
from tokenomy.sim.fleet import ApiTier, Fleet, GpuTier, simulate_fleet
from tokenomy.sim.hourly import fleet_hours
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload, WorkloadSpec, build_workload, read_trace, write_trace_jsonl


@pytest.fixture(scope="module")
def d():  # noqa: ANN201
    return resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM")).deployment


def sessions(**fields: object) -> Workload:
    return build_workload(WorkloadSpec(**fields))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the workload


def test_a_three_turn_session_carries_every_earlier_message_and_answer() -> None:
    w = sessions(isl="100", osl="50", turns="3", think_s="2", num_requests=3, system_prompt_tokens=30)
    assert w.session_ids is not None and set(w.session_ids.tolist()) == {0}
    # turn k = system prompt + (message + answer) of every earlier turn + its own message
    assert w.input_tokens.tolist() == [30 + 100, 30 + 150 + 100, 30 + 300 + 100]
    assert w.think_s is not None and w.think_s.tolist() == [0.0, 2.0, 2.0]
    assert w.arrival_s.tolist() == [0.0, 2.0, 4.0]  # earliest times: answers taking no time
    assert w.next_turns().tolist() == [1, 2, -1]


def test_turn_prefix_ids_extend_the_previous_turns_and_system_blocks_are_shared() -> None:
    w = sessions(isl="700", osl="300", turns="2", num_requests=6, system_prompt_tokens=1100, system_prompts=1, rate=1)
    assert w.prefix_ids is not None and w.session_ids is not None
    for i, j in enumerate(w.next_turns().tolist()):
        if j >= 0:  # the earlier turn's blocks lead the later turn's list (ceil(input/512) ids each)
            assert w.prefix_ids[j][: len(w.prefix_ids[i])] == w.prefix_ids[i]
            assert len(w.prefix_ids[i]) == -(-int(w.input_tokens[i]) // 512)
    # 1100 tokens of system prompt: its 2 whole blocks are the same ids in every session; the rest differ
    assert {p[:2] for p in w.prefix_ids} == {(0, 1)}
    firsts = w.first_turns()
    assert len({w.prefix_ids[i][2] for i in firsts}) == len(firsts)


def test_num_requests_counts_turns_and_the_last_session_is_cut() -> None:
    w = sessions(turns="4", num_requests=10)
    assert len(w) == 10
    assert sorted(np.bincount(w.session_ids).tolist()) == [2, 4, 4]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"turns": "3", "trace": "mooncake-conv"}, "cannot go with trace"),
        ({"turns": "3", "think_s": "soon"}, "think_s: cannot read 'soon'"),
        ({"turns": "3", "think_s": "uniform:5:1"}, "think_s: cannot read"),
        ({"think_s": "3"}, "think_s needs turns"),
        ({"turns": "empirical:azure-conv"}, "turns: 'empirical:azure-conv'"),
        ({"turns": "0"}, "turns: cannot read '0'"),
    ],
)
def test_bad_session_fields_are_refused_by_name(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkloadSpec(**fields)


# ---------------------------------------------------------------- the simulator


def test_each_turn_arrives_think_time_after_the_previous_answer_on_the_simulated_clock(d) -> None:  # noqa: ANN001
    w = sessions(isl="300", osl="200", turns="uniform:2:6", think_s="exponential:3", rate=4, num_requests=300, seed=3)
    log = simulate(d, w).log
    assert log.done.all()
    nxt = w.next_turns()
    earlier = np.flatnonzero(nxt >= 0)
    later = nxt[earlier]
    assert np.all(log.arrival_s[later] >= log.finish_s[earlier] + w.think_s[later] - 1e-9)
    np.testing.assert_allclose(log.arrival_s[later], log.finish_s[earlier] + w.think_s[later], atol=1e-9)
    # the arrivals waited for real answers: later than the earliest times the workload gave
    assert np.all(log.arrival_s[later] > w.arrival_s[later])


def test_sessions_in_flight_stay_within_the_concurrency(d) -> None:  # noqa: ANN001
    w = sessions(isl="200", osl="100", turns="3", think_s="1", concurrency=4, num_requests=60)
    log = simulate(d, w).log
    assert log.done.all()
    opened = np.array([log.arrival_s[w.session_ids == s].min() for s in range(20)])
    closed = np.array([log.finish_s[w.session_ids == s].max() for s in range(20)])
    for t in np.concatenate([opened, closed]):
        assert int(((opened <= t) & (closed > t)).sum()) <= 4
    assert sorted(opened.tolist()).count(0.0) == 4  # the other 16 open as sessions end
    assert set(np.round(opened[opened > 0], 9)) <= set(np.round(closed, 9))


def test_a_lone_session_hits_the_blocks_its_earlier_turns_computed(d) -> None:  # noqa: ANN001
    w = sessions(isl="600", osl="100", turns="3", think_s="1", num_requests=3)
    # inputs 600, 1300, 2000: turn 0 caches 1 block of 512 (a block needs 512 tokens before the prompt's last),
    # turn 1 hits it and caches a 2nd (1024 <= 1299), turn 2 hits both: 0 + 512 + 1024 tokens
    assert w.input_tokens.tolist() == [600, 1300, 2000]
    assert simulate(d, w).log.cached_tokens.tolist() == [0, 512, 1024]


def test_sessions_hit_the_prefix_cache_far_more_than_the_same_tokens_without_sessions(d) -> None:  # noqa: ANN001
    w = sessions(isl="400", osl="200", turns="5", think_s="exponential:2", rate=2, num_requests=400, seed=5)
    flat = Workload(w.arrival_s, w.input_tokens, w.output_tokens)  # the same requests, no conversation
    with_sessions = simulate(d, w).summary().prefix_cache_hit_tokens / w.input_tokens.sum()
    without = simulate(d, flat).summary().prefix_cache_hit_tokens / flat.input_tokens.sum()
    assert with_sessions > 0.4 and without == 0
    assert with_sessions > without


# ---------------------------------------------------------------- traces and replay


def mooncake(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_mooncake_trace_with_shared_hash_ids_gives_cache_hits_in_replay(tmp_path: Path, d) -> None:  # noqa: ANN001
    shared = [
        json.dumps({"timestamp": t, "input_length": 1600, "output_length": 20, "hash_ids": [7, 8, 9, 10 + t]})
        for t in (0, 2000, 4000)
    ]
    distinct = [
        json.dumps(
            {
                "timestamp": t,
                "input_length": 1600,
                "output_length": 20,
                "hash_ids": [4 * t, 4 * t + 1, 4 * t + 2, 4 * t + 3],
            }
        )
        for t in (0, 2000, 4000)
    ]
    rep = read_source(str(mooncake(tmp_path / "shared.jsonl", shared)))
    assert rep.workload.prefix_ids == [(7, 8, 9, 10), (7, 8, 9, 2010), (7, 8, 9, 4010)]
    cached = simulate(d, rep.workload).log.cached_tokens.tolist()
    assert cached == [0, 3 * 512, 3 * 512]  # the three shared blocks; the fourth (partial) is never shared
    other = read_source(str(mooncake(tmp_path / "distinct.jsonl", distinct)))
    assert simulate(d, other.workload).log.cached_tokens.tolist() == [0, 0, 0]


def test_a_malformed_trace_line_is_skipped_with_its_file_line_and_reason(tmp_path: Path) -> None:
    path = mooncake(
        tmp_path / "bad.jsonl",
        [
            '{"timestamp": 0, "input_length": 700, "output_length": 10, "hash_ids": [0, 1]}',
            '{"timestamp": 10, "input_length": 700,',
            '{"timestamp": 20, "input_length": -5, "output_length": 10, "hash_ids": [0]}',
            '{"timestamp": 30, "input_length": 700, "output_length": 10, "hash_ids": [0, 2]}',
        ],
    )
    rep = read_source(str(path))
    assert len(rep) == 2 and rep.workload.prefix_ids == [(0, 1), (0, 2)]
    assert set(rep.skipped) == {
        f"{path}:2: not valid JSON (Expecting property name enclosed in double quotes)",
        f"{path}:3: field 'input_length': must be a positive integer, got -5",
    }
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_trace(path)  # simulate --trace stays strict: the file is the user's own


def test_sessions_round_trip_through_a_trace_and_replay_recovers_their_prefixes(tmp_path: Path) -> None:
    w = sessions(isl="600", osl="100", turns="3", think_s="1", rate=1, num_requests=9)
    bare = w.subset(np.arange(len(w)))
    bare.prefix_ids = None  # a trace that names sessions but not blocks
    write_trace_jsonl(bare, tmp_path / "s.jsonl")
    rep = read_source(str(tmp_path / "s.jsonl"))
    np.testing.assert_array_equal(rep.workload.session_ids, w.session_ids)
    assert rep.workload.think_s is None  # replayed turns come at their recorded times
    got = rep.workload.prefix_ids
    assert got is not None
    for i, j in enumerate(w.next_turns().tolist()):
        if j >= 0:
            assert got[j][: len(got[i])] == got[i]


def test_a_bench_file_with_sessions_replays_with_conversation_prefixes(tmp_path: Path) -> None:
    rows = [
        {"run": "main", "index": i, "session": s, "intended_s": float(i), "prompt_tokens": p, "output_tokens": 100}
        for i, (s, p) in enumerate([(0, 600), (1, 600), (0, 1300), (1, 1300)])
    ]
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = read_source(str(path))
    assert rep.kind == "bench"
    assert rep.workload.session_ids is not None and rep.workload.session_ids.tolist() == [0, 1, 0, 1]
    p = rep.workload.prefix_ids
    assert p is not None and p[2][:2] == p[0] and p[3][:2] == p[1] and p[0] != p[1]


# ---------------------------------------------------------------- the command line


def test_simulate_runs_sessions_and_describes_them() -> None:
    args = ["simulate", "--turns", "3", "--think-s", "2", "--rate", "1", "--num-requests", "60", "--json"]
    res = CliRunner().invoke(app, [*args, "--system-prompt-tokens", "1024"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert "sessions of 3 turns" in s["workload"]["description"]
    assert s["prefix_cache_hit_tokens"] > 0
    text = CliRunner().invoke(app, [*args[:-1], "--system-prompt-tokens", "1024"], env={"COLUMNS": "200"}).output
    share = s["prefix_cache_hit_tokens"] / (s["throughput"]["input_tokens_per_s"] * s["duration_s"])
    assert f"prefix cache: {s['prefix_cache_hit_tokens']:,} prompt tokens read from cache ({share:.1%}" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--turns", "3", "--think-s", "later"], "think_s: cannot read 'later'"), (["--think-s", "2"], "needs turns")],
)
def test_simulate_refuses_bad_session_options_by_name(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["simulate", *args], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_a_turn_due_while_others_decode_starts_at_once_not_after_their_decode_span(d) -> None:  # noqa: ANN001
    # session 0: one long answer (decode spans run ~20 s); session 1: a short turn, then another 0.5 s after it
    w = Workload([0.0, 0.0, 0.5], [100, 100, 210], [2000, 10, 10], session_ids=[0, 1, 1], think_s=[0.0, 0.0, 0.5])
    log = simulate(d, w).log
    assert log.arrival_s[2] < log.finish_s[0]  # it arrived while session 0 was still decoding
    assert log.first_token_s[2] - log.arrival_s[2] < 0.1  # one step's wait, not the rest of the span


# ---------------------------------------------------------------- sessions on a fleet


def one_tier(d, replicas: int = 1, policy: str = "least_outstanding") -> Fleet:  # noqa: ANN001
    return Fleet((GpuTier("gpu", d, replicas=replicas, policy=policy),), {"*": ("gpu",)})


def test_a_one_replica_fleet_runs_sessions_as_simulate_does(d) -> None:  # noqa: ANN001
    w = sessions(isl="300", osl="200", turns="uniform:2:5", think_s="exponential:2", rate=6, num_requests=240, seed=5)
    alone = simulate(d, w).log
    fleet = simulate_fleet(one_tier(d), w).result.log
    np.testing.assert_array_equal(fleet.arrival_s, alone.arrival_s)
    np.testing.assert_array_equal(fleet.finish_s, alone.finish_s)


def test_on_a_fleet_each_turn_waits_for_the_previous_answer_whichever_replica_gave_it(d) -> None:  # noqa: ANN001
    w = sessions(isl="300", osl="200", turns="uniform:2:6", think_s="exponential:3", rate=8, num_requests=400, seed=3)
    run = simulate_fleet(one_tier(d, replicas=3, policy="round_robin"), w)
    log = run.result.log
    assert log.done.all() and set(log.where.tolist()) == {0, 1, 2}
    earlier = np.flatnonzero(w.next_turns() >= 0)
    later = w.next_turns()[earlier]
    np.testing.assert_allclose(log.arrival_s[later], log.finish_s[earlier] + w.think_s[later], atol=1e-9)
    assert np.all(log.arrival_s[later] > w.arrival_s[later])  # not the earliest times of the workload


def test_a_turn_an_api_answered_sends_the_next_think_time_after_that_answer() -> None:
    w = sessions(isl="200", osl="100", turns="3", think_s="1.5", rate=2, num_requests=30, seed=1)
    log = simulate_fleet(Fleet((ApiTier("api", 0.2, 0.6),), {"*": ("api",)}), w).result.log
    earlier = np.flatnonzero(w.next_turns() >= 0)
    later = w.next_turns()[earlier]
    assert np.all(log.where == -2) and log.done.all()
    np.testing.assert_allclose(log.arrival_s[later], log.finish_s[earlier] + 1.5, atol=1e-9)


def test_a_fleet_at_a_concurrency_keeps_that_many_requests_in_flight(d) -> None:  # noqa: ANN001
    w = build_workload(WorkloadSpec(isl="400", osl="150", concurrency=6, num_requests=300))
    log = simulate_fleet(one_tier(d, replicas=2), w).result.log
    assert log.done.all()
    events = sorted([(t, 1) for t in log.arrival_s.tolist()] + [(t, -1) for t in log.finish_s.tolist()])
    in_flight = np.cumsum([step for _, step in sorted(events, key=lambda e: (e[0], e[1]))])
    assert in_flight.max() == 6  # six at a time, not all 300 at t = 0
    pair = simulate(d, build_workload(WorkloadSpec(isl="400", osl="150", concurrency=3, num_requests=150))).summary()
    both = simulate_fleet(one_tier(d, replicas=2), w).summary
    assert both["throughput"]["requests_per_s"] == pytest.approx(2 * pair["throughput"]["requests_per_s"], rel=0.02)


def test_simulate_runs_sessions_on_a_fleet(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        'tiers:\n  - name: gpu\n    model: llama-3.1-8b\n    gpu: H100-SXM\n    replicas: 2\nroutes:\n  "*": [gpu]\n'
    )
    args = ["simulate", "--fleet", str(fleet), "--turns", "3", "--think-s", "2", "--rate", "1", "--num-requests", "30"]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert "sessions of 3 turns" in s["workload"]["description"] and s["requests"]["completed"] == 30


def test_a_fleets_hours_count_a_turn_in_the_hour_it_really_arrived(d) -> None:  # noqa: ANN001
    # turn 2 may come 90 s after turn 1 at 3,500 s (earliest 3,590 s: hour 0), but turn 1's 1,500-token answer
    # takes more than 10 s, so it arrives in hour 1
    w = Workload([3500.0, 3590.0], [200, 1800], [1500, 20], session_ids=[0, 0], think_s=[0.0, 90.0])
    fleet = one_tier(d)
    run = simulate_fleet(fleet, w)
    assert run.result.log.arrival_s[1] > 3600.0
    assert fleet_hours(fleet, run, w, None)["requests"][:2] == [1, 1]
