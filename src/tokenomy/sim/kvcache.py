"""Former home of the KV allocators and `Seq`: now `sim.block_manager` and `sim.sequence` (kept for imports)."""

from tokenomy.sim.block_manager import ContiguousKV, PagedKV, blocks_for
from tokenomy.sim.sequence import Seq

__all__ = ["ContiguousKV", "PagedKV", "Seq", "blocks_for"]
