"""KV-cache allocators: paged blocks with prefix caching (vLLM's PagedAttention) or contiguous reservation.

Both count memory in blocks of `block_tokens` tokens. Paged allocation hands a sequence a new
block each time its context crosses a block boundary; contiguous allocation reserves the
maximum length for every request up front, as engines did before paging (Orca, FasterTransformer).
Paged allocation admits a request either on demand (its prompt's blocks are free: vLLM, SGLang)
or at full length (the blocks of its prompt + output fit beside the full lengths of those
running, so decodes never run short: TensorRT-LLM's GUARANTEED_NO_EVICT); blocks are still
handed out as sequences grow. A request's output length stands for the max_tokens the engine
sets aside (benchmarks send max_tokens = the output length; a trace's shorter answers would be
admitted a little sooner here than by the engine).
"""

from __future__ import annotations

from collections import OrderedDict

from tokenomy.sim.sequence import Seq


def blocks_for(tokens: int, block_tokens: int) -> int:
    """Blocks needed to hold `tokens` tokens."""
    return -(-tokens // block_tokens)


class PagedKV:
    """Fixed-size KV blocks handed out as sequences grow; shared prompt prefixes are cached by id (LRU)."""

    grows = True

    def __init__(
        self, total_blocks: int, block_tokens: int = 16, prefix_block_tokens: int = 512, full_length: bool = False
    ):
        self.total_blocks = total_blocks
        self.block_tokens = block_tokens
        self.prefix_block_tokens = prefix_block_tokens
        self.full_length = full_length  # admit a request only when its whole length fits (module docstring)
        self.committed_blocks = 0  # full_length: blocks the admitted requests may grow to, in all
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

    def full_length_blocks(self, seq: Seq) -> int:
        """Blocks a sequence may grow to: its prompt (with any output so far) and the rest of its output."""
        return blocks_for(seq.prompt_tokens + seq.remaining_output, self.block_tokens)

    def over_committed(self, seq: Seq) -> bool:
        """Full-length admission: whether `seq`'s whole length does not fit beside the running requests' own."""
        return self.full_length and self.committed_blocks + self.full_length_blocks(seq) > self.total_blocks

    def admit(self, seq: Seq, max_new_tokens: int | None = None) -> bool:
        """Allocate the prompt's blocks, reusing cached prefix blocks; False if memory is short (or, at full
        length, the request's whole length is not free to commit). With `max_new_tokens` only the blocks of the
        first chunk (vLLM v1 allocates per scheduled chunk; the block after the prompt, for the first output
        token, comes with its last chunk)."""
        if self.over_committed(seq):
            return False
        cached, hits = self.cached_prefix_tokens(seq) if seq.prefix_ids and self.caches_prefixes else (0, [])
        end = seq.prompt_tokens if max_new_tokens is None else min(seq.prompt_tokens, cached + max_new_tokens)
        own = blocks_for(end + (end == seq.prompt_tokens) - cached, self.block_tokens)
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
        if self.full_length:
            seq.committed_blocks = self.full_length_blocks(seq)
            self.committed_blocks += seq.committed_blocks
        seq.shared_ids = hits
        seq.shared_tokens = cached
        seq.prefilled = cached
        seq.ctx = cached
        return True

    def extend(self, seq: Seq, tokens: int) -> bool:
        """Blocks for the next `tokens` of a partly computed prompt (and the first output token's slot after
        its last chunk); False if memory is short."""
        end = seq.ctx + tokens
        need = blocks_for(end + (end == seq.prompt_tokens) - seq.shared_tokens, self.block_tokens) - seq.blocks
        if need > 0:
            if not self.take(need):
                return False
            seq.blocks += need
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
        """Free a sequence's own blocks and its full-length commitment; its prefix blocks stay cached till evicted."""
        self.free_blocks += seq.blocks
        seq.blocks = 0
        self.committed_blocks -= seq.committed_blocks
        seq.committed_blocks = 0
        for pid in seq.shared_ids:
            self.prefix_refs[pid] -= 1
            if self.prefix_refs[pid] == 0:
                self.evictable[pid] = None
                self.evictable_blocks += self.prefix_blocks[pid]
        seq.shared_ids = []
        seq.shared_tokens = 0


class ContiguousKV:
    """Every request reserves `reserved_tokens` of contiguous KV at admission, whatever its real length."""

    full_length = False  # admitted by its reservation, not by its own length

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

    def admit(self, seq: Seq, max_new_tokens: int | None = None) -> bool:
        if self.reserved_blocks > self.free_blocks:
            return False
        self.free_blocks -= self.reserved_blocks
        seq.blocks = self.reserved_blocks
        seq.prefilled = 0
        seq.ctx = 0
        return True

    def take(self, n: int) -> bool:
        return n == 0  # a reservation never grows

    def extend(self, seq: Seq, tokens: int) -> bool:
        return True  # the reservation covers the whole request

    def publish_prefix(self, seq: Seq) -> None:
        return None

    def release(self, seq: Seq) -> None:
        self.free_blocks += seq.blocks
        seq.blocks = 0
