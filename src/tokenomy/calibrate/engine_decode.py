"""Single-stream decode speed of a GGUF model under llama.cpp (llama-cpp-python, in process): the figure that a
`calibrate --host` entry plus the llama.cpp engine profile predict.

Each run evaluates a prompt from an empty cache, then decodes greedily (top-k 1) for a fixed number of tokens,
ignoring end-of-sequence so every run produces the same count. Decode speed comes from llama.cpp's own timings
(`llama_perf_context`: eval time and eval count, prompt evaluation excluded); the wall-clock rate between the
first and last token the Python loop receives (sampling and Python included) is kept beside it. The prompt's own
evaluation (prefill, one batched step of up to n_batch tokens) is timed by the same counters (prompt eval time).
Needs the optional engine extra (`pip install -e '.[engine]'`).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
DEFAULT_OUTPUT_TOKENS = 128
DEFAULT_RUNS = 5
CLEAN_CPU_SHARE = 0.95  # a run that had its threads' CPUs at least this much of its wall time
N_CTX = 512


@dataclass(frozen=True)
class DecodeRun:
    """One greedy generation: llama.cpp's decode timing and the loop's wall clock."""

    prompt_tokens: int
    decode_steps: int  # llama.cpp eval calls after the prompt (output tokens − 1: the prompt pass makes the first)
    eval_seconds: float  # llama.cpp's decode time for those steps
    wall_seconds: float  # first to last output token, as the Python loop saw them
    cpu_share: float  # process CPU time / (wall × threads) over the decode: below 1 when other processes ran
    prefill_seconds: float = 0.0  # llama.cpp's prompt evaluation time (t_p_eval) for prompt_tokens tokens

    @property
    def tokens_per_s(self) -> float:
        """Decode tokens/s from llama.cpp's timings: eval count / eval time (prompt evaluation excluded)."""
        return self.decode_steps / self.eval_seconds

    @property
    def wall_tokens_per_s(self) -> float:
        return self.decode_steps / self.wall_seconds


@dataclass(frozen=True)
class DecodeMeasurement:
    """Several runs of the same generation and their summary."""

    gguf: str
    threads: int
    output_tokens: int
    runs: tuple[DecodeRun, ...]
    load_average: tuple[float, float, float]  # at the end

    @property
    def best_run(self) -> DecodeRun:
        return max(self.runs, key=lambda r: r.tokens_per_s)

    @property
    def best_tokens_per_s(self) -> float:
        return self.best_run.tokens_per_s

    @property
    def clean(self) -> bool:
        """Whether the best run had its CPUs to itself (CPU share ≥ CLEAN_CPU_SHARE)."""
        return self.best_run.cpu_share >= CLEAN_CPU_SHARE

    @property
    def best_prefill_seconds(self) -> float:
        """The fastest prompt evaluation over the runs (llama.cpp's prompt eval time)."""
        return min(r.prefill_seconds for r in self.runs)

    @property
    def median_tokens_per_s(self) -> float:
        return statistics.median(r.tokens_per_s for r in self.runs)

    @property
    def prompt_tokens(self) -> int:
        return self.runs[0].prompt_tokens


def _one_run(llm: Any, prompt: list[int], output_tokens: int, threads: int) -> DecodeRun:
    """Evaluate `prompt` from an empty cache and decode `output_tokens` tokens greedily."""
    from llama_cpp import llama_cpp as lib

    llm.reset()
    lib.llama_perf_context_reset(llm.ctx)
    produced = 0
    first_s = last_s = cpu_start = 0.0
    for _token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        produced += 1
        last_s = time.perf_counter()
        if produced == 1:
            first_s, cpu_start = last_s, time.process_time()
        if produced >= output_tokens:
            break
    cpu_s = time.process_time() - cpu_start
    perf = lib.llama_perf_context(llm.ctx)
    if perf.n_eval < 1 or perf.t_eval_ms <= 0:
        raise RuntimeError("llama.cpp reported no decode timings (was the context created with no_perf?)")
    wall_s = max(last_s - first_s, 1e-9)
    return DecodeRun(
        prompt_tokens=len(prompt),
        decode_steps=int(perf.n_eval),
        eval_seconds=perf.t_eval_ms / 1e3,
        wall_seconds=wall_s,
        cpu_share=cpu_s / (wall_s * threads),
        prefill_seconds=perf.t_p_eval_ms / 1e3,
    )


