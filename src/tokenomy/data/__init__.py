"""Bundled data files (the SmolLM2 tokenizer)."""
