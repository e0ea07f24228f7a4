"""Weight and KV-cache number formats: bits per value (scales included) and the compute type they use."""

from __future__ import annotations

from dataclasses import dataclass

from tokenomy.catalog.errors import CatalogError, unknown_name_error


@dataclass(frozen=True)
class WeightFormat:
    """How linear-layer weights are stored and multiplied.

    bits_per_weight includes block scales: int4 with a fp16 scale and a 4-bit zero point per
    group of 128 is 4 + 20/128 bits; nvfp4 is 4 bits plus a fp8 scale per 16 (4.5 bits); mxfp4
    a 8-bit exponent scale per 32 (4.25 bits); GGUF block types by their block layout
    (q4_0: 18 bytes per 32 weights; q4_1: 20; q8_0: 34). Embeddings, norms and routers stay at
    `embed_bits` (16 for GPU formats; llama.cpp stores the embedding as q8_0-class blocks).
    """

    name: str
    bits_per_weight: float
    compute: str  # tensor-core type for the matmuls when the accelerator has it (else 16-bit)
    embed_bits: float = 16.0
    experts_only: bool = False  # checkpoint quantises only MoE experts (gpt-oss MXFP4)
    description: str = ""

    @property
    def bytes_per_weight(self) -> float:
        return self.bits_per_weight / 8


_GROUP128 = 4 + (16 + 4) / 128

WEIGHT_FORMATS: dict[str, WeightFormat] = {
    f.name: f
    for f in [
        WeightFormat("fp32", 32, "fp32", 32, description="32-bit float"),
        WeightFormat("bf16", 16, "bf16", description="bfloat16"),
        WeightFormat("fp16", 16, "fp16", description="float16"),
        WeightFormat("fp8", 8, "fp8", description="FP8 E4M3 weights and activations (W8A8)"),
        WeightFormat(
            "fp8-block",
            8 + 32 / (128 * 128),
            "fp8",
            description="FP8 E4M3 with a fp32 scale per 128x128 weight block (DeepSeek-V3's checkpoint; W8A8)",
        ),
        WeightFormat("int8", 8, "int8", description="INT8 SmoothQuant weights and activations (W8A8)"),
        WeightFormat("int4", _GROUP128, "bf16", description="INT4 weight-only, group 128 (AWQ/GPTQ, W4A16)"),
        WeightFormat("awq", _GROUP128, "bf16", description="AWQ INT4, group 128"),
        WeightFormat("gptq", _GROUP128, "bf16", description="GPTQ INT4, group 128"),
        WeightFormat("nvfp4", 4 + 8 / 16, "fp4", description="NVFP4: E2M1 + FP8 scale per 16 (W4A4 on Blackwell)"),
        WeightFormat("mxfp4", 4 + 8 / 32, "fp4", description="MXFP4: E2M1 + E8M0 scale per 32"),
        WeightFormat(
            "mxfp4-experts",
            4 + 8 / 32,
            "bf16",
            experts_only=True,
            description="gpt-oss native: MoE experts MXFP4, attention bf16",
        ),
        WeightFormat("q8_0", 34 * 8 / 32, "fp16", 34 * 8 / 32, description="GGUF Q8_0 (8.5 bits)"),
        WeightFormat("q6_k", 6.5625, "fp16", 34 * 8 / 32, description="GGUF Q6_K (6.56 bits)"),
        WeightFormat("q5_k_m", 5.69, "fp16", 6.5625, description="GGUF Q5_K_M mix (~5.7 bits)"),
        WeightFormat("q4_k_m", 4.85, "fp16", 6.5625, description="GGUF Q4_K_M mix (~4.85 bits)"),
        WeightFormat("q4_1", 20 * 8 / 32, "fp16", 34 * 8 / 32, description="GGUF Q4_1 (5.0 bits)"),
        WeightFormat("q4_0", 18 * 8 / 32, "fp16", 34 * 8 / 32, description="GGUF Q4_0 (4.5 bits)"),
    ]
}

KV_BYTES_PER_VALUE: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5 + 1 / 16,  # NVFP4 KV: 4-bit values plus a fp8 scale per 16
}


