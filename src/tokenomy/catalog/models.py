"""Model architectures read from Hugging Face `config.json` files.

`ModelArch` is the few numbers the cost model needs, read from any config.json of the
families served today: Llama 2/3/4, Mistral, Mixtral, Qwen 2.5/3 (dense and MoE),
DeepSeek-V3 (MLA), Gemma 3 (sliding/global layers), gpt-oss (sliding layers, MXFP4 experts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tokenomy.catalog.errors import CatalogError, unknown_name_error

DATA_DIR = resources.files("tokenomy.catalog") / "data"

# Fields a family's config.json may leave out because transformers' config class defaults them.
MODEL_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "sliding_window_pattern": 6,
        "tie_word_embeddings": True,
    },
    "gemma3": {"tie_word_embeddings": True},
}


@dataclass(frozen=True)
class ModelArch:
    """A decoder-only transformer as the cost model sees it (text part only)."""

    id: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense MLP width (of the dense layers)
    vocab_size: int
    tied_embeddings: bool
    max_context_tokens: int
    attention_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    # Mixture of experts: routed experts per MoE layer, experts chosen per token, their width.
    n_experts: int = 0
    experts_per_token: int = 0
    expert_intermediate_size: int = 0
    n_shared_experts: int = 0
    shared_intermediate_size: int = 0
    n_moe_layers: int = 0
    expert_bias: bool = False
    # Multi-head latent attention (DeepSeek-V2/V3): KV cached as a latent plus a rope key.
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Sliding-window layers attend to (and read the KV of) at most the last `sliding_window` tokens and keep only those
    # in the KV cache. `chunked_attention`: they are Llama 4's chunked local-attention layers (attending within
    # `sliding_window`-token chunks), whose past chunks' KV only an engine whose profile says so frees
    # (EngineProfile.frees_chunked_attention_kv); the others keep every token's KV.
    sliding_window: int = 0
    n_sliding_layers: int = 0
    chunked_attention: bool = False
    native_precision: str = "bf16"
    extra_params: int = 0  # parameters outside the layers counted above (e.g. attention sinks)
    published: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def n_full_layers(self) -> int:
        return self.n_layers - self.n_sliding_layers


def _get(cfg: dict[str, Any], source: str, *names: str, default: Any = None, required: bool = True) -> Any:
    """First of `names` present in cfg; a CatalogError naming file and field when required and absent."""
    for name in names:
        if name in cfg and cfg[name] is not None:
            return cfg[name]
    if required and default is None:
        raise CatalogError(f"{source}: config.json has no field '{names[0]}' (needed to size the model)")
    return default


def _positive_int(value: Any, source: str, name: str) -> int:
    """Validate a config field as a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value <= 0:
        raise CatalogError(f"{source}: field '{name}' must be a positive integer, got {value!r}")
    return int(value)


