"""One serving replica, step by step: a scheduler with `waiting` and `running` queues over a KV allocator.

Each call to `schedule()` forms the next forward step the way the engine would:
- static: admit a batch when the previous one is done; it runs until its longest request ends
  (finished rows stay in the batch as padding), as FasterTransformer-era servers did;
- continuous (vLLM v0, Orca): iteration-level batching; when requests wait and fit, a
  prefill-only step runs their whole prompts first, otherwise every running sequence decodes;
- chunked (Sarathi-Serve, vLLM v1): every running sequence decodes, and prompt chunks fill
  the rest of the `max_num_batched_tokens` budget.
The step's duration comes from costmodel's step formula (`Deployment.step_cost()`).

Fast mode: when a step is pure decode and nothing can join the batch, the next steps are all
alike until the next completion, arrival or KV-block shortage; `_decode_span` takes them in one
go and sums their times with Simpson's rule (exact for the linear growth of the KV read);
`DecodeBatch` keeps per-sequence counters relative to a shared step counter so that costs O(1).
Exact mode (`exact=True`) takes every step one by one and is the reference the fast mode is
tested against.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.batch import DecodeBatch
from tokenomy.sim.kvcache import ContiguousKV, PagedKV, Seq, blocks_for
from tokenomy.sim.metrics import GapHistogram, ReplicaStats, RequestLog, Timeline

SCHEDULERS = ("static", "continuous", "chunked")
KV_MODES = ("paged", "contiguous")


@dataclass(frozen=True)
class SpecDecoding:
    """Draft-model speculative decoding: γ draft tokens per step, each accepted with probability α."""

    draft: Deployment
    draft_tokens: int = 4
    acceptance: float = 0.7


@dataclass(frozen=True)
class ReplicaConfig:
    scheduler: str = "chunked"
    kv: str = "paged"
    block_tokens: int = 16
    max_num_seqs: int | None = None  # default: the engine profile's
    max_num_batched_tokens: int | None = None  # default: the engine profile's
    prefix_caching: bool = True
    spec: SpecDecoding | None = None
    exact: bool = False  # take every step one by one (the reference for the fast mode)
    sample_interval_s: float = 1.0  # timeline resolution

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler '{self.scheduler}'; choose from {', '.join(SCHEDULERS)}")
        if self.kv not in KV_MODES:
            raise ValueError(f"unknown KV allocation '{self.kv}'; choose from {', '.join(KV_MODES)}")
        if self.block_tokens < 1:
            raise ValueError(f"block size must be a positive number of tokens, got {self.block_tokens}")


class Replica:
    """A replica's queues, KV cache and clock; `run_until(t)` executes steps until its clock reaches t."""

    def __init__(self, d: Deployment, config: ReplicaConfig, log: RequestLog, index: int = 0, seed: int = 0):
        self.d = d
        self.config = config
        self.log = log
        self.index = index
        self.cost = d.step_cost()
        self.draft_cost = config.spec.draft.step_cost() if config.spec else None
        self.fast = not config.exact and config.spec is None  # spans of identical decode steps allowed
        self.decode_lines: dict[int, tuple[float, float] | None] = {}  # batch size -> cost.decode_line(b)
        self.rng = np.random.default_rng(seed)
        prof = d.profile
        self.max_seqs = config.max_num_seqs or prof.max_num_seqs
        self.budget = config.max_num_batched_tokens or prof.max_num_batched_tokens
        total_blocks = int(d.memory.kv_capacity_tokens // config.block_tokens) if d.memory.fits else 0
        if config.kv == "paged":
            self.kv: PagedKV | ContiguousKV = PagedKV(total_blocks, config.block_tokens)
        else:
            self.kv = ContiguousKV(total_blocks, config.block_tokens, d.static_context_tokens)
        self.longest_request_tokens = self._longest_request_tokens()
        self.waiting: deque[Seq] = deque()
        self.prefilling: list[Seq] = []  # admitted, prompt not finished (admission order)
        self.batch = DecodeBatch(config.block_tokens, paged=self.kv.grows)  # producing output tokens
        self.padding: list[Seq] = []  # static batching: finished rows still computed until the batch ends
        self.padding_ctx = 0
        self.now = 0.0
        self.itl = GapHistogram()
        self.stats = ReplicaStats()
        self.timeline = Timeline()
        self.next_sample_s = 0.0
        self.on_finish: Callable[[int, float], None] | None = None

    # ---- requests in -------------------------------------------------------------------------

    def _longest_request_tokens(self) -> int:
        """Input + output tokens of the longest request that can ever run here (−1: none can)."""
        if not self.d.memory.fits:
            return -1
        longest = self.kv.total_blocks * self.config.block_tokens - 1
        if isinstance(self.kv, ContiguousKV):
            longest = min(longest, self.kv.reserved_tokens)
        return longest

    def rejection(self, input_tokens: int, output_tokens: int) -> str:
        """Why a request can never run here ('' when it can)."""
        length = input_tokens + output_tokens
        if not self.d.memory.fits:
            return "the model does not fit this replica"
        if isinstance(self.kv, ContiguousKV) and length > self.kv.reserved_tokens:
            return f"{length} tokens exceed the {self.kv.reserved_tokens}-token reservation"
        if blocks_for(length + 1, self.config.block_tokens) > self.kv.total_blocks:
            return f"{length} tokens exceed the KV cache ({self.kv.total_blocks * self.config.block_tokens} tokens)"
        return ""

    def submit(self, rid: int, prefix_ids: tuple[int, ...] = ()) -> bool:
        """Queue request `rid` of the log; False if it can never run here."""
        log = self.log
        isl, osl = int(log.input_tokens[rid]), int(log.output_tokens[rid])
        if isl + osl > self.longest_request_tokens:
            return False
        log.where[rid] = self.index
        self.waiting.append(Seq(rid, isl, osl, prefix_ids if self.config.prefix_caching else ()))
        return True

    def cancel(self, seq: Seq) -> None:
        """Take a request out of whichever queue holds it and free its KV blocks (between steps; the
        twin calls it when a client disconnects)."""
        if seq in self.waiting:
            self.waiting.remove(seq)  # queued sequences hold no blocks
            return
        if seq in self.prefilling:
            self.prefilling.remove(seq)
        elif seq in self.batch.seqs:
            self.batch.remove(seq)
        else:
            return  # already finished
        self.kv.release(seq)

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.batch.seqs)

    def queued_prefill_tokens(self) -> int:
        return sum(s.remaining_prefill for s in self.waiting) + sum(s.remaining_prefill for s in self.prefilling)

    # ---- the clock ---------------------------------------------------------------------------

    def run_until(self, t_s: float) -> None:
        """Execute steps while the clock is before t_s (the last one may end after it); idle time jumps to t_s."""
        while self.now < t_s:
            if not self.step(t_s):
                if math.isinf(t_s):
                    return
                self._sample(t_s)
                self.now = t_s
                return

    def step(self, t_limit: float = math.inf) -> bool:
        """Form and execute the next step (or a span of identical decode steps); False when idle."""
        chunks, decode = self.schedule()
        if not chunks and not decode:
            return False
        if not chunks and self.fast and self._can_span():
            self._decode_span(t_limit)
        else:
            self._execute(chunks, decode)
        if self.now >= self.next_sample_s:
            self._sample(self.now)
        return True

    # ---- scheduling --------------------------------------------------------------------------

    def schedule(self) -> tuple[list[tuple[Seq, int]], bool]:
        """The next step: prompt chunks to compute, and whether the running sequences decode."""
        scheduler = self.config.scheduler
        if scheduler == "static":
            return self._schedule_static()
        if scheduler == "continuous":
            chunks = self._admit(whole_prompts=True)
            if chunks:
                return chunks, False
            return [], bool(self.batch.seqs)
        # chunked: decodes first, then prompt chunks fill the token budget
        chunks, budget = self._continue_prompts(self.budget - len(self.batch.seqs))
        if self.waiting:
            chunks += self._admit(whole_prompts=False, budget=budget)
        return chunks, bool(self.batch.seqs)

    def _admit(self, whole_prompts: bool, budget: int | None = None) -> list[tuple[Seq, int]]:
        """Move waiting requests into the batch while sequences, tokens and KV blocks allow."""
        budget = self.budget if budget is None else budget
        chunks: list[tuple[Seq, int]] = []
        while self.waiting and budget > 0 and len(self.prefilling) + len(self.batch.seqs) < self.max_seqs:
            seq = self.waiting[0]
            if whole_prompts and seq.prompt_tokens > budget and chunks:
                break
            if not self.kv.admit(seq):
                break
            self.waiting.popleft()
            self.prefilling.append(seq)
            if seq.prefilled:  # prompt tokens found in the prefix cache
                self.log.cached_tokens[seq.rid] += seq.prefilled
            n = seq.remaining_prefill if whole_prompts else min(seq.remaining_prefill, budget)
            chunks.append((seq, n))
            budget -= n
        return chunks

    def _schedule_static(self) -> tuple[list[tuple[Seq, int]], bool]:
        if not self.prefilling and not self.batch.seqs:
            for seq in self.padding:
                self.kv.release(seq)
            self.padding, self.padding_ctx = [], 0
            self._admit(whole_prompts=True, budget=1 << 60)
        chunks, _ = self._continue_prompts(self.budget)
        if chunks:
            return chunks, False
        return [], bool(self.batch.seqs)

    def _continue_prompts(self, budget: int) -> tuple[list[tuple[Seq, int]], int]:
        """Next chunks of the prompts already admitted, within `budget` tokens; and the budget left."""
        chunks = []
        for seq in self.prefilling:
            if budget <= 0:
                break
            n = min(seq.remaining_prefill, budget)
            chunks.append((seq, n))
            budget -= n
        return chunks, budget

    # ---- executing ---------------------------------------------------------------------------

    def _make_room(self, tokens_each: int) -> bool:
        """Preempt the newest sequences until the decoding ones have KV room for `tokens_each` more tokens;
        True if any was preempted."""
        if self.kv.available_blocks >= len(self.batch.seqs) * (tokens_each // self.config.block_tokens + 1):
            return False  # enough for any sequence
        preempted = False
        while self.batch.seqs and self.batch.new_blocks(tokens_each) > self.kv.available_blocks:
            self._preempt(self.prefilling[-1] if self.prefilling else self.batch.seqs[-1])
            preempted = True
        return preempted

    def _preempt(self, seq: Seq) -> None:
        """Recompute preemption: drop the sequence's KV; it re-queues first with its output so far as prompt."""
        if seq in self.prefilling:
            self.prefilling.remove(seq)
        else:
            if seq not in self.batch.fresh:
                seq.last_token_s = self.batch.last_step_end_s
            self.batch.remove(seq)
        self.kv.release(seq)
        seq.prompt_tokens = int(self.log.input_tokens[seq.rid]) + seq.generated
        seq.prefilled = seq.ctx = 0
        seq.preemptions += 1
        self.log.preemptions[seq.rid] += 1
        self.stats.preemptions += 1
        self.waiting.appendleft(seq)

    def _execute(self, chunks: list[tuple[Seq, int]], decode: bool) -> None:
        """One step: decode every running sequence (if `decode`) and compute the prompt chunks."""
        spec = self.config.spec
        per_seq = spec.draft_tokens + 1 if spec else 1
        if decode and self._make_room(per_seq) and chunks:
            chunks = [(s, n) for s, n in chunks if s in self.prefilling]  # a preempted prompt leaves the step
        batch = self.batch
        b_live = len(batch.seqs) if decode else 0
        b = b_live + len(self.padding) if decode else 0
        ctx = b_live * batch.g + batch.ctx_off_sum + self.padding_ctx if decode else 0
        new, seqs, kv_tokens, pairs = b * per_seq, b, ctx, ctx * per_seq
        for seq, n in chunks:
            new += n
            seqs += 1
            kv_tokens += seq.ctx
            pairs += n * (seq.ctx + n / 2)
        cost = self.cost.seconds
        t = cost(new, seqs, kv_tokens, pairs)
        if spec and b:
            t += spec.draft_tokens * (self.draft_cost.seconds(b, b, ctx, ctx) - self.draft_cost.step_overhead_s)
        if chunks:
            share = 1.0
            if b:  # a mixed step: charge prompts by what each part would cost alone
                t_pf = cost(new - b * per_seq, len(chunks), kv_tokens - ctx, pairs - ctx * per_seq)
                share = t_pf / (t_pf + cost(b * per_seq, b, ctx, ctx * per_seq))
            self.stats.prefill_s += t * share
        if b_live and batch.paged:
            self.kv.take(batch.new_blocks(1))
        self._advance(t, b_live, ctx)
        if b_live:
            self._record_first_gaps(self.now)
            batch.g += 1
            if spec:
                self._speculate()
            batch.last_step_end_s = self.now
            for seq in batch.pop_finished():
                self._finish(seq)
        for seq, n in chunks:
            seq.prefilled += n
            seq.ctx += n
            if seq.remaining_prefill == 0:
                self._prompt_done(seq)

    def _record_first_gaps(self, end_s: float) -> None:
        """Gaps of the batch's next token: since the last decode step, or since a newcomer's last token."""
        batch = self.batch
        synced = len(batch.seqs) - len(batch.fresh)
        if synced:
            self.itl.add(end_s - batch.last_step_end_s, synced)
        for seq in batch.fresh:
            self.itl.add(end_s - seq.last_token_s)
        batch.fresh = []

    def _speculate(self) -> None:
        """Draw each sequence's accepted draft tokens (until the first rejection, at most γ) for this step."""
        spec, batch = self.config.spec, self.batch
        seqs = list(batch.seqs)
        if spec.acceptance < 1:
            accepted = np.minimum(self.rng.geometric(1.0 - spec.acceptance, size=len(seqs)) - 1, spec.draft_tokens)
        else:
            accepted = np.full(len(seqs), spec.draft_tokens)
        for seq, extra in zip(seqs, accepted.tolist(), strict=True):
            extra = min(extra, seq.output_tokens - (batch.g + seq.gen_off))
            if extra > 0:
                self.itl.add(0.0, extra)  # the rest of the burst arrives with the first token
                blocks_before = -(-(batch.g + seq.ctx_off + 1 - seq.shared_tokens) // batch.block_tokens)
                batch.bump(seq, extra)
                if batch.paged:
                    blocks_after = blocks_for(batch.g + seq.ctx_off + 1 - seq.shared_tokens, batch.block_tokens)
                    self.kv.take(blocks_after - blocks_before)

    def _prompt_done(self, seq: Seq) -> None:
        """A prompt finished: publish its prefix blocks, emit its next token, and start decoding it."""
        self.prefilling.remove(seq)
        if seq.prefix_ids:
            self.kv.publish_prefix(seq)
        end = self.now
        if seq.generated == 0:
            self.log.first_token_s[seq.rid] = end
        else:
            self.itl.add(end - seq.last_token_s)  # a resumed sequence's gap spans its preemption
        seq.last_token_s = end
        seq.generated += 1
        if seq.generated >= seq.output_tokens:
            self._finish(seq)
            return
        self.batch.add(seq)

    def _finish(self, seq: Seq) -> None:
        self.log.finish_s[seq.rid] = self.now
        if self.config.scheduler == "static":
            self.padding.append(seq)  # keeps its row and KV until the batch ends
            self.padding_ctx += seq.ctx
        else:
            self.kv.release(seq)
        if self.on_finish:
            self.on_finish(seq.rid, self.now)

    def _advance(self, seconds: float, decode_seqs: int, decode_ctx: float) -> None:
        """Move the clock by a step (or span) and integrate the busy, KV and batch counters."""
        st, kv = self.stats, self.kv
        st.busy_s += seconds
        st.steps += 1
        st.live_token_seconds += seconds * self._live_tokens()
        st.allocated_token_seconds += seconds * (kv.total_blocks - kv.free_blocks) * kv.block_tokens
        st.decode_batch_seconds += seconds * decode_seqs
        st.decode_ctx_seconds += seconds * decode_ctx
        self.now += seconds

    def _live_tokens(self) -> int:
        batch = self.batch
        live = len(batch.seqs) * batch.g + batch.ctx_off_sum + self.padding_ctx
        if self.prefilling:
            live += sum(seq.ctx for seq in self.prefilling)
        return live

    # ---- the fast path -----------------------------------------------------------------------

    def _can_span(self) -> bool:
        """True when the next steps are pure decode and nothing waiting could join the batch."""
        if not self.batch.seqs or self.prefilling:
            return False
        if self.config.scheduler == "static" or not self.waiting:
            return True
        if len(self.batch.seqs) >= self.max_seqs:
            return True
        head = self.waiting[0]
        if isinstance(self.kv, ContiguousKV):
            need = self.kv.reserved_blocks
        else:
            need = blocks_for(head.prompt_tokens + 1, self.config.block_tokens)
        return need > self.kv.available_blocks  # blocked on KV until a completion frees some

    def _decode_span(self, t_limit: float) -> None:
        """Take decode steps in spans of identical steps, each up to the next completion, the step that
        crosses t_limit (the next arrival) or the last step the free KV blocks surely cover; go on past
        completions while nothing waiting could join the batch."""
        batch, cost = self.batch, self.cost.seconds
        while True:
            b_live = len(batch.seqs)
            b = b_live + len(self.padding)
            ctx0 = b_live * batch.g + batch.ctx_off_sum + self.padding_ctx
            line = self.decode_lines.get(b, False)
            if line is False:
                line = self.decode_lines[b] = self.cost.decode_line(b)
            if line:  # the step time grows linearly with the context: t0 + slope·j
                t0 = line[0] + line[1] * ctx0
                slope = line[1] * b_live
            else:
                t0 = cost(b, b, ctx0, ctx0)
                slope = cost(b, b, ctx0 + b_live, ctx0 + b_live) - t0
            m = batch.steps_to_next_finish()
            if m > 1 and self.now + m * t0 > t_limit:  # the span would pass the next arrival: stop there
                m = min(m, _steps_to_cover(t_limit - self.now, t0, slope))
            new_blocks = batch.new_blocks(m) if batch.paged else 0
            if new_blocks and new_blocks > self.kv.available_blocks:
                m = self.config.block_tokens * (self.kv.available_blocks // b_live)
                new_blocks = batch.new_blocks(m)
            if m <= 1:
                self._execute([], True)
            else:
                ctx_mid = ctx0 + (m - 1) * b_live / 2
                if line:
                    t_mid, t_last = t0 + slope * (m - 1) / 2, t0 + slope * (m - 1)
                else:
                    ctx_last = ctx0 + (m - 1) * b_live
                    t_mid, t_last = cost(b, b, ctx_mid, ctx_mid), cost(b, b, ctx_last, ctx_last)
                total = m * (t0 + 4 * t_mid + t_last) / 6  # Simpson's rule over the m step times (exact if linear)
                if new_blocks:
                    self.kv.take(new_blocks)
                start = self.now
                self._advance(total, b_live, ctx_mid)
                self.stats.steps += m - 1
                self._record_first_gaps(start + t0)
                weight = (m - 1) * b_live / 2  # the other m−1 gaps of each sequence, at two points
                self.itl.add((t0 + t_mid) / 2, weight)
                self.itl.add((t_mid + t_last) / 2, weight)
                batch.g += m
                batch.last_step_end_s = self.now
                if batch.finish_heap[0][0] <= batch.g:
                    for seq in batch.pop_finished():
                        self._finish(seq)
            if self.now >= t_limit:
                return
            if (self.waiting or self.prefilling or not batch.seqs) and not self._can_span():
                return
            if self.now >= self.next_sample_s:
                self._sample(self.now)

    def _sample(self, t: float) -> None:
        """Record the timeline at every sample time the clock has passed."""
        if t < self.next_sample_s:
            return
        live = self._live_tokens()
        running = len(self.batch.seqs) + len(self.prefilling)
        allocated = self.kv.used_blocks * self.kv.block_tokens
        interval = self.config.sample_interval_s
        while self.next_sample_s <= t:
            self.timeline.record(self.next_sample_s, running, len(self.waiting), live, allocated)
            self.next_sample_s += interval


def _steps_to_cover(seconds: float, t0: float, slope: float) -> int:
    """Fewest steps whose summed time reaches `seconds` when step j takes t0 + slope·j."""
    if seconds <= 0:
        return 1
    if abs(slope) < 1e-15:
        return max(1, math.ceil(seconds / t0))
    # slope/2·m² + (t0 − slope/2)·m − seconds = 0
    a, b = slope / 2, t0 - slope / 2
    disc = b * b + 4 * a * seconds
    if disc < 0:
        return 1 << 60
    m = (-b + math.sqrt(disc)) / (2 * a)
    return max(1, math.ceil(m - 1e-9))
