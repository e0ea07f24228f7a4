"""The executor: running a step the scheduler formed (nano-vllm's model runner, here a clock).

A step's time is costmodel's step formula (`Deployment.step_cost()`, `costmodel.perf.StepCost`)
over its tokens, sequences, KV read and attention pairs; with a draft model it adds γ draft
decode steps; with pp > 1 the step is a round of micro-batches lasting `perf.pipeline_round_s`
(the slowest micro-batch, or a stage's load — every micro-batch's host work and its share of their
GPU work — when that is longer: the idle stage time is the bubble). Executing applies the step:
tokens emitted, gaps recorded, prompts promoted to decoding, finished requests released, and the
busy/KV/batch counters integrated. `Executor` is a mixin of `sim.replica.Replica`.
"""

from __future__ import annotations

import numpy as np

from tokenomy.costmodel.perf import DecodeCurve, pipeline_round_s
from tokenomy.sim.block_manager import blocks_for
from tokenomy.sim.sequence import Seq


class Executor:
    """Step times from the cost model, and the bookkeeping of an executed step."""

    def _execute(self, chunks: list[tuple[Seq, int]], decode: bool) -> None:
        """One step: decode every running sequence (if `decode`) and compute the prompt chunks."""
        spec = self.config.spec
        per_seq = self.per_seq
        if decode and self._make_room(per_seq) and chunks:
            chunks = [(s, n) for s, n in chunks if s in self.prefilling]  # a preempted prompt leaves the step
        batch = self.batch
        b_live = len(batch.seqs) if decode else 0
        b = b_live + len(self.padding) if decode else 0
        ctx = b_live * batch.g + batch.ctx_off_sum + self.padding_ctx if decode else 0
        if self.pp > 1:
            t = self._round_seconds(chunks, b, ctx)
        else:
            new, seqs, kv_tokens, pairs = self._step_terms(b, ctx, chunks)
            cost = self.cost.seconds
            excess = self._rank_excess_s(chunks)
            t = cost(new, seqs, kv_tokens, pairs, excess)
            if spec and b:
                t += self._draft_seconds(b, ctx)
            if chunks:
                share = 1.0
                if b:  # a mixed step: charge prompts by what each part would cost alone
                    t_pf = cost(new - b * per_seq, len(chunks), kv_tokens - ctx, pairs - ctx * per_seq, excess)
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

    def _step_terms(self, b: int, ctx: float, chunks: list[tuple[Seq, int]]) -> tuple[float, int, float, float]:
        """The step formula's terms (new tokens, sequences, KV tokens read, attention pairs) of `b` decoding rows
        holding `ctx` tokens and the prompt chunks (a chunk of n tokens after c attends to c + n/2 on average)."""
        per_seq = self.per_seq
        new, seqs, kv_tokens, pairs = b * per_seq, b, ctx, ctx * per_seq
        for seq, n in chunks:
            new += n
            seqs += 1
            kv_tokens += seq.ctx
            pairs += n * (seq.ctx + n / 2)
        return new, seqs, kv_tokens, pairs

    def _rank_excess_s(self, chunks: list[tuple[Seq, int]]) -> float:
        """Attention DP: what the busiest rank's prompt chunks add to the step (StepCost.rank_excess_s), the chunks
        placed whole on the ranks as evenly as they allow (largest first onto the least loaded rank); 0 without."""
        cost = self.cost
        if not chunks or not cost.rank_s_per_token:
            return 0.0
        work = sorted(((cost.rank_compute_s(n, n * (seq.ctx + n / 2)), n, seq.ctx) for seq, n in chunks), reverse=True)
        loads = [(0.0, 0.0, 0.0)] * cost.ranks  # (compute s, tokens, attention pairs) per rank
        for s, n, c in work:
            j = min(range(len(loads)), key=lambda i: loads[i][0])
            loads[j] = (loads[j][0] + s, loads[j][1] + n, loads[j][2] + n * (c + n / 2))
        _, tokens, pairs = max(loads)
        held = len(self.batch.seqs) + len(self.prefilling)  # requests in the engine: a balancing one waits for R
        total_tokens, total_pairs = sum(x[1] for x in loads), sum(x[2] for x in loads)
        return float(cost.rank_excess_s(tokens, pairs, total_tokens, total_pairs, held))

    def _draft_seconds(self, b: int, ctx: float) -> float:
        """The draft model's γ decode steps for `b` rows holding `ctx` tokens, less its per-step overhead."""
        return self.config.spec.draft_tokens * (
            self.draft_cost.seconds(b, b, ctx, ctx) - self.draft_cost.step_overhead_s
        )

    def _micro_batch_seconds(self, b: int, ctx: float, chunks: list[tuple[Seq, int]]) -> float:
        """One micro-batch's pass through the whole model: `b` decoding rows holding `ctx` tokens, and prompt chunks."""
        new, seqs, kv_tokens, pairs = self._step_terms(b, ctx, chunks)
        if not seqs:
            return 0.0
        t = self.cost.seconds(new, seqs, kv_tokens, pairs, self._rank_excess_s(chunks))
        if self.config.spec and b:
            t += self._draft_seconds(b, ctx)
        return t

    def _round_seconds(self, chunks: list[tuple[Seq, int]], b: int, ctx: float) -> float:
        """pp > 1: a round of pp micro-batches (decoding rows split evenly, chunks where the scheduler put them)."""
        pp = self.pp
        parts: list[list[tuple[Seq, int]]] = [[] for _ in range(pp)]
        for seq, n in chunks:
            parts[self.chunk_mb.get(seq.rid, 0)].append((seq, n))
        times, hosts, decode_times, decode_hosts = [], [], [], []
        for j in range(pp):
            b_j = b // pp + (j < b % pp)
            ctx_j = ctx * b_j / b if b else 0.0
            times.append(self._micro_batch_seconds(b_j, ctx_j, parts[j]))
            hosts.append(self.cost.host_seconds(b_j + len(parts[j])))
            if chunks:
                decode_times.append(self._micro_batch_seconds(b_j, ctx_j, []))
                decode_hosts.append(self.cost.host_seconds(b_j))
        t = pipeline_round_s(times, pp, hosts)
        if chunks:  # prompts are charged the round time they add over decoding alone
            t_dec = pipeline_round_s(decode_times, pp, decode_hosts) if b else 0.0
            self.stats.prefill_s += t - t_dec
        return t

    def _decode_seconds(self, b: int, ctx: float) -> float:
        """A decode-only step (pp > 1: round) of `b` rows holding `ctx` tokens; with pp > 1 exactly what
        `_round_seconds` gives a round without prompt chunks (micro-batches of ⌈b/pp⌉ and ⌊b/pp⌋ rows)."""
        if self.pp == 1:
            return self.cost.seconds(b, b, ctx, ctx)
        q, r = divmod(b, self.pp)
        times, hosts = [], []
        for rows, count in ((q + 1, r), (q, self.pp - r)):
            if rows and count:
                ctx_mb = ctx * rows / b
                times += [self.cost.seconds(rows, rows, ctx_mb, ctx_mb)] * count
                hosts += [self.cost.host_seconds(rows)] * count
        return pipeline_round_s(times, self.pp, hosts)

    def _decode_curve(self, b: int) -> DecodeCurve | None:
        """Decode step (round) time of `b` rows as a function of their summed context, or None where there is
        none. With pp > 1 only when the rows split evenly: pp alike micro-batches of q rows last one
        micro-batch's time plus (pp − 1) of its host parts (`pipeline_round_s`); otherwise the round is the
        larger of two curves of the context, not one."""
        if self.pp == 1:
            return self.cost.decode_curve(b)
        q, r = divmod(b, self.pp)
        curve = self.cost.decode_curve(q) if q and not r else None
        return curve.pipelined(self.pp, self.cost.host_seconds(q)) if curve else None

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
        st, kv, batch = self.stats, self.kv, self.batch
        st.busy_s += seconds
        st.steps += 1
        live = len(batch.seqs) * batch.g + batch.ctx_off_sum + self.padding_ctx  # _live_tokens(), inlined
        if self.prefilling:
            live += sum(seq.ctx for seq in self.prefilling)
        st.live_token_seconds += seconds * live
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
