"""One serving replica, step by step, in the engine's parts (nano-vllm's layout):

- `sequence`: a request inside the replica (`Seq`) and the decoding set (`DecodeBatch`);
- `block_manager`: KV blocks, paged with prefix caching or contiguous reservations;
- `scheduler`: `schedule()` returns what the next step runs (prompt chunks, decodes, verify tokens);
- `executor`: the step's time from costmodel's step formula, and its bookkeeping;
- `fastmode`: spans of identical decode steps taken at once, beside the executor.
`Replica` holds the queues, the KV cache and the clock, and puts the parts together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import DecodeCurve
from tokenomy.costmodel.profile import KV_ADMISSIONS
from tokenomy.sim.batch import DecodeBatch
from tokenomy.sim.block_manager import ContiguousKV, PagedKV, blocks_for
from tokenomy.sim.executor import Executor
from tokenomy.sim.fastmode import FastMode
from tokenomy.sim.metrics import GapHistogram, ReplicaStats, RequestLog, Timeline
from tokenomy.sim.scheduler import Scheduler
from tokenomy.sim.sequence import Seq

SCHEDULERS = ("static", "continuous", "chunked")
KV_MODES = ("paged", "contiguous")


@dataclass(frozen=True)
class SpecDecoding:
    """Draft-model speculative decoding: γ draft tokens per step, each accepted with probability α."""

    draft: Deployment
    draft_tokens: int = 4
    acceptance: float = 0.7

    def __post_init__(self) -> None:
        if not 1 <= self.draft_tokens <= 64:
            raise ValueError(f"draft tokens per step (γ) must lie in 1..64, got {self.draft_tokens}")
        if not 0.0 <= self.acceptance < 1.0:  # α = 1 would accept every draft token: no model does
            raise ValueError(f"acceptance (α) is a probability in [0, 1), got {self.acceptance:g}")


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
    kv_admission: str | None = None  # paged KV: on_demand or full_length (EngineProfile.kv_admission); None: engine's

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler '{self.scheduler}'; choose from {', '.join(SCHEDULERS)}")
        if self.kv not in KV_MODES:
            raise ValueError(f"unknown KV allocation '{self.kv}'; choose from {', '.join(KV_MODES)}")
        if self.kv_admission is not None and self.kv_admission not in KV_ADMISSIONS:
            choices = ", ".join(KV_ADMISSIONS)
            raise ValueError(f"unknown KV admission (--kv-admission) '{self.kv_admission}'; choose from {choices}")
        if self.kv_admission is not None and self.kv == "contiguous":
            raise ValueError("--kv-admission applies to paged KV; contiguous KV admits by its fixed reservation")
        if self.block_tokens < 1:
            raise ValueError(f"block size must be a positive number of tokens, got {self.block_tokens}")
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")


class Replica(Scheduler, Executor, FastMode):
    """A replica's queues, KV cache and clock; `run_until(t)` executes steps until its clock reaches t."""

    def __init__(
        self,
        d: Deployment,
        config: ReplicaConfig,
        log: RequestLog,
        index: int = 0,
        seed: int = 0,
        share: np.ndarray | None = None,
    ):
        self.d = d
        self.config = config
        self.log = log
        self.index = index
        self.share = share  # the log's requests this replica may serve (a fleet tier's routes); None: all of them
        self.cost = d.step_cost()
        self.draft_cost = config.spec.draft.step_cost() if config.spec else None
        self.fast = not config.exact and config.spec is None  # spans of identical decode steps allowed
        self.decode_curves: dict[int, DecodeCurve | None] = {}  # batch size -> its decode step curve
        self.rng = np.random.default_rng(seed)
        prof = d.profile
        self.max_seqs = config.max_num_seqs or d.max_seqs
        self.budget = config.max_num_batched_tokens or d.token_budget
        self.chunk_cap = max(self.budget // d.attention_dp_ranks, 1)  # one prompt's chunk: its own rank's share
        self.pp = d.pp
        self.per_seq = config.spec.draft_tokens + 1 if config.spec else 1  # tokens a decoding sequence computes
        self.chunk_mb: dict[int, int] = {}  # pp > 1: rid -> micro-batch of its chunk this round
        # vLLM v1: chunked prefill on paged KV allocates blocks per scheduled chunk, not per prompt
        self.per_chunk = config.scheduler == "chunked" and config.kv == "paged"
        if self.pp > 1:
            self._schedule = self._schedule_pipeline
        else:
            self._schedule = {
                "static": self._schedule_static,
                "continuous": self._schedule_continuous,
                "chunked": self._schedule_chunked,
            }[config.scheduler]
        total_blocks = int(self._kv_pool_tokens() // config.block_tokens) if d.memory.fits else 0
        if config.kv == "paged":
            full_length = (config.kv_admission or prof.kv_admission) == "full_length"
            self.kv: PagedKV | ContiguousKV = PagedKV(total_blocks, config.block_tokens, full_length=full_length)
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

    def _kv_pool_tokens(self) -> int:
        """Tokens the KV pool holds: the memory plan's, and on paged KV with windowed layers that keep at most their
        window (Deployment.windows_drop_kv: Llama 4's chunked ones only on an engine that frees them) as many as the
        workload's requests fit at their mix of lengths: the pool's bytes over their token-weighted mean KV bytes per
        token (`Deployment.kv_bytes_per_token`; for one length what `Deployment.kv_capacity_tokens_at` gives, as the
        closed forms size a batch), in a fleet the requests its tier can be routed (`share`). Blocks stay counted per
        token, so a phase of requests far from the mix is approximate; contiguous reservations keep the memory plan's
        count, as `replica_slots` does."""
        d, full = self.d, self.d.memory.kv_capacity_tokens
        if self.config.kv != "paged" or not d.windows_drop_kv:
            return full  # every replica of a fleet asks: no pass over the log where windows play no part
        lengths = self.log.input_tokens + self.log.output_tokens
        if self.share is not None:
            lengths = lengths[self.share]
        if int(lengths.sum()) <= 0:
            return full
        values, counts = np.unique(lengths, return_counts=True)
        tokens = values * counts
        per_token = np.array([d.kv_bytes_per_token(float(v)) for v in values])
        return int(full * d.kv_bytes_per_token() * tokens.sum() / float((per_token * tokens).sum()))

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
        batch = self.batch
        while self.now < t_s:
            # empty queues: no step to form (the scheduler would return none), so skip forming it
            if not (self.waiting or self.prefilling or batch.seqs or self.padding) or not self.step(t_s):
                if math.isinf(t_s):
                    return
                if t_s >= self.next_sample_s:
                    self._sample(t_s)
                self.now = t_s
                return

    def step(self, t_limit: float = math.inf) -> bool:
        """Form and execute the next step (or a span of identical decode steps); False when idle."""
        chunks, decode = self._schedule()
        if not chunks and not decode:
            return False
        if not chunks and self.fast and self._can_span():
            self._decode_span(t_limit)
        else:
            self._execute(chunks, decode)
        if self.now >= self.next_sample_s:
            self._sample(self.now)
        return True

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


__all__ = ["KV_MODES", "SCHEDULERS", "Replica", "ReplicaConfig", "SpecDecoding"]