def measure_decode(
    gguf: Path,
    threads: int,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    runs: int = DEFAULT_RUNS,
    prompt: str = DEFAULT_PROMPT,
    max_runs: int | None = None,
    prompt_tokens: int | None = None,
) -> DecodeMeasurement:
    """Load `gguf` with `threads` threads and time at least `runs` greedy generations of `output_tokens` tokens
    (after one untimed warm-up of 8 tokens). On a shared machine, up to `max_runs` (default 3 × runs) are made
    until one ran undisturbed (CPU share ≥ CLEAN_CPU_SHARE), so that the best run is the host's own speed.
    `prompt_tokens`: make the prompt exactly this many tokens (`prompt` repeated and cut) instead of `prompt`."""
    max_runs = max(max_runs or 3 * runs, runs)
    if threads < 1 or output_tokens < 2 or runs < 1 or (prompt_tokens is not None and prompt_tokens < 1):
        raise ValueError("threads, runs and prompt_tokens must be positive, output_tokens at least 2")
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False, no_perf=False
    )
    tokens = llm.tokenize(prompt.encode())
    if prompt_tokens is not None:
        tokens = (tokens * (prompt_tokens // max(len(tokens), 1) + 1))[:prompt_tokens]
    if len(tokens) + output_tokens > N_CTX:
        llm.close()
        raise ValueError(f"prompt ({len(tokens)} tokens) + {output_tokens} output tokens exceed n_ctx {N_CTX}")
    results: list[DecodeRun] = []
    try:
        _one_run(llm, tokens, 8, threads)
        while len(results) < runs or (len(results) < max_runs and not _has_clean_run(results)):
            results.append(_one_run(llm, tokens, output_tokens, threads))
    finally:
        llm.close()
    return DecodeMeasurement(str(gguf), threads, output_tokens, tuple(results), os.getloadavg())


def _has_clean_run(results: list[DecodeRun]) -> bool:
    return any(r.cpu_share >= CLEAN_CPU_SHARE for r in results)


@dataclass(frozen=True)
class BatchedDecode:
    """Decode steps of several sequences at once, as llama.cpp's server runs its busy slots."""

    seqs: int
    context_tokens: int  # mean cached context per sequence over the timed steps
    step_seconds: float  # fastest run's median llama_decode() time of one step (seqs tokens)
    cpu_share: float  # that run's process CPU time / (wall × threads)


def measure_batched_decode(
    gguf: Path, threads: int, seqs: int, prompt_tokens: int = 16, steps: int = 32, runs: int = 3
) -> BatchedDecode:
    """Time `steps` decode steps of `seqs` sequences in one batch (llama.cpp's low-level API: one llama_decode() per
    step, each sequence's next token at its own position, after a `prompt_tokens`-token prefill per sequence);
    the fastest of `runs` runs' median step time. Token ids are fixed stand-ins: a step's time does not depend on
    them."""
    if threads < 1 or seqs < 1 or prompt_tokens < 1 or steps < 1 or runs < 1:
        raise ValueError("threads, seqs, prompt_tokens, steps and runs must be positive")
    import llama_cpp as lib

    quiet = logging.getLogger("llama-cpp-python")  # llama.cpp's log goes through it: errors only, as verbose=False
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _time_batched_steps(lib, gguf, threads, seqs, prompt_tokens, steps, runs)
    finally:
        quiet.setLevel(level)


def _time_batched_steps(
    lib: Any, gguf: Path, threads: int, seqs: int, prompt_tokens: int, steps: int, runs: int
) -> BatchedDecode:
    """measure_batched_decode's timing, with llama.cpp's low-level API `lib`."""
    lib.llama_backend_init()
    model_params = lib.llama_model_default_params()
    model_params.n_gpu_layers = 0  # the host's CPU, as measure_decode's Llama() loads it
    model = lib.llama_model_load_from_file(str(gguf).encode(), model_params)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf}")
    params = lib.llama_context_default_params()
    params.n_ctx = seqs * (prompt_tokens + steps + 1)
    params.n_batch = params.n_ubatch = max(prompt_tokens, seqs)
    params.n_seq_max = seqs
    params.kv_unified = True  # one KV buffer shared by the sequences, as llama-server's slots share it
    params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as measure_decode's Llama(): one attention kernel
    params.n_threads = params.n_threads_batch = threads
    ctx = batch = None
    best: tuple[float, float] | None = None  # (median step s, CPU share)
    try:
        ctx = lib.llama_init_from_model(model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a {seqs}-sequence context for {gguf}")
        batch = lib.llama_batch_init(max(prompt_tokens, seqs), 0, seqs)

        def submit(tokens: list[tuple[int, int, int]]) -> None:  # (position, sequence, token id)
            batch.n_tokens = len(tokens)
            for j, (pos, seq, token) in enumerate(tokens):  # logits: every decode token, a prompt's last one
                batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, pos, 1
                batch.logits[j] = pos >= prompt_tokens - 1
                batch.seq_id[j][0] = seq
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError(f"llama_decode failed on {gguf} ({len(tokens)} tokens)")
            lib.llama_synchronize(ctx)

        for _ in range(runs):
            lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
            for seq in range(seqs):
                submit([(pos, seq, 100 + pos) for pos in range(prompt_tokens)])
            times, wall_start, cpu_start = [], time.perf_counter(), time.process_time()
            for step in range(steps):
                start = time.perf_counter()
                submit([(prompt_tokens + step, seq, 200 + step + seq) for seq in range(seqs)])
                times.append(time.perf_counter() - start)
            share = (time.process_time() - cpu_start) / (max(time.perf_counter() - wall_start, 1e-9) * threads)
            run = (statistics.median(times), share)
            best = run if best is None or run[0] < best[0] else best
    finally:
        if batch is not None:
            lib.llama_batch_free(batch)
        if ctx:
            lib.llama_free(ctx)
        lib.llama_model_free(model)
    assert best is not None
    return BatchedDecode(seqs, prompt_tokens + steps // 2, best[0], best[1])
