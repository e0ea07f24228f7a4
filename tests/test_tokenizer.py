"""The bundled SmolLM2 tokenizer: counts, and text of an exact token length."""

from __future__ import annotations

import pytest

from tokenomy.tokenizer import (
    CHAT_TOKENS_PER_MESSAGE,
    CHAT_TOKENS_PER_REPLY,
    count_chat_tokens,
    count_tokens,
    filler_pieces,
    prompt_of,
    token_ids,
    tokenizer,
    vocabulary_words,
)


def test_counts_match_smollm2_byte_level_bpe() -> None:
    assert tokenizer().get_vocab_size() == 49152
    assert tokenizer().encode("Hello, world!", add_special_tokens=False).tokens == ["Hello", ",", "Ġworld", "!"]
    assert count_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert count_tokens("2024") == 4  # SmolLM2 splits digits one by one
    assert count_tokens("<|im_start|>user") == 2  # special tokens are single tokens
    assert count_tokens("") == 0


@pytest.mark.parametrize("n", [1, 2, 17, 512, 3000])
@pytest.mark.parametrize("seed", [0, 7])
def test_prompt_of_counts_exactly(n: int, seed: int) -> None:
    assert count_tokens(prompt_of(n, seed)) == n


def test_prompts_are_deterministic_differ_by_seed_and_share_prefixes() -> None:
    assert prompt_of(100, 3) == prompt_of(100, 3)
    assert prompt_of(100, 3) != prompt_of(100, 4)
    assert prompt_of(300, 3).startswith(prompt_of(100, 3))
    assert len(set(prompt_of(200).split())) > 100  # varied words, not one repeated
    assert prompt_of(0) == ""


@pytest.mark.parametrize("n", [1, 5, 64, 1000])
def test_filler_pieces_are_one_token_each(n: int) -> None:
    pieces = filler_pieces(n)
    assert len(pieces) == n
    assert count_tokens("".join(pieces)) == n
    assert filler_pieces(2 * n)[:n] == pieces  # a longer answer starts the same way
    assert "." in "".join(filler_pieces(200))  # reads as sentences


def test_chat_count_is_contents_plus_framing() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt_of(40)}]
    expected = count_tokens("Be brief.") + 40 + 2 * CHAT_TOKENS_PER_MESSAGE + CHAT_TOKENS_PER_REPLY
    assert count_chat_tokens(messages) == expected
    parts = [{"role": "user", "content": [{"type": "text", "text": prompt_of(10)}]}, {"role": "assistant"}]
    assert count_chat_tokens(parts) == 10 + 2 * CHAT_TOKENS_PER_MESSAGE + CHAT_TOKENS_PER_REPLY


def test_word_cache_gives_the_tokenizers_own_ids_on_awkward_text() -> None:
    import random

    alphabet = [*"ab  \n\t\r'sdt12 .,!?é漢🙂-_<>|", "<|im_start|>", "'ll", " 3", "  ", "\u00a0", "\u0301", " The"]
    rng = random.Random(5)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += [prompt_of(700, 3), "Hello,  world! It's 2024:\n  x = [1, 2]  # done ", " leading space", "trailing "]
    for text in texts:
        assert token_ids(text) == tokenizer().encode(text, add_special_tokens=False).ids, repr(text)


def test_the_word_cache_starts_with_words_that_encode_to_their_own_token() -> None:
    words = vocabulary_words()
    assert len(words) > 30_000 and list(words[" world"]) == tokenizer().encode(" world", add_special_tokens=False).ids
    pieces = list(words)
    encodings = tokenizer().encode_batch(pieces, add_special_tokens=False)
    assert [e.ids for e in encodings] == [list(words[p]) for p in pieces]
