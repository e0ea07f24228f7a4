"""tokenomy against NVIDIA AIConfigurator (the peer planner) on the shipped measurement rows both can predict.

For every shipped measurement row (`catalog/data/measurements*.csv`) that AIConfigurator can express, both tools
predict the measured figure; the script prints the median and p90 absolute percentage error (|pred − meas| / meas)
per accelerator family and per model family (`costmodel/intervals.py`), then per metric and load kind, for
AIConfigurator, for tokenomy out of sample (`tokenomy validate --cv` machinery: a row of accelerator family G is
predicted by profiles refitted without G, a row of model family M by profiles refitted without M) and for
tokenomy in sample (the shipped profiles, fitted on most of these rows — labelled as such). AIConfigurator was
not fitted on these rows, so the honest comparison is tokenomy out of sample against AIConfigurator.

How a row becomes an AIConfigurator query (`row_query`):
- model: AIConfigurator's bundled HF config where it has one, else a folder holding tokenomy's config.json;
  system: H100-SXM → h100_sxm, B200 → b200_sxm, GB200 → gb200, … (no GH200, no AMD: skipped);
  backend: tensorrt-llm → trtllm, vllm, sglang, at AIConfigurator's current performance-database version;
- weights bf16/fp16 → bfloat16, fp8 → fp8, fp8-block → fp8_block, nvfp4 (TRT-LLM's "FP4") → nvfp4 (MoE experts
  alike), gpt-oss's native checkpoint → bfloat16 with MXFP4 experts w4a8_mxfp4_mxfp8 on Blackwell, w4a16_mxfp4 on
  Hopper (as TensorRT-LLM runs them); experts split tp-ways with no expert parallelism, TensorRT-LLM's default;
  the KV cache in the precision tokenomy resolves for the row (the file's kv_precision, or the engine's default);
- offline throughput rows: AIConfigurator's aggregated (in-flight batching) estimate at the largest
  context-token budget its own agg sweep tries (max(8192, 2·isl), bounded by the batch), over the batch
  sizes of its own agg schedule up to 1024: powers of two until the KV cache or memory overflows, then a
  bisection; the best tokens/s among the points that fit, times replicas (num_gpus / (tp·pp));
- fixed-concurrency rows: the aggregated estimate at batch = concurrency (TTFT, TPOT/ITL, e2e, throughput);
- Poisson-rate rows, ShareGPT-length rows and metrics it does not estimate are skipped with the reason.

AIConfigurator runs in a subprocess of `--aic-python` (default: this interpreter), answers are cached in a
JSON file (default: <tempdir>/tokenomy_vs_aiconfigurator.json) so a rerun is quick. Goal (issue 13):
tokenomy's out-of-sample median error lower in every group. Last line:
`vs_aiconfigurator_groups_ahead: K/N` (groups where tokenomy's median is lower / groups compared).

Run: python benchmarks/vs_aiconfigurator.py [--aic-python PATH] [--sample N --seed S] [--no-cv]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------- mapping tables
# tokenomy accelerator id -> AIConfigurator system (aiconfigurator_core/systems/*.yaml)
AIC_SYSTEMS = {
    "H100-SXM": "h100_sxm",
    "H100-PCIE": "h100_pcie",
    "H200-SXM": "h200_sxm",
    "B200": "b200_sxm",
    "B300": "b300_sxm",
    "GB200": "gb200",
    "GB300": "gb300",
    "A100-SXM-80GB": "a100_sxm",
    "A100-PCIE-80GB": "a100_pcie",
    "L40S": "l40s",
    "L4": "l4",
    "A30": "a30",
    "RTX-PRO-6000": "rtx_pro_6000_server",
}
AIC_BACKENDS = {"tensorrt-llm": "trtllm", "vllm": "vllm", "sglang": "sglang"}
# tokenomy model id -> the HF config AIConfigurator bundles (aiconfigurator_core/model_configs); others get
# tokenomy's own config.json in a folder.
AIC_BUNDLED_MODELS = {
    "llama-3.1-8b": "meta-llama/Meta-Llama-3.1-8B",
    "llama-3.1-70b": "meta-llama/Meta-Llama-3.1-70B",
    "llama-3.1-405b": "meta-llama/Meta-Llama-3.1-405B",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "mixtral-8x22b": "mistralai/Mixtral-8x22B-v0.1",
    "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-32b": "Qwen/Qwen3-32B",
    "llama-4-scout-17b-16e": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "llama-4-maverick-17b-128e": "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "gpt-oss-20b": "openai/gpt-oss-20b",
    "gpt-oss-120b": "openai/gpt-oss-120b",
    "deepseek-v3": "deepseek-ai/DeepSeek-V3",
}
# tokenomy weight format -> AIConfigurator GEMM quant mode (16-bit formats share one tensor-core rate); gpt-oss's
# native checkpoint keeps attention in bf16
AIC_GEMM = {
    "bf16": "bfloat16",
    "fp16": "bfloat16",
    "fp8": "fp8",
    "fp8-block": "fp8_block",
    "nvfp4": "nvfp4",
    "mxfp4-experts": "bfloat16",
}
# gpt-oss's MXFP4 experts as the engine runs them (Deployment.expert_kernel): MXFP8 activations where the GPU has FP4
# tensor cores and the engine's profile says so (TensorRT-LLM), else bf16
AIC_MXFP4_MOE = {True: "w4a8_mxfp4_mxfp8", False: "w4a16_mxfp4"}
AIC_KV = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "int8": "int8"}
OFFLINE_METRICS = ("output_throughput", "total_throughput", "request_throughput")
CONCURRENCY_METRICS = OFFLINE_METRICS + ("mean_ttft", "mean_itl", "mean_tpot", "mean_e2e")
MAX_BATCH = 1024  # the top of AIConfigurator's own agg batch schedule (sdk/sweep.py)
MAX_NORMAL_CTX_TOKENS = 8192  # its agg sweep's context-token budget: up to max(8192, 2·isl)


@dataclass(frozen=True)
class AicQuery:
    """One AIConfigurator aggregated-serving question: a deployment, a request shape, and a batch (0: sweep)."""

    model: str
    system: str
    backend: str
    isl: int
    osl: int
    tp: int
    pp: int
    gemm: str
    kvcache: str
    moe: str | None  # None for dense models
    batch: int = 0  # 0: offline, sweep for the highest throughput that fits

    def key(self) -> str:
        """Stable cache key."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class RowQuery:
    """A measurement row as an AIConfigurator query, with how to read its answer back."""

    query: AicQuery
    metric: str
    replicas: int


