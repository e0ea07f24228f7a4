"""The scheduler: what the next forward step of a replica runs (vLLM's Scheduler, nano-vllm's scheduler.py).

`schedule()` returns the next step as (prompt chunks, decode): the (sequence, tokens) chunks of
prompts to compute and whether every running sequence decodes (each with γ draft tokens to
verify when speculative decoding is on: γ+1 tokens of the budget). The rules:
- static: admit a batch when the previous one is done; it runs until its longest request ends
  (finished rows stay in the batch as padding), as FasterTransformer-era servers did;
- continuous (vLLM v0, Orca): iteration-level batching; when requests wait and fit, a
  prefill-only step runs their whole prompts first, otherwise every running sequence decodes;
- chunked (Sarathi-Serve, vLLM v1): every running sequence decodes, and prompt chunks fill
  the rest of the `max_num_batched_tokens` budget; on paged KV each chunk gets its blocks when it
  is scheduled, as vLLM v1 allocates them;
- pp > 1 (vLLM's virtual engines): pp micro-batches, each with its own budget; a chunk joins
  the micro-batch with the most room, one chunk per sequence per round;
- attention-DP ranks (Deployment.attention_dp_ranks) share the budget, and one prompt's chunk is at most its own
  rank's part (`chunk_cap`).
When KV blocks run short the newest sequences are preempted (recompute).
`Scheduler` is a mixin of `sim.replica.Replica`, whose attributes it reads and writes.
"""

from __future__ import annotations

from collections import deque

from tokenomy.sim.sequence import Seq


class Scheduler:
    """Forming steps from the `waiting`, `prefilling` and decoding (`batch`) queues of a replica."""

    def schedule(self) -> tuple[list[tuple[Seq, int]], bool]:
        """The next step: prompt chunks to compute, and whether the running sequences decode."""
        return self._schedule()

    def _schedule_continuous(self) -> tuple[list[tuple[Seq, int]], bool]:
        chunks = self._admit(whole_prompts=True)
        if chunks:
            return chunks, False
        return [], bool(self.batch.seqs)

    def _schedule_chunked(self) -> tuple[list[tuple[Seq, int]], bool]:
        """Decodes first, then prompt chunks fill the token budget."""
        batch = self.batch.seqs
        budget = self.budget - len(batch) * self.per_seq
        if self.prefilling:
            chunks, budget = self._continue_prompts(budget)
        else:
            chunks = []
        if self.waiting and budget > 0:
            chunks += self._admit(whole_prompts=False, budget=budget)
        if chunks or batch or not self.prefilling:
            return chunks, bool(batch)
        self._preempt(self.prefilling[-1])  # partial prompts fill the KV cache: the newest gives way
        return self._schedule_chunked()

    def _admit(self, whole_prompts: bool, budget: int | None = None) -> list[tuple[Seq, int]]:
        """Move waiting requests into the batch while sequences, tokens and KV blocks allow."""
        budget = self.budget if budget is None else budget
        chunks: list[tuple[Seq, int]] = []
        while self.waiting and budget > 0 and len(self.prefilling) + len(self.batch.seqs) < self.max_seqs:
            seq = self.waiting[0]
            if whole_prompts and seq.prompt_tokens > budget and chunks:
                break
            if not self.kv.admit(seq, None if whole_prompts or not self.per_chunk else min(budget, self.chunk_cap)):
                break
            self.waiting.popleft()
            self.prefilling.append(seq)
            if seq.prefilled:  # prompt tokens found in the prefix cache
                self.log.cached_tokens[seq.rid] += seq.prefilled
            n = seq.remaining_prefill if whole_prompts else min(seq.remaining_prefill, budget, self.chunk_cap)
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

    def _schedule_pipeline(self) -> tuple[list[tuple[Seq, int]], bool]:
        """pp > 1: the next round's prompt chunks, packed into pp micro-batches, and whether sequences decode."""
        scheduler, pp = self.config.scheduler, self.pp
        if scheduler == "static" and not self.prefilling and not self.batch.seqs:
            for seq in self.padding:
                self.kv.release(seq)
            self.padding, self.padding_ctx = [], 0
            self._admit(whole_prompts=True, budget=1 << 60)
        decode = bool(self.batch.seqs)
        if scheduler == "chunked":
            b = len(self.batch.seqs) + len(self.padding)
            rooms = [self.budget - (b // pp + (j < b % pp)) * self.per_seq for j in range(pp)]
        else:  # static and continuous compute prompts in prefill-only rounds
            rooms = [self.budget] * pp
        while True:
            self.chunk_mb = {}
            room = list(rooms)
            chunks = self._pack(list(self.prefilling), room, whole=False, admit=False)
            if scheduler != "static" and self.waiting and len(chunks) == len(self.prefilling):
                chunks += self._pack(self.waiting, room, whole=scheduler == "continuous", admit=True)
            if chunks or decode or not self.prefilling:
                break
            self._preempt(self.prefilling[-1])  # partial prompts fill the KV cache: the newest gives way
        if chunks and scheduler != "chunked":
            return chunks, False
        return chunks, decode

    def _pack(self, seqs: list[Seq] | deque[Seq], rooms: list[int], whole: bool, admit: bool) -> list[tuple[Seq, int]]:
        """One chunk per sequence into the micro-batch with the most room left (whole prompts: only where they
        fit, or alone); admitting waiting sequences takes their KV blocks and moves them to `prefilling`."""
        chunks: list[tuple[Seq, int]] = []
        empty = [room == self.budget for room in rooms]
        for seq in list(seqs):
            j = max(range(len(rooms)), key=rooms.__getitem__)
            if rooms[j] <= 0:
                break
            if admit:
                if whole and seq.prompt_tokens > rooms[j] and not empty[j]:
                    break
                if len(self.prefilling) + len(self.batch.seqs) >= self.max_seqs:
                    break
                if not self.kv.admit(seq, min(rooms[j], self.chunk_cap) if self.per_chunk else None):
                    break
                self.waiting.popleft()
                self.prefilling.append(seq)
                if seq.prefilled:
                    self.log.cached_tokens[seq.rid] += seq.prefilled
            n = seq.remaining_prefill if whole else min(seq.remaining_prefill, rooms[j], self.chunk_cap)
            if not admit and self.per_chunk and not self.kv.extend(seq, n):
                break
            chunks.append((seq, n))
            rooms[j] -= n
            empty[j] = False
            self.chunk_mb[seq.rid] = j
        return chunks

    def _continue_prompts(self, budget: int) -> tuple[list[tuple[Seq, int]], int]:
        """Next chunks of the prompts already admitted, within `budget` tokens; and the budget left."""
        chunks = []
        bs = self.config.block_tokens
        for seq in self.prefilling:
            if budget <= 0:
                break
            n = min(seq.remaining_prefill, budget, self.chunk_cap)
            if self.per_chunk and seq.ctx + n + 1 - seq.shared_tokens > seq.blocks * bs and not self.kv.extend(seq, n):
                return chunks, 0  # KV is short: no newer prompt may start either
            chunks.append((seq, n))
            budget -= n
        return chunks, budget

    def _make_room(self, tokens_each: int) -> bool:
        """Preempt the newest sequences until the decoding ones have KV room for `tokens_each` more tokens;
        True if any was preempted. Under full-length admission never: every sequence's whole length is set aside."""
        if self.kv.full_length:
            return False
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
