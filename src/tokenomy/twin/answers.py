"""Twin answers to the evaluation set: right with a chosen probability, wrong otherwise.

When a request's last user message is exactly an evaluation-set row's, the twin replies with
`reference_answer(row)` when u < pass_rate and `wrong_answer(row)` otherwise, split into token pieces
(so max_tokens and streaming work as for filler text). The uniform u is deterministic and stratified:

    u(row, k) = frac((rank(row) + 0.5) / N_type + k · φ)

where rank(row) orders the rows of a task type by blake2b(seed, row id), N_type is their count, k is how many
times this twin has answered that row before, and φ = (√5 − 1)/2 (a golden-ratio rotation). Over one pass
through a task type the u's are an evenly spaced grid, so the share of right answers is the pass rate to
within 1/N_type (e.g. 42 of 60 at 0.7), not a binomial draw; each repeat of a row gets a fresh u.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenomy.tokenizer import tokenizer

if TYPE_CHECKING:
    from tokenomy.twin.protocol import CompletionRequest
    from tokenomy.twin.server import TwinSettings

GOLDEN_FRACTION = (math.sqrt(5.0) - 1.0) / 2.0


def token_pieces(text: str) -> list[str]:
    """`text` split at its token boundaries: one string per token, concatenating back to `text`."""
    if not text:
        return []
    starts = [start for start, _ in tokenizer().encode(text, add_special_tokens=False).offsets]
    starts[0] = 0
    ends = [*starts[1:], len(text)]
    return [text[a:b] for a, b in zip(starts, ends, strict=True)]


def _stable_rank_key(seed: int, row_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=8).digest()


def stratified_offsets(rows: list[dict[str, Any]], seed: int) -> dict[str, float]:
    """Row id → (rank + 0.5) / N within its task type, ranks ordered by a seeded hash of the row id."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_type[row["task_type"]].append(row["id"])
    offsets = {}
    for ids in by_type.values():
        ranked = sorted(ids, key=lambda row_id: _stable_rank_key(seed, row_id))
        offsets.update({row_id: (rank + 0.5) / len(ranked) for rank, row_id in enumerate(ranked)})
    return offsets


@dataclass
class AnswerBook:
    """Evaluation-set prompts this twin recognises, and whether its next answer to each is right."""

    pass_rate: float
    pass_rate_by_type: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    rows_by_prompt: dict[str, dict[str, Any]] = field(init=False)
    offsets: dict[str, float] = field(init=False)
    asked: dict[str, int] = field(init=False, default_factory=lambda: defaultdict(int))
    right: int = field(init=False, default=0)
    wrong: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        from tokenomy.evalset.check import TASK_TYPES, load_evalset  # only twins that answer load the set

        for name, rate in {"answer_pass_rate": self.pass_rate, **self.pass_rate_by_type}.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"pass rate '{name}' must lie in [0, 1], got {rate}")
        unknown = sorted(set(self.pass_rate_by_type) - set(TASK_TYPES))
        if unknown:
            raise ValueError(f"unknown task type(s) {', '.join(unknown)}; expected {', '.join(TASK_TYPES)}")
        rows = load_evalset()
        self.rows_by_prompt = {_user_text(row["messages"]): row for row in rows}
        self.offsets = stratified_offsets(rows, self.seed)

    def row_for(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The evaluation-set row whose user message this chat request carries, if any."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        return self.rows_by_prompt.get(_user_text(messages))

    def answer(self, row: dict[str, Any]) -> str:
        """The next answer to `row`: right when its stratified uniform falls below the row's pass rate."""
        k = self.asked[row["id"]]
        self.asked[row["id"]] = k + 1
        u = (self.offsets[row["id"]] + k * GOLDEN_FRACTION) % 1.0
        passes = u < self.pass_rate_by_type.get(row["task_type"], self.pass_rate)
        from tokenomy.evalset.check import reference_answer, wrong_answer

        if passes:
            self.right += 1
            return reference_answer(row)
        self.wrong += 1
        return wrong_answer(row)

    def pieces_for(self, body: dict[str, Any]) -> list[str] | None:
        """Token pieces of the answer to a request, or None when it is not an evaluation-set prompt."""
        row = self.row_for(body)
        return None if row is None else token_pieces(self.answer(row))


def _user_text(messages: list[Any]) -> str:
    """The content of the last user message (a string), or "" when there is none."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def answer_book(settings: TwinSettings) -> AnswerBook | None:
    """The twin's answer book when its settings ask for evaluation-set answers (a rate overall or per type)."""
    if settings.answer_pass_rate is None and not settings.answer_pass_rate_by_type:
        return None
    overall = 1.0 if settings.answer_pass_rate is None else settings.answer_pass_rate
    return AnswerBook(overall, dict(settings.answer_pass_rate_by_type or {}), settings.answer_seed)


def use_answer(req: CompletionRequest, book: AnswerBook, default_max_tokens: int) -> None:
    """Make an evaluation-set request's output its answer: at most max_tokens of it ("length" when cut short)."""
    pieces = book.pieces_for(req.body)
    if pieces is None:
        return
    limit = req.max_tokens if req.max_tokens is not None else default_max_tokens
    req.pieces = pieces
    req.output_tokens = max(min(len(pieces), limit), 1)
    req.finish_reason = "stop" if len(pieces) <= limit else "length"
