"""The evaluation set through the real SmolLM2-135M engine: its actual pass rate per task type.

Every row (240) goes to llama.cpp's server at temperature 0 with a small max_tokens per task type (what a
correct answer needs: a label, a number with a line of working, a JSON object, a short function); the answers
are checked with `tokenomy.evalset.check.check`. By default a stratified subset runs: the first 10 rows of each
task type (40 requests, ~4 min on 2 CPU cores; all 240 take ~20 min). TOKENOMY_EVALSET_ROWS_PER_TYPE=N changes
N; 0 runs every row. The rates are printed; the README quotes them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.engine.conftest import LlamaServer
from tokenomy.evalset.check import TASK_TYPES, check, load_evalset

pytestmark = pytest.mark.engine

MAX_TOKENS = {"classification": 8, "arithmetic": 64, "json_extraction": 160, "code": 160}
ROWS_PER_TYPE = int(os.environ.get("TOKENOMY_EVALSET_ROWS_PER_TYPE", "10"))  # 0: every row
CONCURRENCY = 2  # llama.cpp serves one request at a time; a second one waiting keeps it busy


def evalset_rows() -> list[dict[str, Any]]:
    if not ROWS_PER_TYPE:
        return load_evalset()
    return [row for t in TASK_TYPES for row in load_evalset(t)[:ROWS_PER_TYPE]]


async def answers(server: LlamaServer, rows: list[dict[str, Any]]) -> list[str]:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as client:

        async def one(row: dict[str, Any]) -> str:
            body = {
                "model": server.model,
                "messages": row["messages"],
                "max_tokens": MAX_TOKENS[row["task_type"]],
                "temperature": 0.0,
            }
            async with limit:
                response = await client.post("/chat/completions", json=body)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"] or ""

        return await asyncio.gather(*(one(row) for row in rows))


def test_smollm2_pass_rate_per_task_type(llama_server: LlamaServer) -> None:
    rows = evalset_rows()
    started = time.perf_counter()
    texts = asyncio.run(answers(llama_server, rows))
    elapsed_s = time.perf_counter() - started
    passed: dict[str, list[bool]] = defaultdict(list)
    for row, text in zip(rows, texts, strict=True):
        passed[row["task_type"]].append(check(row, text)[0])
    total = sum(sum(v) for v in passed.values())
    print(f"\nSmolLM2-135M-Instruct Q4_1 (llama.cpp), {len(rows)} evaluation-set rows in {elapsed_s:.0f} s:")
    for task_type in TASK_TYPES:
        results = passed[task_type]
        print(f"  {task_type:<16} {sum(results):>3} / {len(results):>3} pass ({sum(results) / len(results):.1%})")
    print(f"  {'all':<16} {total:>3} / {len(rows):>3} pass ({total / len(rows):.1%})")
    assert len(texts) == len(rows)
    expected_counts = {t: len(load_evalset(t)) if not ROWS_PER_TYPE else ROWS_PER_TYPE for t in TASK_TYPES}
    assert {t: len(v) for t, v in passed.items()} == expected_counts
    for results in passed.values():
        assert 0.0 <= sum(results) / len(results) <= 1.0