# Names engines and vendors publish precisions under -> our format name. Keys are normalised by
# `_normalise` (lower case, '-', ' ' and '.' as '_'). TensorRT-LLM's tables say "FP4" for NVFP4 and
# "W4A16"/"int4-awq" for AWQ; vLLM/compressed-tensors say "W8A8-FP8", "w4a16"; HF configs "bfloat16".
PRECISION_ALIASES: dict[str, str] = {
    "fp4": "nvfp4",
    "nv_fp4": "nvfp4",
    "nvfp4": "nvfp4",
    "w4a4_nvfp4": "nvfp4",
    "w4a4_fp4": "nvfp4",
    "modelopt_fp4": "nvfp4",
    "mx_fp4": "mxfp4",
    "w4a4_mxfp4": "mxfp4",
    "fp8": "fp8",
    "fp8_e4m3": "fp8",
    "e4m3": "fp8",
    "float8": "fp8",
    "w8a8_fp8": "fp8",
    "fp8_dynamic": "fp8",
    "modelopt_fp8": "fp8",
    "fp8_block": "fp8-block",
    "fp8_blockwise": "fp8-block",
    "block_fp8": "fp8-block",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "int8": "int8",
    "w8a8_int8": "int8",
    "w8a8_sq": "int8",
    "int8_sq": "int8",
    "smoothquant": "int8",
    "w4a16": "int4",
    "int4": "int4",
    "int4_wo": "int4",
    "w4a16_awq": "awq",
    "int4_awq": "awq",
    "awq_int4": "awq",
    "w4a16_gptq": "gptq",
    "int4_gptq": "gptq",
    "gptq_int4": "gptq",
}

KV_ALIASES: dict[str, str] = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "fp8_e4m3": "fp8",
    "e4m3": "fp8",
    "float8": "fp8",
    "nvfp4": "fp4",
    "int8_kv": "int8",
    "fp8_kv": "fp8",
}


def _normalise(name: str) -> str:
    """Lower case with '-', ' ' and '.' folded to '_' (so 'INT4-AWQ', 'int4 awq' and 'int4_awq' agree)."""
    return "_".join(name.strip().lower().replace("-", " ").replace(".", " ").split())


def canonical_precision(name: str) -> str:
    """Our weight-format name for `name`, one of ours or a published alias ('FP4' -> 'nvfp4'); raises if unknown."""
    lowered = name.strip().lower()
    if lowered in WEIGHT_FORMATS:
        return lowered
    key = _normalise(name)
    if key in WEIGHT_FORMATS:
        return key
    if key in PRECISION_ALIASES:
        return PRECISION_ALIASES[key]
    raise unknown_name_error("precision", name, list(WEIGHT_FORMATS))


def canonical_kv_precision(name: str) -> str:
    """Our KV-precision name for `name` ('auto' kept; 'FP8_E4M3' -> 'fp8'); raises if unknown."""
    key = _normalise(name)
    if key == "auto" or key in KV_BYTES_PER_VALUE:
        return key
    if key in KV_ALIASES:
        return KV_ALIASES[key]
    raise unknown_name_error("KV precision", name, list(KV_BYTES_PER_VALUE))


def weight_format(name: str) -> WeightFormat:
    """A weight format by name or published alias ('fp16', 'FP8', 'int4-awq', 'FP4' = nvfp4, 'q4_1', ...)."""
    return WEIGHT_FORMATS[canonical_precision(name)]


def kv_bytes_per_value(name: str) -> float:
    """Bytes per cached K or V element for a KV precision (aliases as in `canonical_kv_precision`)."""
    key = canonical_kv_precision(name)
    if key in KV_BYTES_PER_VALUE:
        return KV_BYTES_PER_VALUE[key]
    raise unknown_name_error("KV precision", name, list(KV_BYTES_PER_VALUE))


def check_positive(**values: float) -> None:
    """Reject zero or negative sizes with a message naming the option."""
    for name, value in values.items():
        if value is None or value <= 0:
            raise CatalogError(f"{name.replace('_', '-')} must be positive, got {value}")
