"""The decoding sequences of a replica, advanced together without touching each one.

Every decode step gives each sequence one token. So instead of counters that change every step,
a sequence stores its counters relative to the batch's step counter `g`
(generated = g + gen_off, ctx = g + ctx_off): taking m steps is `g += m`. What still has to be
known per step is kept as aggregates: the summed context (for the step time), a heap of the
steps at which sequences finish, and how many sequences sit at each offset within a KV block
(for the blocks m steps will need). This is what makes the simulator's fast mode O(1) per event.
"""

from __future__ import annotations

import heapq
import itertools

from tokenomy.sim.sequence import Seq


class DecodeBatch:
    """Sequences producing one token per step, in admission order."""

    def __init__(self, block_tokens: int, paged: bool):
        self.block_tokens = block_tokens
        self.paged = paged
        self.seqs: list[Seq] = []
        self.g = 0
        self.ctx_off_sum = 0
        self.finish_heap: list[tuple[int, int, Seq]] = []  # (finish g, tie-breaker, seq); stale entries skipped
        self._order = itertools.count()
        self.phase_counts = [0] * block_tokens  # sequences by (owned tokens − g) mod block size
        self.fresh: list[Seq] = []  # joined since the last decode step (their first gap differs)
        self.last_step_end_s = 0.0

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def ctx_sum(self) -> int:
        return len(self.seqs) * self.g + self.ctx_off_sum

    def _phase(self, seq: Seq) -> int:
        # Owned tokens (context + room for the next token, minus shared prefix) minus g: fixed while decoding.
        return (seq.ctx_off + 1 - seq.shared_tokens) % self.block_tokens

    def add(self, seq: Seq) -> None:
        """Start decoding `seq` (its generated/ctx/blocks are current)."""
        seq.gen_off = seq.generated - self.g
        seq.ctx_off = seq.ctx - self.g
        seq.finish_g = seq.output_tokens - seq.gen_off
        self.seqs.append(seq)
        self.ctx_off_sum += seq.ctx_off
        self.phase_counts[self._phase(seq)] += 1
        heapq.heappush(self.finish_heap, (seq.finish_g, next(self._order), seq))
        self.fresh.append(seq)

    def remove(self, seq: Seq) -> None:
        """Stop decoding `seq`, writing its current counters and owned blocks back onto it."""
        self.seqs.remove(seq)
        self.ctx_off_sum -= seq.ctx_off
        self.phase_counts[self._phase(seq)] -= 1
        seq.generated = self.g + seq.gen_off
        seq.ctx = self.g + seq.ctx_off
        if self.paged:
            seq.blocks = -(-(seq.ctx + 1 - seq.shared_tokens) // self.block_tokens)
        seq.finish_g = -1  # invalidates its heap entries
        if seq in self.fresh:
            self.fresh.remove(seq)

    def bump(self, seq: Seq, extra_tokens: int) -> None:
        """`seq` got `extra_tokens` more than the one per step (speculative decoding)."""
        self.remove(seq)
        seq.generated += extra_tokens
        seq.ctx += extra_tokens
        self.add(seq)
        self.fresh.remove(seq)

    def steps_to_next_finish(self) -> int:
        heap = self.finish_heap
        while heap and heap[0][2].finish_g != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] - self.g if heap else 1 << 60

    def new_blocks(self, m: int) -> int:
        """Blocks the batch needs to take m more steps (0 unless paged)."""
        if not self.paged:
            return 0
        bs, g = self.block_tokens, self.g
        if m == 1:  # only sequences whose owned tokens exactly fill their blocks need one
            return self.phase_counts[-g % bs]
        total = len(self.seqs) * (m // bs)  # every full block's worth of steps costs each sequence one block
        m %= bs
        if m:
            # A sequence with x owned tokens in its last block (x = (g + phase) mod bs) needs one more
            # block within m < bs steps when x = 0 or x > bs − m: phases (−g − m + 1 … −g) mod bs.
            first = (-g - m + 1) % bs
            counts = self.phase_counts
            total += sum(counts[first : first + m]) + sum(counts[: max(0, first + m - bs)])
        return total

    def advance(self, m: int) -> None:
        self.g += m

    def pop_finished(self) -> list[Seq]:
        """Remove and return the sequences whose last token has been produced."""
        done = []
        heap = self.finish_heap
        while heap and heap[0][0] <= self.g:
            finish_g, _, seq = heapq.heappop(heap)
            if seq.finish_g == finish_g:
                self.remove(seq)
                done.append(seq)
        return done