def arch_from_config(cfg: dict[str, Any], model_id: str, source: str = "config.json") -> ModelArch:
    """Read the architecture numbers out of a Hugging Face config.json dict."""
    if not isinstance(cfg, dict):
        raise CatalogError(f"{source}: expected a JSON object at the top level")
    top = cfg
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers (Llama 4, Gemma 3)
        cfg = {**cfg["text_config"]}
    model_type = str(_get(cfg, source, "model_type", default="", required=False) or top.get("model_type", ""))
    cfg = {**MODEL_TYPE_DEFAULTS.get(model_type, {}), **cfg}
    top = {**MODEL_TYPE_DEFAULTS.get(str(top.get("model_type", "")), {}), **top}

    def num(*names: str, default: Any = None, required: bool = True) -> int:
        """A positive integer field; an optional one may be absent or 0 (then 0), a required one never 0."""
        value = _get(cfg, source, *names, default=default, required=required)
        if value is None or (not required and value == 0):
            return 0
        name = next((n for n in names if n in cfg), names[0])
        return _positive_int(value, source, name)

    hidden = num("hidden_size", "d_model", "n_embd")
    n_layers = num("num_hidden_layers", "n_layer", "num_layers")
    n_heads = num("num_attention_heads", "n_head")
    n_kv_heads = num("num_key_value_heads", default=n_heads)
    head_dim = num("head_dim", default=hidden // n_heads)
    intermediate = num("intermediate_size_mlp", "intermediate_size", "ffn_dim", "n_inner")
    vocab = num("vocab_size")
    tied = bool(top.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False)))
    max_ctx = num("max_position_embeddings", "n_positions", "seq_length", default=4096)

    kw: dict[str, Any] = {}
    if model_type.startswith("qwen2"):
        kw["attention_bias"] = True
    if cfg.get("attention_bias"):
        kw["attention_bias"] = True
    if model_type.startswith("qwen3"):
        kw["qk_norm"] = True
    if model_type.startswith("gemma3"):
        kw["qk_norm"] = True
        kw["norms_per_layer"] = 4

    # Mixture of experts, under the names each family uses.
    n_experts = num("num_local_experts", "n_routed_experts", "num_experts", default=0, required=False)
    if n_experts:
        first_dense = int(cfg.get("first_k_dense_replace", 0) or 0)
        step = int(cfg.get("interleave_moe_layer_step", 1) or 1)
        sparse_step = int(cfg.get("decoder_sparse_step", 1) or 1)
        n_moe = (n_layers - first_dense) // max(step, sparse_step)
        expert_inter = num("moe_intermediate_size", default=0, required=False)
        kw.update(
            n_experts=n_experts,
            experts_per_token=num("num_experts_per_tok", "num_experts_per_token", "experts_per_token"),
            expert_intermediate_size=expert_inter or num("intermediate_size"),
            n_moe_layers=n_moe,
            expert_bias=model_type == "gpt_oss",
        )
        if "n_shared_experts" in cfg and cfg["n_shared_experts"]:
            kw.update(n_shared_experts=int(cfg["n_shared_experts"]), shared_intermediate_size=expert_inter)
        if model_type.startswith("llama4"):  # one shared expert as wide as a routed one
            kw.update(n_shared_experts=1, shared_intermediate_size=num("intermediate_size"))
        if model_type == "gpt_oss":
            kw["extra_params"] = n_layers * n_heads  # attention sinks

    if cfg.get("kv_lora_rank"):
        kw.update(
            kv_lora_rank=num("kv_lora_rank"),
            q_lora_rank=num("q_lora_rank", default=0, required=False),
            qk_rope_head_dim=num("qk_rope_head_dim"),
            qk_nope_head_dim=num("qk_nope_head_dim"),
            v_head_dim=num("v_head_dim"),
        )

    window = cfg.get("sliding_window")
    layer_types = cfg.get("layer_types")
    if window and cfg.get("use_sliding_window", True) is not False:
        window = _positive_int(window, source, "sliding_window")
        if isinstance(layer_types, list) and layer_types:
            n_sliding = sum(1 for t in layer_types if "sliding" in str(t))
        elif cfg.get("sliding_window_pattern"):  # Gemma 3: every Nth layer is global
            pattern = int(cfg["sliding_window_pattern"])
            n_sliding = n_layers - n_layers // pattern
        elif model_type.startswith("gemma3"):
            n_sliding = n_layers - n_layers // 6
        elif "max_window_layers" in cfg:  # Qwen 2: layers >= max_window_layers use the window
            n_sliding = 0
        else:  # Mistral 7B v0.1: every layer uses the window
            n_sliding = n_layers
        if window < max_ctx and n_sliding:
            kw.update(sliding_window=window, n_sliding_layers=n_sliding)

    chunk = cfg.get("attention_chunk_size")
    if chunk and model_type.startswith("llama4"):  # iRoPE: 3 of 4 layers attend within 8k-token chunks
        no_rope = cfg.get("no_rope_layers")
        n_chunked = sum(1 for x in no_rope if x) if isinstance(no_rope, list) and no_rope else n_layers - n_layers // 4
        kw.update(
            sliding_window=_positive_int(chunk, source, "attention_chunk_size"),
            n_sliding_layers=n_chunked,
            chunked_attention=True,
        )

    quant = top.get("quantization_config") or {}
    if isinstance(quant, dict) and quant.get("quant_method") == "mxfp4":
        kw["native_precision"] = "mxfp4-experts"
    elif isinstance(quant, dict) and quant.get("quant_method") == "fp8":  # block-scaled (DeepSeek-V3) or per tensor
        kw["native_precision"] = "fp8-block" if quant.get("weight_block_size") else "fp8"

    arch = ModelArch(
        id=model_id,
        n_layers=n_layers,
        hidden_size=hidden,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        tied_embeddings=tied,
        max_context_tokens=max_ctx,
        **kw,
    )
    check_arch(arch, source)
    return arch


def check_arch(m: ModelArch, source: str) -> None:
    """Refuse an architecture no engine could build (the cost model would divide by zero or count nonsense)."""
    problems = []
    if m.n_kv_heads > m.n_heads or m.n_heads % m.n_kv_heads:
        problems.append(
            f"num_key_value_heads {m.n_kv_heads} must divide num_attention_heads {m.n_heads} (grouped-query attention)"
        )
    if m.is_moe and not 0 < m.experts_per_token <= m.n_experts:
        problems.append(f"experts per token {m.experts_per_token} must lie in 1..{m.n_experts} (the experts)")
    if m.n_sliding_layers > m.n_layers:
        problems.append(f"{m.n_sliding_layers} sliding-window layers but only {m.n_layers} layers")
    if m.n_moe_layers > m.n_layers:
        problems.append(f"{m.n_moe_layers} MoE layers but only {m.n_layers} layers")
    if problems:
        raise CatalogError(f"{source}: " + "; ".join(problems))


@cache
def _published() -> dict[str, dict[str, Any]]:
    """Published parameter counts and sources for the catalogued models (models.yaml)."""
    path = DATA_DIR / "models.yaml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def model_ids() -> list[str]:
    """Ids of the models shipped in the catalogue."""
    return sorted(p.name[:-5] for p in (DATA_DIR / "models").iterdir() if p.name.endswith(".json"))


def load_config_file(path: Path, model_id: str | None = None) -> ModelArch:
    """Read a config.json from disk into a ModelArch, naming the file on any error."""
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    return arch_from_config(cfg, model_id or (path.parent.name if path.name == "config.json" else path.stem), str(path))


@cache
def load_model(name: str) -> ModelArch:
    """A catalogued model by id, or any config.json path; unknown names suggest the nearest ids."""
    path = Path(name)
    if name.endswith(".json") or path.is_dir() or (path.exists() and path.is_file()):
        if path.is_dir():
            path = path / "config.json"
        return load_config_file(path)
    key = name.lower()
    ids = model_ids()
    if key not in ids:
        raise unknown_name_error("model", name, ids)
    file = DATA_DIR / "models" / f"{key}.json"
    arch = arch_from_config(json.loads(file.read_text()), key, f"catalogue models/{key}.json")
    published = _published().get(key, {})
    return ModelArch(**{**arch.__dict__, "published": published})
