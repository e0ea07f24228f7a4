"""Offline token counting and deterministic text of a given token length (SmolLM2 byte-level BPE).

The tokenizer is SmolLM2's (49,152-token byte-level BPE, bundled gzipped in `tokenomy/data`); it stands in for
whatever tokenizer a served model uses, so counts are close to, not equal to, a Llama or Qwen tokenizer's.
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from importlib.resources import files
from itertools import chain

import numpy as np
from tokenizers import Tokenizer

TOKENIZER_RESOURCE = "smollm2_tokenizer.json.gz"
# ChatML framing per message: <|im_start|> role \n ... <|im_end|> \n  (role names are one token each).
CHAT_TOKENS_PER_MESSAGE = 5
# The assistant reply primer appended once: <|im_start|> assistant \n
CHAT_TOKENS_PER_REPLY = 3
# A period after this many filler words on average, so output reads as sentences.
WORDS_PER_SENTENCE = 12
_MIN_WORD_CHARS = 3
_MAX_WORD_CHARS = 9
# Word cache: byte-level BPE never merges across a space followed by an ASCII letter (the pre-tokenizer's
# GPT-2 regex always starts a new piece there, as ` ?\p{L}+`, and no special token contains a space; a space
# before a digit is not such a boundary, as digits are split off first), so text split before each such space
# encodes piece by piece to exactly the ids of the whole; pieces repeat, so their ids are cached.
# Pieces longer than _CACHED_PIECE_CHARS are encoded each time; the cache is emptied when full. It starts with
# the vocabulary's plain words (ASCII letters, with and without their leading space), each its own single token.
_PIECE_BOUNDARY = re.compile(r"(?= [A-Za-z])")
_CACHED_PIECE_CHARS = 48
_PIECE_CACHE_MAX = 1 << 18
_BATCH_ENCODE_MIN = 256  # fewer new pieces than this are encoded one by one
_piece_ids: dict[str, tuple[int, ...]] = {}  # tuples of ints: not tracked by the cyclic GC (no long pauses)


@lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    """The bundled tokenizer, loaded once on first use."""
    data = files("tokenomy.data").joinpath(TOKENIZER_RESOURCE).read_bytes()
    return Tokenizer.from_str(gzip.decompress(data).decode("utf-8"))


def count_tokens(text: str) -> int:
    """Number of tokens in `text` (no BOS/EOS added)."""
    return len(token_ids(text)) if text else 0


@lru_cache(maxsize=1)
def vocabulary_words() -> dict[str, tuple[int, ...]]:
    """Pieces that are one vocabulary token of ASCII letters (' word' as 'Ġword', or 'word'), with their ids."""
    out: dict[str, list[int]] = {}
    for token, token_id in tokenizer().get_vocab().items():
        word = token[1:] if token.startswith("Ġ") else token
        if word.isascii() and word.isalpha():
            out[" " + word if len(word) < len(token) else word] = (token_id,)
    return out


def token_ids(text: str) -> list[int]:
    """Token ids of `text` (no BOS/EOS added): the tokenizer's own ids, by way of the word cache."""
    if not text:
        return []
    if not _piece_ids:
        _piece_ids.update(vocabulary_words())
    pieces = _PIECE_BOUNDARY.split(text)
    cache = _piece_ids
    try:
        parts = [cache[p] for p in pieces]
    except KeyError:
        _learn_pieces([p for p in pieces if p not in cache])
        parts = [cache.get(p) or tuple(tokenizer().encode(p, add_special_tokens=False).ids) for p in pieces]
    return list(chain.from_iterable(parts))


def _learn_pieces(pieces: list[str]) -> None:
    """Encode the pieces short enough to cache and store their ids."""
    short = list({p for p in pieces if len(p) <= _CACHED_PIECE_CHARS})
    if not short:
        return
    if len(_piece_ids) + len(short) > _PIECE_CACHE_MAX:
        _piece_ids.clear()
        _piece_ids.update(vocabulary_words())
    tok = tokenizer()
    if len(short) < _BATCH_ENCODE_MIN:  # encode_batch's thread pool costs more than it saves on a few words
        encodings = [tok.encode(piece, add_special_tokens=False) for piece in short]
    else:
        encodings = tok.encode_batch(short, add_special_tokens=False)
    for piece, encoding in zip(short, encodings, strict=True):
        _piece_ids[piece] = tuple(encoding.ids)


def _content_text(content: object) -> str:
    """Text of an OpenAI message content: a string, a list of parts ({"type": "text", "text": ...}) or None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def chat_content_ids(messages: list[dict]) -> list[int]:
    """Token ids of the messages' contents, concatenated (the chat template's framing left out)."""
    return [i for m in messages for i in token_ids(_content_text(m.get("content")))]


def count_chat_tokens(messages: list[dict]) -> int:
    """Prompt tokens of a chat: each message's content plus CHAT_TOKENS_PER_MESSAGE, plus CHAT_TOKENS_PER_REPLY."""
    return len(chat_content_ids(messages)) + CHAT_TOKENS_PER_MESSAGE * len(messages) + CHAT_TOKENS_PER_REPLY


@lru_cache(maxsize=1)
def _word_pool() -> tuple[str, ...]:
    """Lower-case words that are one token both with and without a leading space, in vocabulary order."""
    tok = tokenizer()
    candidates = sorted(
        word[1:]
        for word in tok.get_vocab()
        if word.startswith("Ġ") and word[1:].isascii() and word[1:].isalpha() and word[1:].islower()
        if _MIN_WORD_CHARS <= len(word) - 1 <= _MAX_WORD_CHARS
    )
    spaced = tok.encode_batch([" " + w for w in candidates], add_special_tokens=False)
    bare = tok.encode_batch(candidates, add_special_tokens=False)
    return tuple(w for w, s, b in zip(candidates, spaced, bare, strict=True) if len(s.ids) == 1 and len(b.ids) == 1)


def _word_indices(n_words: int, seed: int) -> np.ndarray:
    """Deterministic word choices; the first k of n are the same for every n >= k (prompts share prefixes)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(_word_pool()), size=n_words)


def prompt_of(n_tokens: int, seed: int = 0) -> str:
    """Deterministic text that counts as exactly `n_tokens` tokens; same seed → same (prefix-sharing) words."""
    if n_tokens <= 0:
        return ""
    pool = _word_pool()
    words = [pool[i] for i in _word_indices(n_tokens, seed)]
    return " ".join(words)


def filler_pieces(n_tokens: int, seed: int = 0) -> list[str]:
    """Deterministic output text, one string per token, whose concatenation counts as `n_tokens` tokens.

    Words with a period after about one in WORDS_PER_SENTENCE; the first k pieces are the same for every n ≥ k.
    """
    if n_tokens <= 0:
        return []
    pool = _word_pool()
    draws = np.random.default_rng(seed + 1_000_003).integers(0, len(pool) * WORDS_PER_SENTENCE, size=n_tokens)
    pieces: list[str] = []
    previous_was_period = True
    for draw in draws.tolist():
        if draw < len(pool) and not previous_was_period:
            pieces.append(".")
            previous_was_period = True
        else:
            pieces.append((" " if pieces else "") + pool[draw % len(pool)])
            previous_was_period = False
    return pieces
