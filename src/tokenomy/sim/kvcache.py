"""KV-cache allocators: paged blocks with prefix caching (vLLM's PagedAttention) or contiguous reservation.

Both count memory in blocks of `block_tokens` tokens. Paged allocation hands a sequence a new
block each time its context crosses a block boundary; contiguous allocation reserves the
maximum length for every request up front, as engines did before paging (Orca, FasterTransformer).
"""

from __future__ import annotations

from collections import OrderedDict


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


def blocks_for(tokens: int, block_tokens: int) -> int:
    """Blocks needed to hold `tokens` tokens."""
    return -(-tokens // block_tokens)


class PagedKV:
    """Fixed-size KV blocks handed out as sequences grow; shared prompt prefixes are cached by id (LRU)."""

    grows = True

    def __init__(self, total_blocks: int, block_tokens: int = 16, prefix_block_tokens: int = 512):
        self.total_blocks = total_blocks
        self.block_tokens = block_tokens
        self.prefix_block_tokens = prefix_block_tokens
        self.free_blocks = total_blocks
        self.prefix_refs: dict[int, int] = {}  # prefix id -> sequences reading it
        self.prefix_blocks: dict[int, int] = {}  # prefix id -> blocks it occupies
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached prefixes no one reads, oldest first
        self.evictable_blocks = 0

    @property
    def available_blocks(self) -> int:
        return self.free_blocks + self.evictable_blocks

    @property
    def caches_prefixes(self) -> bool:
        """Prefix ids map onto whole KV blocks only when the block size divides the prefix block."""
        return self.prefix_block_tokens % self.block_tokens == 0

    @property
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_blocks

    def take(self, n: int) -> bool:
        """Take n free blocks (prompts, or growing sequences), evicting the least recently used cached
        prefixes if needed; False if memory is short."""
        if n > self.free_blocks + self.evictable_blocks:
            return False
        while self.free_blocks < n:
            pid, _ = self.evictable.popitem(last=False)
            released = self.prefix_blocks.pop(pid)
            del self.prefix_refs[pid]
            self.evictable_blocks -= released
            self.free_blocks += released
        self.free_blocks -= n
        return True

    def cached_prefix_tokens(self, seq: Seq) -> tuple[int, list[int]]:
        """Leading prompt tokens already in the cache, and their prefix ids (at least one token is computed)."""
        tokens, hits = 0, []
        for pid in seq.prefix_ids:
            if pid not in self.prefix_blocks:
                break
            size = min(self.prefix_block_tokens, seq.prompt_tokens - 1 - tokens)
            if size < self.prefix_block_tokens:
                break
            tokens += size
            hits.append(pid)
        return tokens, hits

    def admit(self, seq: Seq) -> bool:
        """Allocate the prompt's blocks, reusing cached prefix blocks; False if memory is short."""
        cached, hits = self.cached_prefix_tokens(seq) if seq.prefix_ids and self.caches_prefixes else (0, [])
        own = blocks_for(seq.prompt_tokens + 1 - cached, self.block_tokens)
        hits_evictable = sum(self.prefix_blocks[p] for p in hits if self.prefix_refs[p] == 0)
        if own > self.free_blocks + self.evictable_blocks - hits_evictable:
            return False
        for pid in hits:  # pin the hits first so eviction cannot take them
            if self.prefix_refs[pid] == 0:
                del self.evictable[pid]
                self.evictable_blocks -= self.prefix_blocks[pid]
            self.prefix_refs[pid] += 1
        self.take(own)
        seq.blocks = own
        seq.shared_ids = hits
        seq.shared_tokens = cached
        seq.prefilled = cached
        seq.ctx = cached
        return True

    def publish_prefix(self, seq: Seq) -> None:
        """After a prompt is computed, hand its not-yet-cached prefix blocks to the cache for later requests."""
        if not self.caches_prefixes:
            return
        tokens = seq.shared_tokens
        for pid in seq.prefix_ids[len(seq.shared_ids) :]:
            if tokens + self.prefix_block_tokens > seq.prompt_tokens - 1 or pid in self.prefix_blocks:
                break
            size = self.prefix_block_tokens // self.block_tokens
            if size > seq.blocks:
                break
            seq.blocks -= size
            self.prefix_blocks[pid] = size
            self.prefix_refs[pid] = 1
            seq.shared_ids.append(pid)
            tokens += self.prefix_block_tokens
        seq.shared_tokens = tokens

    def release(self, seq: Seq) -> None:
        """Free a sequence's own blocks; its prefix blocks stay cached until evicted."""
        self.free_blocks += seq.blocks
        seq.blocks = 0
        for pid in seq.shared_ids:
            self.prefix_refs[pid] -= 1
            if self.prefix_refs[pid] == 0:
                self.evictable[pid] = None
                self.evictable_blocks += self.prefix_blocks[pid]
        seq.shared_ids = []
        seq.shared_tokens = 0


class ContiguousKV:
    """Every request reserves `reserved_tokens` of contiguous KV at admission, whatever its real length."""

    grows = False

    def __init__(self, total_blocks: int, block_tokens: int, reserved_tokens: int):
        self.total_blocks = total_blocks
        self.block_tokens = block_tokens
        self.reserved_blocks = blocks_for(reserved_tokens, block_tokens)
        self.reserved_tokens = reserved_tokens
        self.free_blocks = total_blocks
        self.evictable_blocks = 0

    @property
    def available_blocks(self) -> int:
        return self.free_blocks

    @property
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_blocks

    def admit(self, seq: Seq) -> bool:
        if self.reserved_blocks > self.free_blocks:
            return False
        self.free_blocks -= self.reserved_blocks
        seq.blocks = self.reserved_blocks
        seq.prefilled = 0
        seq.ctx = 0
        return True

    def take(self, n: int) -> bool:
        return n == 0  # a reservation never grows

    def publish_prefix(self, seq: Seq) -> None:
        return None

    def release(self, seq: Seq) -> None:
        self.free_blocks += seq.blocks
        seq.blocks = 0