def mxfp4_moe(gpu_id: str, engine: str) -> str:
    """AIConfigurator's MoE quant mode for MXFP4 experts on this accelerator under this engine (AIC_MXFP4_MOE)."""
    from tokenomy.catalog.accelerators import load_accelerator
    from tokenomy.catalog.profiles import load_profile

    mxfp8 = load_accelerator(gpu_id).supports("fp4") and load_profile(engine).mxfp4_moe_mxfp8_activations
    return AIC_MXFP4_MOE[mxfp8]


def row_query(row: Any, kv_dtype: str, model_path: str, is_moe: bool) -> RowQuery | str:
    """The AIConfigurator query for a measurement row, or the reason it cannot express it.

    `kv_dtype` is the KV precision tokenomy resolves for the row, `model_path` the HF id or config folder."""
    from tokenomy.costmodel.quant import canonical_precision

    system = AIC_SYSTEMS.get(row.gpu.upper())
    if system is None:
        return f"no AIConfigurator system for accelerator {row.gpu}"
    backend = AIC_BACKENDS.get(row.engine)
    if backend is None:
        return f"AIConfigurator does not model engine {row.engine}"
    try:
        fmt = canonical_precision(row.precision)
    except Exception:  # noqa: BLE001 - any unknown name is a skip, not a crash
        return f"unknown precision {row.precision}"
    gemm = AIC_GEMM.get(fmt)
    if gemm is None:
        return f"no AIConfigurator GEMM mode for precision {fmt}"
    kv = AIC_KV.get(kv_dtype)
    if kv is None:
        return f"no AIConfigurator KV-cache mode for {kv_dtype}"
    if not row.isl or not row.osl or row.dataset not in ("", "fixed"):
        return "no fixed isl/osl (AIConfigurator takes one request shape)"
    if row.load_kind == "offline":
        if row.metric not in OFFLINE_METRICS:
            return f"metric {row.metric} under offline load is not estimated"
        batch = 0
    elif row.load_kind in ("concurrency", "batch"):
        if row.metric not in CONCURRENCY_METRICS:
            return f"metric {row.metric} under {row.load_kind} load is not estimated"
        if not row.load_value or row.load_value < 1:
            return f"{row.load_kind} load without a positive load_value"
        batch = int(round(row.load_value))
    else:
        return f"AIConfigurator estimates a fixed concurrency, not {row.load_kind} load"
    n_gpus = row.tp * row.pp
    replicas = max(row.num_gpus // n_gpus, 1)
    if batch:
        batch = max(int(round(batch / replicas)), 1)
    query = AicQuery(
        model=model_path,
        system=system,
        backend=backend,
        isl=int(row.isl),
        osl=int(row.osl),
        tp=int(row.tp),
        pp=int(row.pp),
        gemm=gemm,
        kvcache=kv,
        moe=(mxfp4_moe(row.gpu, row.engine) if fmt == "mxfp4-experts" else gemm) if is_moe else None,
        batch=batch,
    )
    return RowQuery(query, row.metric, replicas)


def answer_value(rq: RowQuery, answer: dict[str, Any]) -> float | None:
    """The row's metric (base units: tokens/s, req/s, s) from an AIConfigurator answer (ms, per replica)."""
    if not answer.get("ok"):
        return None
    q = rq.query
    out_tps = float(answer["tokens_s"]) * rq.replicas
    values = {
        "output_throughput": out_tps,
        "total_throughput": out_tps * (q.isl + q.osl) / q.osl,
        "request_throughput": float(answer["seq_s"]) * rq.replicas,
        "mean_ttft": float(answer["ttft_ms"]) / 1e3,
        "mean_itl": float(answer["tpot_ms"]) / 1e3,
        "mean_tpot": float(answer["tpot_ms"]) / 1e3,
        "mean_e2e": float(answer["request_latency_ms"]) / 1e3,
    }
    value = values.get(rq.metric)
    return value if value is not None and math.isfinite(value) and value > 0 else None


# ---------------------------------------------------------------------------------------------- statistics
def ape(predicted: float, measured: float) -> float:
    """Absolute percentage error |predicted − measured| / |measured| (as a fraction)."""
    return abs(predicted - measured) / abs(measured)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between order statistics (numpy's default)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class ErrorStats:
    """Median and p90 APE of n predictions."""

    n: int
    median_ape: float
    p90_ape: float

    @classmethod
    def of(cls, apes: Sequence[float]) -> ErrorStats:
        return cls(len(apes), percentile(apes, 50), percentile(apes, 90))


@dataclass
class Scored:
    """One row both tools were asked about: the measurement and each predictor's value (None: not predicted)."""

    row_id: str
    accelerator_family: str
    model_family: str
    measured: float
    aic: float | None
    tokenomy_in_sample: float | None
    # grouping name ("accelerator_family", "model_family") -> prediction with that group held out
    tokenomy_cv: dict[str, float] = field(default_factory=dict)
    metric: str = ""  # the row's metric and load kind ('mean_ttft | concurrency'), for the per-metric table


@dataclass(frozen=True)
class GroupComparison:
    """One group's errors on the rows every compared predictor answered."""

    grouping: str
    group: str
    aic: ErrorStats
    tokenomy_cv: ErrorStats | None
    tokenomy_in_sample: ErrorStats

    def tokenomy_ahead(self, out_of_sample: bool = True) -> bool:
        """tokenomy's median APE is lower than AIConfigurator's (out of sample, or in sample)."""
        tok = self.tokenomy_cv if out_of_sample else self.tokenomy_in_sample
        return tok is not None and tok.median_ape < self.aic.median_ape


def compare_groups(scored: Iterable[Scored], use_cv: bool = True) -> list[GroupComparison]:
    """Per accelerator family and per model family: errors on the rows AIConfigurator and tokenomy (in sample,
    and with `use_cv` out of sample with that grouping held out) all predicted."""
    rows = list(scored)
    out: list[GroupComparison] = []
    for grouping in ("accelerator_family", "model_family"):
        for group in sorted({getattr(s, grouping) for s in rows}):
            both = [
                s
                for s in rows
                if getattr(s, grouping) == group
                and s.aic is not None
                and s.tokenomy_in_sample is not None
                and (not use_cv or grouping in s.tokenomy_cv)
            ]
            if not both:
                continue
            cv = ErrorStats.of([ape(s.tokenomy_cv[grouping], s.measured) for s in both]) if use_cv else None
            out.append(
                GroupComparison(
                    grouping,
                    group,
                    aic=ErrorStats.of([ape(s.aic, s.measured) for s in both if s.aic is not None]),
                    tokenomy_cv=cv,
                    tokenomy_in_sample=ErrorStats.of(
                        [ape(s.tokenomy_in_sample, s.measured) for s in both if s.tokenomy_in_sample is not None]
                    ),
                )
            )
    return out


def groups_ahead(groups: Sequence[GroupComparison], out_of_sample: bool = True) -> tuple[int, int]:
    """(groups where tokenomy's median APE is lower than AIConfigurator's, groups compared)."""
    return sum(g.tokenomy_ahead(out_of_sample) for g in groups), len(groups)


# ---------------------------------------------------------------------------------------------- AIC worker
def _batch_schedule() -> list[int]:
    """AIConfigurator's own agg batch schedule (sdk/sweep.py: _DEFAULT_AGG_BATCH_SCHEDULE)."""
    return (
        list(range(1, 16))
        + list(range(16, 32, 4))
        + list(range(32, 64, 8))
        + list(range(64, 256, 16))
        + list(range(256, 512, 32))
        + list(range(512, 1024, 256))
        + [1024]
    )


def ctx_tokens_for(isl: int, batch: int) -> int:
    """Context-token budget per step: the largest AIConfigurator's agg sweep tries (max(8192, 2·isl)), bounded
    by its balance guard (batch − ceil(ctx / isl) ≥ 1 above batch 1; one prompt at batch 1)."""
    if batch <= 1:
        return isl
    return max(min(max(MAX_NORMAL_CTX_TOKENS, 2 * isl), (batch - 1) * isl), isl)


def _worker_model_path(model: str) -> str:
    """An HF id AIConfigurator bundles a config for but would still download (not in its DefaultHFModels): a
    folder holding that bundled config. Other ids and folders are passed through."""
    from aiconfigurator_core.sdk import common, utils

    if os.path.isdir(model) or model in common.DefaultHFModels:
        return model
    bundled = Path(str(utils._get_model_config_path())) / f"{model.replace('/', '--')}_config.json"
    if not bundled.exists():
        return model
    folder = Path(tempfile.gettempdir()) / "tokenomy_aic_bundled" / model.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(bundled.read_text())
    return str(folder)


def _worker_estimate(q: dict[str, Any], versions: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Run one query in AIConfigurator (this runs in its interpreter): a point, or the best offline sweep point."""
    from aiconfigurator.cli.api import cli_estimate
    from aiconfigurator_core.sdk.perf_database import get_latest_database_version

    model = _worker_model_path(q["model"])
    vkey = (q["system"], q["backend"])
    if vkey not in versions:  # resolving it parses every system YAML: seconds, so once per system/backend
        versions[vkey] = get_latest_database_version(system=q["system"], backend=q["backend"])
    if versions[vkey] is None:
        return {"ok": False, "error": f"no performance database for {q['system']}/{q['backend']}"}

    def point(batch: int) -> dict[str, Any] | None:
        r = cli_estimate(
            model,
            q["system"],
            backend_name=q["backend"],
            backend_version=versions[vkey],
            isl=q["isl"],
            osl=q["osl"],
            batch_size=batch,
            ctx_tokens=ctx_tokens_for(q["isl"], batch),
            tp_size=q["tp"],
            pp_size=q["pp"],
            moe_tp_size=q["tp"] if q["moe"] else None,
            moe_ep_size=1 if q["moe"] else None,
            gemm_quant_mode=q["gemm"],
            kvcache_quant_mode=q["kvcache"],
            moe_quant_mode=q["moe"],
        )
        if r.kv_cache_warning:
            return None
        raw = r.raw
        return {
            "ok": True,
            "batch": batch,
            "tokens_s": float(raw["tokens/s"]),
            "seq_s": float(raw["seq/s"]),
            "ttft_ms": float(r.ttft),
            "tpot_ms": float(r.tpot),
            "request_latency_ms": float(raw.get("request_latency", 0.0)),
            "version": versions[vkey],
        }

    def safe_point(batch: int) -> dict[str, Any] | None:
        try:
            return point(batch)
        except RuntimeError as exc:
            if str(exc).startswith("OOM"):
                return None
            raise

    if q["batch"]:
        p = safe_point(q["batch"])
        return p or {"ok": False, "error": f"batch {q['batch']} does not fit memory or the KV cache"}
    schedule = _batch_schedule()
    fits: list[dict[str, Any]] = []
    first_bad = None
    b = 1
    while b <= MAX_BATCH:  # powers of two until it no longer fits
        p = safe_point(b)
        if p is None:
            first_bad = b
            break
        fits.append(p)
        b *= 2
    if not fits:
        return {"ok": False, "error": "one request does not fit memory or the KV cache"}
    if first_bad is not None:  # bisect the schedule between the last fit and the first overflow
        lo, hi = fits[-1]["batch"], first_bad
        while True:
            inner = [s for s in schedule if lo < s < hi]
            if not inner:
                break
            mid = inner[len(inner) // 2]
            p = safe_point(mid)
            if p is None:
                hi = mid
            else:
                fits.append(p)
                lo = mid
    return max(fits, key=lambda p: p["tokens_s"])


def worker_main() -> None:
    """Answer JSON-line queries on stdin with JSON lines on stdout (AIConfigurator's own prints go to stderr)."""
    import importlib.metadata
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything AIConfigurator prints lands on stderr, not in the protocol
    out.write(json.dumps({"aiconfigurator": importlib.metadata.version("aiconfigurator")}) + "\n")
    out.flush()
    versions: dict[tuple[str, str], str] = {}
    for line in sys.stdin:
        q = json.loads(line)
        start = time.perf_counter()
        try:
            ans = _worker_estimate(q, versions)
        except Exception as exc:  # noqa: BLE001 - AIConfigurator's own refusal becomes a skip reason
            ans = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
        ans["seconds"] = time.perf_counter() - start
        out.write(json.dumps(ans) + "\n")
        out.flush()


class AicClient:
    """AIConfigurator in a subprocess of another interpreter, with a JSON answer cache."""

    def __init__(self, python: str, cache_path: Path) -> None:
        self.proc = subprocess.Popen(
            [python, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        hello = json.loads(self._readline())
        self.version: str = hello["aiconfigurator"]
        self.cache_path = cache_path
        self.cache: dict[str, dict[str, Any]] = {}
        if cache_path.exists():
            try:
                stored = json.loads(cache_path.read_text())
                if stored.get("aiconfigurator") == self.version:
                    self.cache = stored.get("answers", {})
            except (OSError, ValueError):
                self.cache = {}
        self.calls = 0
        self.hits = 0
        self.call_seconds = 0.0

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("AIConfigurator worker exited")
        return line

    def ask(self, q: AicQuery) -> dict[str, Any]:
        """The cached or fresh answer to `q`."""
        key = q.key()
        self.hits += key in self.cache
        if key not in self.cache:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(asdict(q)) + "\n")
            self.proc.stdin.flush()
            ans = json.loads(self._readline())
            self.calls += 1
            self.call_seconds += ans.get("seconds", 0.0)
            self.cache[key] = ans
            if self.calls % 50 == 0:  # an interrupted run keeps most of its answers
                self.save()
        return self.cache[key]

    def save(self) -> None:
        """Write the answers to the cache file (a file that cannot be written is reported, not fatal)."""
        try:
            self.cache_path.write_text(json.dumps({"aiconfigurator": self.version, "answers": self.cache}))
        except OSError as exc:
            print(f"warning: --cache {self.cache_path}: not written ({exc.strerror})")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def aic_available(python: str) -> bool:
    """Whether `python` can import aiconfigurator."""
    try:
        done = subprocess.run([python, "-c", "import aiconfigurator.cli.api"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# ---------------------------------------------------------------------------------------------- tokenomy side
def _model_path(model_id: str, models_dir: Path) -> str:
    """AIConfigurator's bundled HF id for the model, else a folder holding tokenomy's config.json."""
    if model_id in AIC_BUNDLED_MODELS:
        return AIC_BUNDLED_MODELS[model_id]
    from tokenomy.catalog.models import DATA_DIR

    src = DATA_DIR / "models" / f"{model_id}.json"
    if not src.exists():
        return ""
    cfg = json.loads(src.read_text())
    if cfg.get("architectures") == ["MistralForCausalLM"] and not cfg.get("sliding_window"):
        # AIConfigurator has no Mistral class; without a sliding window Mistral's blocks are Llama's
        cfg["architectures"] = ["LlamaForCausalLM"]
    folder = models_dir / model_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return str(folder)


def tokenomy_predictions(rows: list[Any], use_cv: bool) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """tokenomy's in-sample predictions per row id, and out-of-sample ones per grouping and row id
    (leave-one-group-out refits of `calibrate/validate.py: cross_validate` for accelerator and model family)."""
    from tokenomy.calibrate.fit import OTHER_ENGINES
    from tokenomy.calibrate.validate import GROUPINGS, cross_validate, validate
    from tokenomy.catalog.profiles import load_profile

    in_sample = {r["id"]: r["predicted"] for r in validate(rows)["rows"] if "predicted" in r}
    held: dict[str, dict[str, float]] = {}
    if use_cv:
        bases = {name: load_profile(name) for name in ("tensorrt-llm", *OTHER_ENGINES)}
        groupings = {k: GROUPINGS[k] for k in ("accelerator_family", "model_family")}
        cv = cross_validate(rows, bases, groupings=groupings, progress=lambda s: print(f"  cv: {s}", flush=True))
        held = {g: {row.id: pred for _, row, pred in items} for g, items in cv.held_out.items()}
    return in_sample, held


def _kv_dtype(row: Any) -> str:
    """The KV precision tokenomy resolves for a row (its kv_precision, or the engine's default)."""
    from tokenomy.calibrate.predict import row_deployment
    from tokenomy.catalog.profiles import load_profile

    try:
        profile = load_profile(row.engine)
    except Exception:  # noqa: BLE001
        profile = load_profile("generic")
    return row_deployment(row, profile).kv_dtype


def _is_moe(model_id: str) -> bool:
    from tokenomy.catalog.models import load_model

    return load_model(model_id).is_moe


# ---------------------------------------------------------------------------------------------- report
def _pct(s: ErrorStats | None, attr: str) -> str:
    return "—" if s is None else f"{getattr(s, attr):.1%}"


def render(groups: Sequence[GroupComparison], overall: Sequence[GroupComparison]) -> Iterator[str]:
    """The comparison table as lines."""
    labels = [f"{g.grouping.replace('_family', '')}: {g.group}" for g in (*overall, *groups)]
    width = max([len("group"), *map(len, labels)]) + 1
    head = (
        f"{'group':<{width}}{'n':>5} | {'AIC med':>8}{'p90':>8} | {'tok-CV med':>10}{'p90':>8} | "
        f"{'tok-in med':>10}{'p90':>8} | ahead (CV)"
    )
    yield head
    yield "-" * len(head)
    for label, g in zip(labels, (*overall, *groups), strict=True):
        ahead = "—" if g.tokenomy_cv is None else ("yes" if g.tokenomy_ahead() else "no")
        yield (
            f"{label:<{width}}{g.aic.n:>5} | {_pct(g.aic, 'median_ape'):>8}{_pct(g.aic, 'p90_ape'):>8} | "
            f"{_pct(g.tokenomy_cv, 'median_ape'):>10}{_pct(g.tokenomy_cv, 'p90_ape'):>8} | "
            f"{_pct(g.tokenomy_in_sample, 'median_ape'):>10}{_pct(g.tokenomy_in_sample, 'p90_ape'):>8} | {ahead}"
        )


def overall_rows(scored: Sequence[Scored], use_cv: bool) -> list[GroupComparison]:
    """All rows as one group, once per held-out grouping (the CV column differs by grouping)."""
    out = []
    for grouping in ("accelerator_family", "model_family") if use_cv else ("accelerator_family",):
        flat = [Scored(s.row_id, "all", "all", s.measured, s.aic, s.tokenomy_in_sample, s.tokenomy_cv) for s in scored]
        for g in compare_groups(flat, use_cv):
            if g.grouping == grouping:
                label = f"all ({'held out by ' + grouping.replace('_', ' ') if use_cv else 'in sample only'})"
                out.append(GroupComparison("overall", label, g.aic, g.tokenomy_cv, g.tokenomy_in_sample))
    return out


def render_metrics(scored: Sequence[Scored]) -> Iterator[str]:
    """Per metric and load kind: AIConfigurator against tokenomy held out by accelerator family, on the rows both
    predicted."""
    yield f"{'metric | load':<34}{'n':>5} | {'AIC med':>8}{'p90':>8} | {'tok-CV med':>10}{'p90':>8}"
    for metric in sorted({s.metric for s in scored}):
        both = [s for s in scored if s.metric == metric and s.aic is not None and "accelerator_family" in s.tokenomy_cv]
        if not both:
            continue
        aic = ErrorStats.of([ape(s.aic, s.measured) for s in both if s.aic is not None])
        tok = ErrorStats.of([ape(s.tokenomy_cv["accelerator_family"], s.measured) for s in both])
        yield (
            f"{metric:<34}{len(both):>5} | {_pct(aic, 'median_ape'):>8}{_pct(aic, 'p90_ape'):>8} | "
            f"{_pct(tok, 'median_ape'):>10}{_pct(tok, 'p90_ape'):>8}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aic-python", default=sys.executable, help="interpreter that can import aiconfigurator")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tokenomy_vs_aiconfigurator.json")
    parser.add_argument("--sample", type=int, default=0, help="compare a random sample of N rows (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop asking AIConfigurator after this long")
    parser.add_argument("--no-cv", action="store_true", help="skip tokenomy's cross-validation (in sample only)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    if not aic_available(args.aic_python):
        hint = "install aiconfigurator (pip install aiconfigurator) or pass --aic-python"
        print(f"aiconfigurator is not importable by {args.aic_python}: {hint}")
        print("vs_aiconfigurator_groups_ahead: n/a")
        return 0

    from tokenomy.calibrate.measurements import read_measurement_files, shipped_measurement_files
    from tokenomy.costmodel.intervals import accelerator_family, model_family

    started = time.perf_counter()
    paths = shipped_measurement_files()  # every shipped file, as `tokenomy validate` with no FILE reads them
    rows = read_measurement_files(paths).rows
    print(f"{len(rows)} rows in {', '.join(p.name for p in paths)}")
    picked = rows
    if args.sample and args.sample < len(rows):
        picked = random.Random(args.seed).sample(rows, args.sample)
        print(f"sampled {len(picked)} rows (seed {args.seed})")

    client = AicClient(args.aic_python, args.cache)
    print(f"AIConfigurator {client.version} via {args.aic_python}; cache {args.cache} ({len(client.cache)} answers)")
    models_dir = args.cache.parent / f"{args.cache.stem}_models"  # stable: the folder is part of the cache key
    skipped: dict[str, int] = {}
    aic_values: dict[str, float] = {}
    not_asked = 0
    aic_started = time.perf_counter()
    for row in picked:
        try:
            rq = row_query(row, _kv_dtype(row), _model_path(row.model, models_dir), _is_moe(row.model))
        except Exception as exc:  # noqa: BLE001 - a row tokenomy cannot resolve is a skip too
            rq = f"cannot resolve the row: {exc}"
        if isinstance(rq, str):
            skipped[rq] = skipped.get(rq, 0) + 1
            continue
        if rq.query.key() not in client.cache and time.perf_counter() - aic_started > args.budget_s:
            not_asked += 1
            continue
        try:
            ans = client.ask(rq.query)
        except (RuntimeError, ValueError) as exc:  # the worker died or wrote something that is not JSON
            client.save()
            print(f"error: --aic-python {args.aic_python}: the AIConfigurator subprocess failed ({exc})")
            return 1
        value = answer_value(rq, ans)
        if value is None:
            reason = f"AIConfigurator: {ans.get('error', 'no value')}"
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            aic_values[row.id] = value
    client.save()
    client.close()
    aic_s = time.perf_counter() - aic_started
    per_call = f" ({client.call_seconds / client.calls * 1e3:.0f} ms per query)" if client.calls else ""
    print(f"AIConfigurator: {client.calls} new queries in {aic_s:.0f} s{per_call}; {client.hits} rows from the cache")

    tok_started = time.perf_counter()
    in_sample, held = tokenomy_predictions(rows, not args.no_cv)
    print(
        f"tokenomy: predictions{' and cross-validation' if held else ''} in {time.perf_counter() - tok_started:.0f} s"
    )

    scored = [
        Scored(
            r.id,
            accelerator_family(r.gpu),
            model_family(r.model),
            r.value,
            aic_values.get(r.id),
            in_sample.get(r.id),
            {g: preds[r.id] for g, preds in held.items() if r.id in preds},
            f"{r.metric} | {r.load_kind}",
        )
        for r in picked
    ]
    print()
    print(f"rows compared from {len(picked)}: AIConfigurator predicted {len(aic_values)}, ", end="")
    print(f"tokenomy in sample {sum(s.tokenomy_in_sample is not None for s in scored)}, ", end="")
    for g in held:
        print(f"tokenomy held out by {g.replace('_', ' ')} {sum(g in s.tokenomy_cv for s in scored)}, ", end="")
    print(f"both {sum(s.aic is not None and s.tokenomy_in_sample is not None for s in scored)}")
    if not_asked:
        print(f"  not asked (past --budget-s {args.budget_s:.0f} s; rerun to continue from the cache): {not_asked}")
    for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
        print(f"  AIConfigurator skipped {n}: {reason}")
    use_cv = bool(held)
    groups = compare_groups(scored, use_cv)
    print()
    print("APE = |predicted − measured| / measured, on the rows every column predicted; tok-CV: tokenomy with")
    print("the row's group held out of the fit (out of sample); tok-in: shipped profiles, fitted on these rows")
    for line in render(groups, overall_rows(scored, use_cv)):
        print(line)
    if use_cv:
        print()
        for line in render_metrics(scored):
            print(line)
    k, n = groups_ahead(groups, use_cv)
    k_in, _ = groups_ahead(groups, out_of_sample=False)
    print(f"\ngroups where tokenomy in sample is ahead: {k_in}/{n}; total time {time.perf_counter() - started:.0f} s")
    print(f"vs_aiconfigurator_groups_ahead: {k}/{n}{'' if use_cv else ' (in sample: --no-cv)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
