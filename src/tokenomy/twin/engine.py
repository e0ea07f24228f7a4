"""The simulator's replica run in wall-clock time: one asyncio task takes engine steps and releases their tokens.

The replica runs in exact mode (one engine step per `step()`), so every step has a predicted end time on the
simulated clock. Wall time maps onto it as `wall = origin + sim / speedup`; after each step the driver sleeps
until the step's wall end, then hands every sequence the tokens that step produced, in one pass. Requests that
arrive while a step runs join at the next step boundary, as in a real engine (and as in the simulator, which
schedules an arrival during a step at that step's end). If the process falls more than `MAX_LAG_S` behind the
schedule, the origin moves forward (counted in `resyncs`) rather than bursting tokens.

Steps whose end has already passed when they are taken (a tiny step time, e.g. a large `speedup`) are taken
back to back for up to CATCH_UP_S: their tokens are held (still one SSE event per step) and each stream gets
one socket write for all of them.

Writing a step's tokens to many streams takes time (a socket write each, ~12-20 µs here), so the pass is
centred on the step's end: it starts half its expected duration early. Its writes are paced: write k is due
k slots after the pass starts, a slot being PACE_FACTOR times a running mean of the CPU time of one write
(CPU, not wall, so that a pass the OS interrupted does not skew it). Back to back, a write that takes longer
than usual would shift every write after it, and how long a pass takes varies by a third from step to step;
paced, each stream's write stays at its slot and the slack absorbs a slow write within a few slots. A pass
is paced over at most PACE_MAX_STEP_FRACTION of the step (with large speedups, back to back).
With `busy_wait` the driver spins until a step's end instead of sleeping: on a virtual machine an idle CPU
can take milliseconds to get back, so this gives the most even timing for the price of one busy CPU.
Each write records its lateness (signed: negative when early) and, per stream, its delay variation: the
change in lateness since the stream's previous write, i.e. |actual gap − scheduled gap| between consecutive
token events (RFC 3393's jitter). Streams are written in the batch's order, which is stable from step to step,
so a stream's place in the pass adds a constant to its lateness and nothing to its delay variation.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.kvcache import Seq
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import Replica, ReplicaConfig

SPIN_S = 0.0015  # the last stretch before a step's end is waited in short naps, not by a loop timer
BLOCKING_SLEEP_MAX_S = 0.0003  # longest nap: the loop does not answer its sockets meanwhile
BLOCKING_SLEEP_MARGIN_S = 0.0005  # naps stop this long before the wake time: then the loop spins (a napping
# thread must win back the CPU and the GIL to wake, which can take longer under load)
MAX_LAG_S = 0.25  # behind the schedule by more than this (wall seconds): move the origin instead of catching up
LATENESS_SAMPLES = 1 << 20  # emission lateness ring buffer (most recent samples)
INITIAL_SLOTS = 1024
INITIAL_WRITE_COST_S = 10e-6
WRITE_COST_SMOOTHING = 0.05  # weight of the newest pass in the running mean of one write's cost
TIMED_PASS_WRITES = 8  # passes with fewer writes need no lead and are not timed (a CPU clock read is a syscall)
CATCH_UP_S = 0.001  # longest run of back-to-back steps whose ends have passed, before their tokens are written
PACE_FACTOR = 2.5  # a paced pass spaces its writes this many mean write costs apart
PACE_MAX_STEP_FRACTION = 0.5  # a paced pass takes at most this fraction of the step


class TokenListener:
    """Receives a request's tokens from the engine's driver (implemented by the HTTP layer)."""

    def on_tokens(self, req: LiveRequest, start: int, stop: int) -> None:
        """Output tokens [start, stop) were produced (called at the step's scheduled end)."""

    def hold(self, req: LiveRequest, start: int, stop: int) -> None:
        """Like on_tokens, but the write may wait for `flush` or `on_finish` (a step whose end has passed)."""
        self.on_tokens(req, start, stop)

    def flush(self, req: LiveRequest) -> None:
        """Write whatever `hold` kept back."""

    def on_finish(self, req: LiveRequest) -> None:
        """The last output token has been delivered."""


@dataclass(eq=False)
class LiveRequest:
    """One request being served: its slot in the replica's log, its sequence and what it has been sent."""

    rid: int
    prompt_tokens: int
    output_tokens: int
    listener: TokenListener
    arrival_wall_s: float
    seq: Seq | None = None
    sent: int = 0
    first_token_wall_s: float = math.nan
    finish_wall_s: float = math.nan
    cancelled: bool = False
    finished: bool = False
    prefix_ids: tuple[int, ...] = field(default_factory=tuple)
    last_lateness_s: float = math.nan  # of this stream's previous write


@dataclass
class EngineCounters:
    """Totals since start (wall seconds, tokens)."""

    requests_started: int = 0
    requests_finished: int = 0
    requests_cancelled: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens found in the prefix cache
    generation_tokens: int = 0
    resyncs: int = 0
    behind_s: float = 0.0


class LatenessBuffer:
    """The most recent samples of a timing error (seconds), e.g. emission lateness or its variation."""

    def __init__(self, capacity: int = LATENESS_SAMPLES):
        self.values_s = np.zeros(capacity)
        self.n = 0

    def add(self, value_s: float) -> None:
        self.values_s[self.n % len(self.values_s)] = value_s
        self.n += 1

    def reset(self) -> None:
        self.n = 0

    def summary(self) -> dict[str, float]:
        """Signed lateness (count, mean, min, p50, p90, p99, p999, max) and jitter = |lateness| (jitter_p50…)."""
        held = self.values_s[: min(self.n, len(self.values_s))]
        if not held.size:
            return {"count": 0}
        p50, p90, p99, p999 = np.percentile(held, [50, 90, 99, 99.9])
        j50, j90, j99, j999 = np.percentile(np.abs(held), [50, 90, 99, 99.9])
        return {
            "count": int(held.size),
            "mean": float(held.mean()),
            "min": float(held.min()),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "p999": float(p999),
            "max": float(held.max()),
            "jitter_p50": float(j50),
            "jitter_p90": float(j90),
            "jitter_p99": float(j99),
            "jitter_p999": float(j999),
        }


def empty_log(capacity: int) -> RequestLog:
    """A request log with `capacity` unused slots."""
    return RequestLog(
        arrival_s=np.full(capacity, np.nan),
        input_tokens=np.zeros(capacity, dtype=np.int64),
        output_tokens=np.zeros(capacity, dtype=np.int64),
        first_token_s=np.full(capacity, np.nan),
        finish_s=np.full(capacity, np.nan),
        preemptions=np.zeros(capacity, dtype=np.int64),
        cached_tokens=np.zeros(capacity, dtype=np.int64),
        where=np.full(capacity, -1, dtype=np.int64),
    )


def grow_log(log: RequestLog, extra: int) -> None:
    """Append `extra` unused slots to every array of `log`, in place (the replica keeps its reference)."""
    more = empty_log(extra)
    for name in log.__dataclass_fields__:
        setattr(log, name, np.concatenate([getattr(log, name), getattr(more, name)]))


class TwinEngine:
    """A replica of deployment `d` driven in real time (`speedup` × faster than the cost model's clock)."""

    def __init__(
        self,
        d: Deployment,
        config: ReplicaConfig | None = None,
        speedup: float = 1.0,
        seed: int = 0,
        clock: Callable[[], float] = time.perf_counter,
        busy_wait: bool = False,
    ):
        if speedup <= 0:
            raise ValueError(f"speedup must be positive, got {speedup}")
        # every setting as given, stepped one by one and without a timeline (the twin runs indefinitely)
        self.config = replace(config or ReplicaConfig(), exact=True, sample_interval_s=1e12)
        self.d = d
        self.speedup = speedup
        self.clock = clock
        self.log = empty_log(INITIAL_SLOTS)
        self.replica = Replica(d, self.config, self.log, seed=seed)
        self.replica.on_finish = self._on_replica_finish
        self.free_rids = list(range(INITIAL_SLOTS - 1, -1, -1))
        self.live: dict[int, LiveRequest] = {}
        self.pending: list[LiveRequest] = []
        self.finished_in_step: list[int] = []
        self.lateness = LatenessBuffer()
        self.delay_variation = LatenessBuffer()
        self.held: list[LiveRequest] = []  # streams with tokens held back in this pass
        self.counters = EngineCounters()
        self.origin_wall_s = clock()
        self.write_cost_s = INITIAL_WRITE_COST_S
        self.busy_wait = busy_wait
        self.pace_factor = PACE_FACTOR  # 0: every pass back to back
        self.last_target_wall_s = math.nan  # the previous pass's step end
        self.pass_start_s = 0.0  # when the current pass's first write is due
        self.pass_slot_s = 0.0  # spacing of the current pass's writes (0: back to back)
        self.pass_writes = 0  # writes of the current pass so far
        self.pass_waited_s = 0.0  # time the current pass spent waiting for slots
        self.wake = asyncio.Event()
        self.closed = False
        self.released_rids: list[int] = []  # reusable from the next step boundary (a step's finishes name rids)

    # ---- clocks --------------------------------------------------------------------------------

    def wall_of(self, sim_s: float) -> float:
        return self.origin_wall_s + sim_s / self.speedup

    def sim_of(self, wall_s: float) -> float:
        return (wall_s - self.origin_wall_s) * self.speedup

    # ---- requests ------------------------------------------------------------------------------

    def rejection(self, prompt_tokens: int, output_tokens: int) -> str:
        """Why such a request can never run on this replica ('' when it can)."""
        return self.replica.rejection(prompt_tokens, output_tokens)

    def add(
        self, prompt_tokens: int, output_tokens: int, listener: TokenListener, prefix_ids: tuple[int, ...] = ()
    ) -> LiveRequest:
        """Queue a request; it joins the replica at the next step boundary."""
        if output_tokens < 1:
            raise ValueError("a request must ask for at least one output token")
        why = self.rejection(prompt_tokens, output_tokens)
        if why:
            raise ValueError(why)
        if not self.free_rids:
            capacity = len(self.log.arrival_s)
            grow_log(self.log, capacity)
            self.free_rids = list(range(2 * capacity - 1, capacity - 1, -1))
        rid = self.free_rids.pop()
        now = self.clock()
        req = LiveRequest(rid, prompt_tokens, output_tokens, listener, now, prefix_ids=prefix_ids)
        log = self.log
        log.arrival_s[rid] = self.sim_of(now)
        log.input_tokens[rid] = prompt_tokens
        log.output_tokens[rid] = output_tokens
        log.first_token_s[rid] = np.nan
        log.finish_s[rid] = np.nan
        log.preemptions[rid] = 0
        log.cached_tokens[rid] = 0
        log.where[rid] = -1
        self.live[rid] = req
        self.pending.append(req)
        self.counters.requests_started += 1
        self.counters.prompt_tokens += prompt_tokens
        self.wake.set()
        return req

    def cancel(self, req: LiveRequest) -> None:
        """Stop serving a request (its client went away): no more tokens, its KV is freed."""
        if req.finished or req.cancelled:
            return
        req.cancelled = True
        self.counters.requests_cancelled += 1
        if req.seq is None:
            self.pending.remove(req)
        else:
            self.replica.cancel(req.seq)
        self._release(req)

    @property
    def prefix_block_tokens(self) -> int:
        """Tokens per prefix-cache id (0 when the replica caches no prefixes)."""
        kv = self.replica.kv
        return getattr(kv, "prefix_block_tokens", 0) if self.config.prefix_caching else 0

    def _release(self, req: LiveRequest) -> None:
        self.counters.cached_prompt_tokens += int(self.log.cached_tokens[req.rid])
        del self.live[req.rid]
        self.released_rids.append(req.rid)

    # ---- the driver ----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self.replica.prefilling) + len(self.replica.batch.seqs)

    @property
    def waiting(self) -> int:
        return len(self.replica.waiting) + len(self.pending)

    @property
    def kv_usage(self) -> float:
        kv = self.replica.kv
        return kv.used_blocks / kv.total_blocks if kv.total_blocks else 0.0

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def _submit_pending(self) -> None:
        replica = self.replica
        for req in self.pending:
            if replica.submit(req.rid, req.prefix_ids):
                req.seq = replica.waiting[-1]
            else:  # cannot happen after add()'s check; finish it empty rather than hang
                self._finish(req)
        self.pending = []

    async def run(self) -> None:
        """Take engine steps in real time until closed."""
        replica = self.replica
        while not self.closed:
            if self.released_rids:
                self.free_rids.extend(self.released_rids)
                self.released_rids = []
            if self.pending:
                if not replica.outstanding:
                    replica.now = max(replica.now, self.sim_of(self.clock()))  # idle time passes
                self._submit_pending()
            if not replica.outstanding:
                self.wake.clear()
                await self.wake.wait()
                continue
            target_wall_s = self._take_steps()
            if target_wall_s is None:  # queued work that cannot start yet: look again shortly
                await asyncio.sleep(0.001)
                continue
            writes = len(replica.batch.seqs) + len(self.finished_in_step) + len(self.held)
            timed = writes >= TIMED_PASS_WRITES
            slot_s = self._slot_s(writes, target_wall_s - self.last_target_wall_s) if timed else 0.0
            self.last_target_wall_s = target_wall_s
            lead_s = 0.5 * writes * (slot_s or self.write_cost_s)
            await self._sleep_until(target_wall_s, lead_s)
            self.pass_start_s, self.pass_slot_s = target_wall_s - lead_s, slot_s
            self.pass_writes, self.pass_waited_s = 0, 0.0
            pass_cpu_s = time.thread_time() if timed else 0.0
            self._emit(target_wall_s)
            self._flush_held(target_wall_s)
            self.pass_slot_s = 0.0
            if timed:
                cost_s = (time.thread_time() - pass_cpu_s - self.pass_waited_s) / writes
                self.write_cost_s += WRITE_COST_SMOOTHING * (min(cost_s, 10 * self.write_cost_s) - self.write_cost_s)

    def _slot_s(self, writes: int, step_wall_s: float) -> float:
        """Spacing of a pass's writes: PACE_FACTOR mean write costs, less if that would not fit the pass in
        PACE_MAX_STEP_FRACTION of the step (`step_wall_s`, NaN for the first); 0 (back to back) when what fits
        is no more than a write's cost. Shrinking, not switching pacing off, keeps every stream's place in the
        pass nearly the same from one step to the next when the step time or the write cost drifts."""
        if not step_wall_s > 0:
            return 0.0
        slot_s = min(self.pace_factor * self.write_cost_s, PACE_MAX_STEP_FRACTION * step_wall_s / writes)
        return slot_s if slot_s > self.write_cost_s else 0.0

    def _take_steps(self) -> float | None:
        """Take the next step, and more while their ends have already passed (tokens held); the last one's wall end.

        None when no step could be formed (queued work that cannot start yet) and no tokens are held.
        """
        replica, clock = self.replica, self.clock
        self.finished_in_step = []
        if not replica.step():
            return None
        catch_up_until_s = clock() + CATCH_UP_S
        passed_wall_s = math.nan  # end of the last step whose tokens are held
        while True:
            target_wall_s = self.wall_of(replica.now)
            now_s = clock()
            if target_wall_s > now_s:
                self._flush_held(passed_wall_s)  # what is overdue goes now, not at this step's end
                return target_wall_s
            if now_s > catch_up_until_s or not replica.outstanding:
                return target_wall_s
            self._emit(target_wall_s, hold=True)
            passed_wall_s = target_wall_s
            self.finished_in_step = []
            if not replica.step():
                return target_wall_s  # its tokens are held: the caller writes them

    async def _sleep_until(self, target_wall_s: float, lead_s: float = 0.0) -> None:
        """Wake `lead_s` before the target: a loop timer to SPIN_S before that, then short naps and loop yields."""
        clock = self.clock
        wake_s = target_wall_s - lead_s
        delay = wake_s - clock()
        busy = self.busy_wait
        if delay > SPIN_S and not busy:
            await asyncio.sleep(delay - SPIN_S)  # loop timers have a 1 ms resolution
        while (left_s := wake_s - clock()) > 0:
            # Short blocking naps (unless busy-waiting): the GIL and the CPU go to others meanwhile.
            if left_s > BLOCKING_SLEEP_MARGIN_S and not busy:
                time.sleep(min(left_s - BLOCKING_SLEEP_MARGIN_S, BLOCKING_SLEEP_MAX_S))
            await asyncio.sleep(0)  # and the loop serves its sockets between them
        late = clock() - wake_s
        if late > MAX_LAG_S:
            self.origin_wall_s += late
            self.counters.resyncs += 1
            self.counters.behind_s += late
        if delay <= SPIN_S or busy:
            await asyncio.sleep(0)  # always let the server's other tasks run between steps

    def _on_replica_finish(self, rid: int, _now: float) -> None:
        self.finished_in_step.append(rid)

    def _pace(self) -> None:
        """Wait (spinning) for the next write's slot in a paced pass; no wait once the pass runs late."""
        slot_s = self.pass_slot_s
        if not slot_s:
            return
        clock = self.clock
        due_s = self.pass_start_s + self.pass_writes * slot_s
        self.pass_writes += 1
        now_s = clock()
        if now_s < due_s:
            while clock() < due_s:
                pass
            self.pass_waited_s += due_s - now_s

    def _record_write(self, req: LiveRequest, target_wall_s: float) -> None:
        """Lateness of a write that just completed, and its change since the stream's previous write."""
        late_s = self.clock() - target_wall_s
        self.lateness.add(late_s)
        previous_s = req.last_lateness_s
        if previous_s == previous_s:  # not NaN: the stream had a write before
            self.delay_variation.add(abs(late_s - previous_s))
        req.last_lateness_s = late_s

    def _emit(self, target_wall_s: float, hold: bool = False) -> None:
        """Hand every sequence the tokens of the step that ended at `target_wall_s` (written, or held back)."""
        live, held, record, pace = self.live, self.held, self._record_write, self._pace
        g = self.replica.batch.g
        produced = 0
        for seq in self.replica.batch.seqs:
            req = live[seq.rid]
            generated = g + seq.gen_off
            if generated > req.sent:
                start = req.sent
                req.sent = generated
                produced += generated - start
                if start == 0:
                    req.first_token_wall_s = target_wall_s
                if hold:
                    req.listener.hold(req, start, generated)
                    held.append(req)
                else:
                    pace()
                    req.listener.on_tokens(req, start, generated)
                    record(req, target_wall_s)
        for rid in self.finished_in_step:
            req = live.get(rid)
            if req is None:
                continue
            start = req.sent
            if req.output_tokens > start:
                req.sent = req.output_tokens
                produced += req.output_tokens - start
                if start == 0:
                    req.first_token_wall_s = target_wall_s
                req.listener.hold(req, start, req.output_tokens)
            req.finish_wall_s = target_wall_s
            pace()
            self._finish(req)  # on_finish writes what was held with the closing events
            record(req, target_wall_s)
        self.finished_in_step = []
        self.counters.generation_tokens += produced

    def _flush_held(self, target_wall_s: float) -> None:
        """Write the tokens held back by steps whose ends had passed (one write per stream)."""
        if not self.held:
            return
        held, self.held = self.held, []
        seen: set[int] = set()
        for req in held:
            if req.finished or req.cancelled or id(req) in seen:
                continue
            seen.add(id(req))
            self._pace()
            req.listener.flush(req)
            self._record_write(req, target_wall_s)

    def _finish(self, req: LiveRequest) -> None:
        req.finished = True
        self.counters.requests_finished += 1
        self._release(req)
        req.listener.on_finish(req)
