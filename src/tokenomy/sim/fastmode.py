"""Fast mode: spans of identical decode steps taken in one go, beside the step-by-step executor.

When a step is pure decode and nothing can join the batch, the next steps are all alike until
the next completion, arrival or KV-block shortage; `_decode_span` takes them in one go and sums
their times with Simpson's rule (exact for the linear growth of the KV read); `DecodeBatch`
keeps per-sequence counters relative to a shared step counter so that costs O(1). Exact mode
(`exact=True`) takes every step one by one and is the reference the fast mode is tested against.
`FastMode` is a mixin of `sim.replica.Replica`.
"""

from __future__ import annotations

import math

from tokenomy.sim.block_manager import ContiguousKV, blocks_for


class FastMode:
    """Decode spans: many identical steps per event instead of one."""

    # An arrival the caller knows of before it is submitted (a session's next turn, set from on_finish): spans stop
    # there as they stop at t_limit.
    wake_s: float = math.inf

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
        elif self.kv.over_committed(head):
            return True  # full-length admission: blocked until a completion frees its commitment
        elif self.per_chunk:  # its first chunk: what the budget leaves beside the decodes
            room = max(self.budget - len(self.batch.seqs) // self.pp * self.per_seq, 1)
            first = min(head.prompt_tokens, room, self.chunk_cap)
            need = blocks_for(first + (first == head.prompt_tokens), self.config.block_tokens)
        else:
            need = blocks_for(head.prompt_tokens + 1, self.config.block_tokens)
        return need > self.kv.available_blocks  # blocked on KV until a completion frees some

    def _decode_span(self, t_limit: float) -> None:
        """Take decode steps in spans of identical steps, each up to the next completion, the step that
        crosses t_limit (the next arrival) or the last step the free KV blocks surely cover; go on past
        completions while nothing waiting could join the batch."""
        batch, cost = self.batch, self._decode_seconds
        while True:
            t_limit = min(t_limit, self.wake_s)
            b_live = len(batch.seqs)
            b = b_live + len(self.padding)
            ctx0 = b_live * batch.g + batch.ctx_off_sum + self.padding_ctx
            curve = self.decode_curves.get(b, False)
            if curve is False:
                curve = self.decode_curves[b] = self._decode_curve(b)
            step_s = curve.seconds if curve else lambda ctx, b=b: cost(b, ctx)
            linear = bool(curve) and curve.linear
            if linear:  # the step time grows linearly with the context: t0 + slope·j
                t0 = curve.intercept_s + curve.slope_s_per_token * ctx0
                slope = curve.slope_s_per_token * b_live
            else:
                t0, slope = step_s(ctx0), None
            m = batch.steps_to_next_finish()
            if m > 1 and self.now + m * t0 > t_limit:  # the span would pass the next arrival: stop there
                if slope is None:
                    slope = step_s(ctx0 + b_live) - t0
                m = min(m, _steps_to_cover(t_limit - self.now, t0, slope))
            new_blocks = batch.new_blocks(m) if batch.paged else 0
            if new_blocks and new_blocks > self.kv.available_blocks:
                m = self.config.block_tokens * (self.kv.available_blocks // b_live)
                new_blocks = batch.new_blocks(m)
            if m <= 1:
                self._execute([], True)
            else:
                ctx_mid = ctx0 + (m - 1) * b_live / 2
                if linear:
                    t_mid, t_last = t0 + slope * (m - 1) / 2, t0 + slope * (m - 1)
                else:
                    t_mid, t_last = step_s(ctx_mid), step_s(ctx0 + (m - 1) * b_live)
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
