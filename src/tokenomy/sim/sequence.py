"""A request inside a replica (nano-vllm's Sequence): how far its prompt and output have got, what KV it holds."""

from __future__ import annotations


class Seq:
    """One request inside a replica: how far its prompt and output have got, and what KV it holds."""

    __slots__ = (
        "rid",
        "prompt_tokens",
        "output_tokens",
        "prefilled",
        "generated",
        "ctx",
        "blocks",
        "committed_blocks",
        "prefix_ids",
        "prefix_tokens",
        "shared_ids",
        "shared_tokens",
        "last_token_s",
        "gen_off",
        "ctx_off",
        "finish_g",
        "preemptions",
    )

    def __init__(self, rid: int, prompt_tokens: int, output_tokens: int, prefix_ids: tuple[int, ...] = ()):
        self.rid = rid
        self.prompt_tokens = prompt_tokens  # tokens to prefill (prompt, plus output so far after a preemption)
        self.output_tokens = output_tokens
        self.prefilled = 0
        self.generated = 0
        self.ctx = 0  # tokens whose KV is in the cache
        self.blocks = 0  # blocks this sequence owns (shared prefix blocks are owned by the cache)
        self.committed_blocks = 0  # full-length admission: blocks set aside for its whole length (block_manager)
        self.prefix_ids = prefix_ids
        self.prefix_tokens: tuple[int, ...] = ()  # tokens per prefix id
        self.shared_ids: list[int] = []  # prefix ids whose blocks this sequence reads from the cache
        self.shared_tokens = 0  # tokens held in those shared blocks
        self.last_token_s = 0.0
        # While decoding, counters relative to the batch's step counter g (see sim.batch.DecodeBatch):
        self.gen_off = 0  # generated = g + gen_off
        self.ctx_off = 0  # ctx = g + ctx_off
        self.finish_g = 0  # the g at which the last output token is produced
        self.preemptions = 0

    @property
    def remaining_prefill(self) -> int:
        return self.prompt_tokens - self.prefilled

    @property
    def remaining_output(self) -> int:
        return self.output_tokens - self.generated
