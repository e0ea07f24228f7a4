"""The replica driven in wall-clock time: tokens at the cost model's step times, queueing on KV, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from tokenomy.costmodel.perf import single_stream
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.twin.engine import (
    INITIAL_SLOTS,
    PACE_FACTOR,
    PACE_MAX_STEP_FRACTION,
    LiveRequest,
    TokenListener,
    TwinEngine,
)

# Llama-3.1-8B on one L4: slow steps (TTFT ~0.26 s for 1k tokens, ITL ~62 ms) and a KV cache of ~33k tokens.
L4_8B = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="L4", tp=1)).deployment


class Recorder(TokenListener):
    """Keeps what the engine delivered, and when."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.times_s: list[float] = []
        self.finished = asyncio.Event()
        self.clock = clock  # the engine's clock (a test on the virtual clock passes it)

    def on_tokens(self, req: LiveRequest, start: int, stop: int) -> None:
        self.ranges.append((start, stop))
        self.times_s.append(self.clock())

    def on_finish(self, req: LiveRequest) -> None:
        self.finished.set()

    @property
    def tokens(self) -> int:
        return sum(b - a for a, b in self.ranges)


def run_with(engine: TwinEngine, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        driver = asyncio.create_task(engine.run())
        try:
            await asyncio.wait_for(body(), timeout=20)
        finally:
            engine.close()
            await driver

    asyncio.run(main())


@pytest.mark.parametrize("busy_wait", [False, True], ids=["sleeping", "busy-wait"])
def test_a_lone_request_gets_the_predicted_ttft_and_itl_at_speedup(
    busy_wait: bool, virtual_clock: VirtualClock
) -> None:
    """On the virtual clock (behaviour, not the machine's load); delivery precision in wall time is measured by
    benchmarks/twin_jitter.py."""
    speedup, isl, osl = 5.0, 1000, 40
    engine = TwinEngine(L4_8B, speedup=speedup, busy_wait=busy_wait, clock=virtual_clock)
    rec = Recorder(virtual_clock)

    reqs: list[LiveRequest] = []

    async def body() -> None:
        reqs.append(engine.add(isl, osl, rec))
        await rec.finished.wait()

    run_with(engine, body)
    (req,) = reqs
    ttft_s, itl_s = single_stream(L4_8B, isl, osl)
    assert rec.tokens == osl
    assert rec.ranges == [(i, i + 1) for i in range(osl)]  # in order, one per step
    # The schedule is the cost model's, exactly (scaled by the speedup) ...
    assert (req.first_token_wall_s - req.arrival_wall_s) * speedup == pytest.approx(ttft_s, rel=0.02)
    assert (req.finish_wall_s - req.first_token_wall_s) / (osl - 1) * speedup == pytest.approx(itl_s, rel=0.02)
    # ... and tokens are delivered on it.
    delivered_ttft_s = (rec.times_s[0] - req.arrival_wall_s) * speedup
    delivered_itl_s = (rec.times_s[-1] - rec.times_s[0]) / (osl - 1) * speedup
    assert delivered_ttft_s == pytest.approx(ttft_s, rel=0.02)
    assert delivered_itl_s == pytest.approx(itl_s, rel=0.02)


def test_requests_queue_when_the_kv_cache_is_full() -> None:
    engine = TwinEngine(L4_8B, speedup=200.0)
    capacity = engine.replica.kv.total_blocks * engine.replica.kv.block_tokens
    isl = capacity * 45 // 100  # two fit, the third waits for a completion
    recs = [Recorder() for _ in range(3)]
    waiting_seen: list[int] = []

    async def body() -> None:
        reqs = [engine.add(isl, 20, rec) for rec in recs]
        while not recs[0].times_s:
            waiting_seen.append(engine.waiting)
            await asyncio.sleep(0.001)
        await asyncio.gather(*(rec.finished.wait() for rec in recs))
        assert all(r.finished for r in reqs)

    run_with(engine, body)
    assert max(waiting_seen) >= 1
    first_finish_s = min(recs[0].times_s[-1], recs[1].times_s[-1])
    assert recs[2].times_s[0] > first_finish_s
    assert [r.tokens for r in recs] == [20, 20, 20]
    assert engine.replica.kv.used_blocks == 0


class CancelsAt(Recorder):
    """A listener that cancels requests from inside the engine's delivery once it holds `tokens` tokens, so the
    moment of the cancel is a step of the engine, not a point in wall time."""

    def __init__(self, engine: TwinEngine, tokens: int) -> None:
        super().__init__()
        self.engine, self.at = engine, tokens
        self.cancel: list[LiveRequest] = []
        self.delivered_at_cancel = -1

    def on_tokens(self, req: LiveRequest, start: int, stop: int) -> None:
        super().on_tokens(req, start, stop)
        if self.delivered_at_cancel < 0 and self.tokens >= self.at:
            self.delivered_at_cancel = self.tokens
            for r in self.cancel:
                self.engine.cancel(r)


def test_cancelled_requests_stop_and_free_their_kv() -> None:
    engine = TwinEngine(L4_8B, speedup=50.0, config=ReplicaConfig(max_num_seqs=2))
    keep, queued = Recorder(), Recorder()
    drop = CancelsAt(engine, 3)

    async def body() -> None:
        engine.add(500, 30, keep)
        dropped = engine.add(500, 1000, drop)
        never = engine.add(500, 1000, queued)  # max_num_seqs=2: it waits for a free slot
        drop.cancel = [dropped, never]  # both cancelled when `drop` has 3 tokens, long before `keep` ends
        await keep.finished.wait()

    run_with(engine, body)
    assert drop.delivered_at_cancel >= 3 and drop.tokens == drop.delivered_at_cancel  # nothing after the cancel
    assert keep.tokens == 30 and not drop.finished.is_set() and queued.tokens == 0
    assert engine.counters.requests_cancelled == 2 and engine.counters.requests_finished == 1
    assert engine.replica.outstanding == 0 and engine.replica.kv.used_blocks == 0
    assert not engine.live


def test_the_replica_settings_reach_the_twins_replica_and_cancelling_returns_a_full_length_commitment() -> None:
    """Every ReplicaConfig field given to the twin reaches its replica (full-length admission on a vLLM profile
    here), and a cancelled request gives back the KV it had set aside for its whole length."""
    config = ReplicaConfig(max_num_seqs=2, kv_admission="full_length", block_tokens=32)
    engine = TwinEngine(L4_8B, speedup=50.0, config=config)
    assert engine.replica.kv.full_length and engine.replica.kv.block_tokens == 32
    assert engine.config.max_num_seqs == 2 and engine.config.exact
    keep, queued = Recorder(), Recorder()
    drop = CancelsAt(engine, 3)

    async def body() -> None:
        engine.add(500, 30, keep)
        dropped = engine.add(500, 1000, drop)
        never = engine.add(500, 1000, queued)
        drop.cancel = [dropped, never]
        await keep.finished.wait()

    run_with(engine, body)
    assert keep.tokens == 30 and engine.replica.outstanding == 0
    assert engine.replica.kv.committed_blocks == 0 and engine.replica.kv.used_blocks == 0


def test_more_requests_than_slots_all_complete() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM", tp=1)).deployment
    engine = TwinEngine(d, speedup=1000.0)
    n = INITIAL_SLOTS + 200
    recs = [Recorder() for _ in range(n)]

    async def body() -> None:
        for rec in recs:
            engine.add(16, 2, rec)
        await asyncio.gather(*(rec.finished.wait() for rec in recs))

    run_with(engine, body)
    assert all(rec.tokens == 2 for rec in recs)
    assert engine.counters.generation_tokens == 2 * n and engine.counters.prompt_tokens == 16 * n
    assert len(engine.log.arrival_s) == 2 * INITIAL_SLOTS and not engine.live


def test_requests_that_can_never_fit_are_refused() -> None:
    engine = TwinEngine(L4_8B)
    with pytest.raises(ValueError, match="exceed the KV cache"):
        engine.add(100_000, 10, Recorder())
    with pytest.raises(ValueError):
        engine.add(10, 0, Recorder())
    with pytest.raises(ValueError):
        TwinEngine(L4_8B, speedup=0)


def test_a_slot_freed_between_a_step_and_its_emission_is_not_reused_by_it() -> None:
    """A request that finishes in a step and is cancelled before the step's tokens go out (its client left
    while the driver slept) must not hand its finish to a newcomer that took its slot."""
    engine = TwinEngine(L4_8B)
    first, second = Recorder(), Recorder()
    a = engine.add(100, 1, first)
    engine._submit_pending()
    engine.replica.step()  # prefill: a's one token, and a finishes
    assert engine.finished_in_step == [a.rid]
    engine.cancel(a)
    b = engine.add(100, 5, second)
    assert b.rid != a.rid
    engine._emit(engine.wall_of(engine.replica.now))
    assert not b.finished and second.tokens == 0 and first.tokens == 0


class HoldRecorder(Recorder):
    """Also counts the writes: each on_tokens, flush with something held, or on_finish is one socket write."""

    def __init__(self) -> None:
        super().__init__()
        self.held = 0
        self.writes = 0

    def on_tokens(self, req: LiveRequest, start: int, stop: int) -> None:
        super().on_tokens(req, start, stop)
        self.writes += 1

    def hold(self, req: LiveRequest, start: int, stop: int) -> None:
        self.ranges.append((start, stop))
        self.held += 1

    def flush(self, req: LiveRequest) -> None:
        if self.held:
            self.writes += 1
            self.held = 0

    def on_finish(self, req: LiveRequest) -> None:
        self.writes += 1
        super().on_finish(req)


def test_overdue_steps_keep_one_event_per_step_but_share_a_write(virtual_clock: VirtualClock) -> None:
    # steps of ~60 ns on a clock that ticks 1 µs per reading: every step is overdue when taken, whatever the load
    engine = TwinEngine(L4_8B, speedup=1e6, clock=virtual_clock)
    recs = [HoldRecorder() for _ in range(3)]

    async def body() -> None:
        for rec in recs:
            engine.add(100, 64, rec)
        for rec in recs:
            await rec.finished.wait()

    run_with(engine, body)
    for rec in recs:
        assert rec.ranges == [(i, i + 1) for i in range(64)]  # one range (one SSE event) per step, in order
        assert rec.writes <= 3  # 64 steps' tokens and the closing events in a write or few, not 65
    assert engine.lateness.n == sum(rec.writes for rec in recs)  # each write's lateness is recorded


class VirtualClock:
    """Time that passes only when the engine sleeps, a listener writes, or (a tick) the clock is read.

    The tick lets the engine's spin loops end; everything else is exact, so a busy machine changes nothing.
    """

    def __init__(self, tick_s: float = 1e-6) -> None:
        self.now_s = 1000.0
        self.tick_s = tick_s

    def __call__(self) -> float:
        self.now_s += self.tick_s
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += max(seconds, 0.0)


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """The engine's time module and asyncio sleeps on a virtual clock (asyncio's events stay real)."""
    import types

    import tokenomy.twin.engine as engine_module

    clock = VirtualClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    fake_time = types.SimpleNamespace(perf_counter=clock, thread_time=clock, sleep=clock.advance)
    monkeypatch.setattr(engine_module, "time", fake_time)
    monkeypatch.setattr(engine_module, "asyncio", types.SimpleNamespace(Event=asyncio.Event, sleep=sleep))
    return clock


class SlowWriter(Recorder):
    """A listener whose every write takes `write_s`, like a socket write (on the virtual clock)."""

    def __init__(self, write_s: float, clock: VirtualClock) -> None:
        super().__init__()
        self.write_s = write_s
        self.clock = clock

    def on_tokens(self, req: LiveRequest, start: int, stop: int) -> None:
        self.clock.advance(self.write_s)
        self.ranges.append((start, stop))
        self.times_s.append(self.clock.now_s)


def pass_gaps_s(
    engine: TwinEngine, streams: int, write_s: float, clock: VirtualClock
) -> tuple[list[float], list[float]]:
    """Serve `streams` requests; (gaps between consecutive writes within a step's pass, each write's lateness)."""
    recs = [SlowWriter(write_s, clock) for _ in range(streams)]

    async def body() -> None:
        for rec in recs:
            engine.add(100, 24, rec)
        for rec in recs:
            await rec.finished.wait()

    run_with(engine, body)
    gaps_s = []
    for step in range(4, 23):  # steady steps: every stream decoding, write cost measured
        times_s = sorted(rec.times_s[step] for rec in recs)
        gaps_s += [b - a for a, b in zip(times_s, times_s[1:], strict=False)]
    held = engine.lateness.values_s[: engine.lateness.n]
    return gaps_s, list(held)


def test_a_pass_spaces_its_writes_so_a_slow_write_does_not_shift_the_others(virtual_clock: VirtualClock) -> None:
    """On a virtual clock (writes cost exactly write_s, sleeps end on time): behaviour, not the machine's load."""
    write_s = 100e-6
    paced = TwinEngine(L4_8B, speedup=5.0, clock=virtual_clock)
    paced.write_cost_s = write_s  # as if measured already (the running mean takes dozens of passes to settle)
    gaps_s, lateness_s = pass_gaps_s(paced, 16, write_s, virtual_clock)
    # Writes sit PACE_FACTOR mean write costs apart ...
    assert np.median(gaps_s) == pytest.approx(PACE_FACTOR * write_s, rel=0.05)
    # ... and the pass is centred on the step's end.
    assert abs(np.median(lateness_s)) < write_s
    back_to_back = TwinEngine(L4_8B, speedup=5.0, clock=virtual_clock)
    back_to_back.write_cost_s = write_s
    back_to_back.pace_factor = 0.0
    gaps_s, lateness_s = pass_gaps_s(back_to_back, 16, write_s, virtual_clock)
    assert np.median(gaps_s) == pytest.approx(write_s, rel=0.05)
    # Back to back, the pass still starts half its length early: the median write is on time.
    assert abs(np.median(lateness_s)) < write_s


def test_a_pass_is_paced_within_its_share_of_the_step() -> None:
    engine = TwinEngine(L4_8B)
    engine.write_cost_s = cost_s = 10e-6
    fits_s = 256 * PACE_FACTOR * cost_s / PACE_MAX_STEP_FRACTION  # the shortest step the full spacing fits in
    assert engine._slot_s(256, 2 * fits_s) == pytest.approx(PACE_FACTOR * cost_s)
    assert engine._slot_s(256, 0.8 * fits_s) == pytest.approx(0.8 * PACE_FACTOR * cost_s)  # shrunk to fit
    assert engine._slot_s(256, 0.9 / PACE_FACTOR * fits_s) == 0.0  # what fits is less than a write: back to back
    assert engine._slot_s(256, float("nan")) == 0.0  # the first step: no previous step end to go by
    engine.pace_factor = 0.0
    assert engine._slot_s(256, 2 * fits_s) == 0.0
