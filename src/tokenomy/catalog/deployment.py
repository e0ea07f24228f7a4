"""The deployment that catalogue names stand for: model, accelerator and engine looked up, precision resolved, tp
chosen by the cost model when not given."""

from __future__ import annotations

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment, auto_tensor_parallel


def named_deployment(
    model_id: str,
    gpu_id: str,
    tp: int | None,
    pp: int,
    precision: str,
    kv_precision: str = "auto",
    engine: str = "vllm",
    max_context: int = 0,
    accelerators_file: str | None = None,
    gpus: int | None = None,
    isl: int = 1024,
    osl: int = 256,
) -> tuple[Deployment, int]:
    """The deployment for one precision, and the total GPU count (tp, when not given, from auto_tensor_parallel on
    `gpus` or 8 GPUs at isl/osl); CatalogError for an unknown name or a GPU count that is not a multiple of tp × pp."""
    model = load_model(model_id)
    gpu = load_accelerator(gpu_id, accelerators_file)
    profile = load_profile(engine)
    precision = precision.strip()
    if precision == "native":  # the checkpoint's own format (bf16 for most, MXFP4 experts for gpt-oss)
        precision = model.native_precision
    base = Deployment(model, gpu, tp or 1, pp, precision, kv_precision, profile, max_context)
    if tp is None:
        base = auto_tensor_parallel(base, gpus or 8, isl, osl)
    n_gpus = gpus or base.n_gpus
    if n_gpus < base.n_gpus or n_gpus % base.n_gpus:
        raise CatalogError(f"--gpus {n_gpus} is not a multiple of tp × pp = {base.n_gpus}")
    return base, n_gpus
