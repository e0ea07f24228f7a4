"""Accelerators: memory, bandwidth, peak FLOP rates, interconnect, power and price.

Figures live in `data/accelerators.yaml`, each with its source. A user YAML file in the same
shape adds entries or overrides catalogued ones (for example a CPU host from `calibrate --host`).
`data/kernel_rates.csv` holds the engine's own kernel rates NVIDIA measured per accelerator (AIConfigurator's
collected TensorRT-LLM tables, written by scripts/kernel_rates_aic.py); relative_achievable prefers them.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.models import DATA_DIR

USER_FILE_ENV = "TOKENOMY_ACCELERATORS"


# The accelerator whose microbenchmark fractions the engine profiles' efficiencies are relative to: profiles were
# fitted mostly on Hopper rows, so an efficiency is "of the datasheet peak, as on an H100 SXM" (relative_achievable).
REFERENCE_ACCELERATOR = "H100-SXM"
# Where an accelerator has no GEMM fraction for a compute type, the nearest type it has one for, in this order.
TFLOPS_FRACTION_FALLBACK = ("fp8", "bf16", "fp16", "int8", "fp4")


class Prices(BaseModel):
    model_config = ConfigDict(extra="allow")
    on_demand: float | None = Field(default=None, ge=0)
    reserved: float | None = Field(default=None, ge=0)


class Accelerator(BaseModel):
    """One accelerator (or host) as the cost model sees it; units in decimal GB, GB/s and TFLOP/s."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    name: str = ""
    vendor: str = ""
    memory_gb: float = Field(gt=0)
    memory_bandwidth_gb_s: float = Field(gt=0)
    dense_tflops: dict[str, float | None]  # null = not published; dropped
    # One-token (matrix × vector) steps' rate per compute type where it differs from dense_tflops: a CPU host's
    # llama.cpp decode runs other kernels than its batched prompt steps (calibrate --host times both). Empty:
    # one-token steps run at the dense rate (every GPU entry: their small-M steps are bandwidth-bound anyway).
    matvec_tflops: dict[str, float] = {}
    # What published microbenchmarks reach of the datasheet peaks above (sources["achievable"] names each figure and
    # its URL): the best STREAM kernel's bandwidth / memory_bandwidth_gb_s, and the best vendor-BLAS (cuBLASLt,
    # hipBLASLt) large-GEMM rate per compute type / dense_tflops. The cost model scales an accelerator's peaks by
    # these relative to the reference accelerator's (relative_achievable); None / {}: no published figure, scaled as
    # the reference is. Priors from microbenchmarks, never fitted on measurement rows.
    achievable_bandwidth_fraction: float | None = Field(default=None, gt=0, le=1)
    achievable_tflops_fraction: dict[str, float] = {}
    # How much longer Python/PyTorch host work (an engine's Python step loop) takes on this system's host CPU than on
    # the reference DGX H100's Intel Xeon Platinum 8480C (1 = as long); a published measurement (sources["host"]).
    host_overhead_factor: float = Field(default=1.0, gt=0)
    interconnect_gb_s: float = Field(default=32.0, gt=0)
    interconnect: str = ""
    tdp_w: float | None = Field(default=None, gt=0)
    usd_per_hour: Prices = Prices()
    sources: dict[str, str] = Field(default_factory=dict, validate_default=True)  # validated: achievable needs one
    as_of: str = ""
    notes: str = ""

    @field_validator("dense_tflops")
    @classmethod
    def _positive_rates(cls, rates: dict[str, float | None]) -> dict[str, float]:
        rates = {k: v for k, v in rates.items() if v is not None}
        bad = {k: v for k, v in rates.items() if v <= 0}
        if bad:
            raise ValueError(f"rates must be positive, got {bad}")
        if not rates:
            raise ValueError("needs at least one compute type, e.g. bf16")
        return {k.lower(): float(v) for k, v in rates.items()}

    @field_validator("achievable_tflops_fraction")
    @classmethod
    def _fractions(cls, fractions: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in fractions.items() if not 0 < v <= 1}
        if bad:
            raise ValueError(f"fractions of the datasheet peak must be in (0, 1], got {bad}")
        return {k.lower(): float(v) for k, v in fractions.items()}

    @field_validator("sources")
    @classmethod
    def _achievable_has_source(cls, sources: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        """An achievable fraction is a published microbenchmark's figure: refused without sources.achievable."""
        bandwidth, gemm = info.data.get("achievable_bandwidth_fraction"), info.data.get("achievable_tflops_fraction")
        given = bandwidth is not None or bool(gemm)
        if given and not str(sources.get("achievable", "")).strip():
            raise ValueError(
                "achievable_bandwidth_fraction / achievable_tflops_fraction need their source: add sources.achievable "
                "(the microbenchmark, its figures and URL)"
            )
        if info.data.get("host_overhead_factor", 1.0) != 1.0 and not str(sources.get("host", "")).strip():
            raise ValueError("host_overhead_factor needs its source: add sources.host (the measurement and its URL)")
        return sources

    @field_validator("matvec_tflops")
    @classmethod
    def _positive_matvec_rates(cls, rates: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in rates.items() if v <= 0}
        if bad:
            raise ValueError(f"rates must be positive, got {bad}")
        return {k.lower(): float(v) for k, v in rates.items()}

    def matvec_flops_per_s(self, compute: str) -> float | None:
        """One-token steps' rate for a compute type (same fallbacks as flops_per_s), or None: the dense rate."""
        for key in (compute, "bf16", "fp16", "fp32"):
            if key in self.matvec_tflops:
                return self.matvec_tflops[key] * 1e12
        return None

    @property
    def memory_bytes(self) -> float:
        """HBM/GDDR capacity is quoted in binary gigabytes (an '80 GB' H100 holds 80 GiB)."""
        return self.memory_gb * 2**30

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.memory_bandwidth_gb_s * 1e9

    @property
    def interconnect_bytes_per_s(self) -> float:
        return self.interconnect_gb_s * 1e9

    def flops_per_s(self, compute: str) -> float:
        """Dense peak rate for a compute type, falling back to the 16-bit rate where it has none."""
        for key in (compute, "bf16", "fp16", "fp32"):
            if key in self.dense_tflops:
                return self.dense_tflops[key] * 1e12
        return max(self.dense_tflops.values()) * 1e12

    def tflops_fraction(self, compute: str) -> float | None:
        """Published achievable fraction of the dense peak for a compute type, else for the nearest type this
        accelerator has one for (TFLOPS_FRACTION_FALLBACK), or None: no published GEMM figure."""
        for key in (compute, *TFLOPS_FRACTION_FALLBACK):
            if key in self.achievable_tflops_fraction:
                return self.achievable_tflops_fraction[key]
        return None

    def supports(self, compute: str) -> bool:
        return compute in self.dense_tflops

    def usd_per_gpu_hour(self, pricing: str = "on_demand") -> float | None:
        """$/GPU-hour for a pricing kind ('on_demand' or 'reserved'); reserved falls back to on-demand."""
        value = getattr(self.usd_per_hour, pricing, None)
        return value if value is not None else self.usd_per_hour.on_demand


def _read_yaml_list(path: Path | str, text: str) -> list[Accelerator]:
    """Parse and validate a YAML list of accelerators, naming file, entry and field on error."""
    try:
        raw = yaml.safe_load(text) or []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise CatalogError(f"{path}:{where}: not valid YAML ({exc})") from exc
    if isinstance(raw, dict):
        bad = [k for k, v in raw.items() if not isinstance(v, dict)]
        if bad:
            raise CatalogError(f"{path}: accelerator '{bad[0]}' must be a mapping of fields (memory_gb, …)")
        raw = [{"id": k, **v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise CatalogError(f"{path}: expected a list of accelerators")
    out = []
    for i, entry in enumerate(raw):
        try:
            out.append(Accelerator.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            name = entry.get("id", f"#{i + 1}") if isinstance(entry, dict) else f"#{i + 1}"
            raise CatalogError(f"{path}: accelerator '{name}', field '{field}': {err['msg']}") from exc
    return out


@cache
def _catalogue(user_file: str | None) -> dict[str, Accelerator]:
    path = DATA_DIR / "accelerators.yaml"
    table = {a.id: a for a in _read_yaml_list("catalogue accelerators.yaml", path.read_text())}
    for extra in filter(None, [user_file, os.environ.get(USER_FILE_ENV)]):
        p = Path(extra)
        if not p.is_file():
            raise CatalogError(f"{p}: accelerator file not found")
        table.update({a.id: a for a in _read_yaml_list(p, p.read_text())})
    return table


def accelerators(user_file: str | None = None) -> dict[str, Accelerator]:
    """All known accelerators by id: the catalogue plus a user file (argument or $TOKENOMY_ACCELERATORS)."""
    return _catalogue(user_file)


def load_accelerator(name: str, user_file: str | None = None) -> Accelerator:
    """An accelerator by id (case-insensitive); unknown names suggest the nearest ids."""
    table = accelerators(user_file)
    if name in table:
        return table[name]
    by_lower = {k.lower(): v for k, v in table.items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    raise unknown_name_error("GPU", name, sorted(table))


def use_user_file(path: str) -> None:
    """Make `path` the user accelerators file of every later lookup in this process, as $TOKENOMY_ACCELERATORS
    does (it takes that variable's place), for code that looks accelerators up by id alone (calibration)."""
    accelerators(path)  # a missing or unreadable file fails here, naming it
    os.environ[USER_FILE_ENV] = path
    _catalogue.cache_clear()


KERNEL_RATES_FILE = "kernel_rates.csv"
# Compute types that run on the same tensor cores at the same datasheet rate as a measured one.
_SAME_RATE = {"fp16": "bf16", "int8": "fp8"}


@dataclass(frozen=True)
class KernelRates:
    """One accelerator's kernel rates as its engine's kernels reach them (kernel_rates.csv): a memory-bound GEMV's
    bandwidth (GB/s), the best GEMM rate per compute type (TFLOP/s), the all-reduce latency of small messages
    per tensor-parallel size (µs; documented, not used by the cost model) and the MoE kernel's grouped-GEMM
    efficiency per expert shape (a fraction of that GEMM rate)."""

    gemv_bandwidth_gb_s: float | None = None
    gemm_tflops: dict[str, float] = field(default_factory=dict)
    allreduce_latency_us: dict[int, float] = field(default_factory=dict)
    # large-M grouped-GEMM efficiency of an expert set on one GPU, by (MoE kernel type: a compute type, or
    # 'fp8-block', 'mxfp4-w4a16', 'mxfp4-w4a8'; hidden, inter, topk, experts), then by moe_tp: 1 the whole experts
    # (or, where NVIDIA did not time the whole set on one GPU, its smallest expert-parallel split, and where it timed
    # the whole set slower than its 2-way split, that split: shape 'ep=N'),
    # > 1 each expert's 1/moe_tp slice (tensor-parallel MoE)
    moe_gemm_efficiency: dict[tuple[str, int, int, int, int], dict[int, float]] = field(default_factory=dict)
    # expert sets whose whole-set figure is an expert-parallel split's (the split's GPUs): see moe_split_stand_in
    moe_split_stand_ins: dict[tuple[str, int, int, int, int], int] = field(default_factory=dict)


@cache
def kernel_rates() -> dict[str, KernelRates]:
    """Shipped kernel rates by accelerator id (data/kernel_rates.csv); {} where the file is absent."""
    path = DATA_DIR / KERNEL_RATES_FILE
    return read_kernel_rates(path) if path.is_file() else {}


def read_kernel_rates(path: Path) -> dict[str, KernelRates]:
    """Kernel rates by accelerator id from a kernel_rates.csv; a row it cannot read is an error naming its line."""
    table: dict[str, KernelRates] = {}
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                _add_kernel_rate(table, row)
            except (KeyError, ValueError, TypeError) as exc:
                raise CatalogError(
                    f"{path}:{line}: {row.get('quantity')} row: cannot read {exc} (shape {row.get('shape')!r}, "
                    f"value {row.get('value')!r}); rewrite the file with scripts/kernel_rates_aic.py"
                ) from exc
    return table


def _add_kernel_rate(table: dict[str, KernelRates], row: dict[str, str]) -> None:
    """Add one kernel_rates.csv row to `table` (KeyError/ValueError on a missing field or a non-number)."""
    rates = table.setdefault(row["accelerator"], KernelRates())
    value = float(row["value"])
    if row["quantity"] == "gemv_bandwidth":
        table[row["accelerator"]] = replace(rates, gemv_bandwidth_gb_s=value)
    elif row["quantity"] == "gemm_rate":
        rates.gemm_tflops[row["compute"]] = value
    elif row["quantity"] == "allreduce_latency":
        rates.allreduce_latency_us[int(row["tp"])] = value
    elif row["quantity"] == "moe_gemm_efficiency":
        shape = dict(part.split("=", 1) for part in row["shape"].split())
        key = (row["compute"], *(int(shape[k]) for k in ("hidden", "inter", "topk", "experts")))
        by_tp = rates.moe_gemm_efficiency.setdefault(key, {})
        ep, tp = int(shape.get("ep", 1)), int(shape.get("tp", 1))
        if ep > 1 and tp > 1:
            raise ValueError(f"ep={ep} with tp={tp}: a split stands in for whole experts only")
        split = rates.moe_split_stand_ins.get(key)
        if ep > 1 and (1 not in by_tp or (split is not None and ep < split)):  # the smallest split stands in
            by_tp[1] = value
            rates.moe_split_stand_ins[key] = ep
        elif ep == 1:
            by_tp[tp] = value
            if tp == 1:  # a whole-set timing wins over a split's
                rates.moe_split_stand_ins.pop(key, None)


MOE_IMBALANCE_FILE = "moe_routing_imbalance.csv"


@cache
def moe_imbalance_table() -> dict[float, dict[int, dict[int, float]]]:
    """NVIDIA's timings of TensorRT-LLM's MoE op under power-law routing over balanced, by exponent, expert count and
    expert-parallel size (data/moe_routing_imbalance.csv, written by scripts/moe_imbalance_aic.py); {} without it."""
    path = DATA_DIR / MOE_IMBALANCE_FILE
    table: dict[float, dict[int, dict[int, float]]] = {}
    if not path.is_file():
        return table
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                table.setdefault(float(row["alpha"]), {}).setdefault(int(row["experts"]), {})[int(row["ep"])] = float(
                    row["ratio"]
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise CatalogError(
                    f"{path}:{line}: cannot read {exc}; rewrite the file with scripts/moe_imbalance_aic.py"
                ) from exc
    return table


def moe_routing_imbalance(alpha: float, experts: int, ep: int) -> float:
    """How much longer the busiest GPU's grouped GEMMs take under power-law routing of exponent `alpha` than under
    balanced routing, for `experts` whole experts over `ep` GPUs (moe_imbalance_table: the expert count and ep nearest
    on a log scale, ties to the larger; between timed exponents, and from balanced routing (alpha 0, ratio 1) to the
    smallest, linear in alpha; past the largest, the largest's); 1.0 for alpha 0 or without the table."""
    table = moe_imbalance_table()
    if alpha <= 0 or not table or experts <= 0:
        return 1.0

    def at(timed_alpha: float) -> float:
        by_experts = table[timed_alpha]
        by_ep = by_experts[min(sorted(by_experts, reverse=True), key=lambda e: abs(math.log(e / experts)))]
        return by_ep[min(sorted(by_ep, reverse=True), key=lambda e: abs(math.log(e / max(ep, 1))))]

    points = [(0.0, 1.0), *((a, at(a)) for a in sorted(table))]
    if alpha >= points[-1][0]:
        return points[-1][1]
    (a0, r0), (a1, r1) = next((p, q) for p, q in zip(points, points[1:], strict=False) if p[0] <= alpha <= q[0])
    return r0 + (r1 - r0) * (alpha - a0) / (a1 - a0)


# MoE kernel types of kernel_rates.csv other than a plain compute type -> the compute type whose GEMM rate their
# efficiency is a fraction of: block-scaled FP8 on the FP8 tensor cores; MXFP4 weights with bf16 activations
# (W4A16: Hopper's Triton kernel) or MXFP8 ones (W4A8: Blackwell's) at their activations' rate; `mxfp4-bf16`, another
# engine's MXFP4 × bf16 kernel on FP4 tensor cores, has no timing (Deployment.expert_kernel).
MOE_KERNEL_RATES = {"fp8-block": "fp8", "mxfp4-w4a16": "bf16", "mxfp4-w4a8": "fp8", "mxfp4-bf16": "bf16"}

# Accelerators without NVIDIA's MoE kernel tables that carry a measured one's chip (GH100) or architecture (B300's
# Blackwell Ultra, a labelled proxy: B200): their MoE kernels take its efficiencies, each a fraction of the
# accelerator's own dense rate.
MOE_TABLE_STAND_INS = {"GH200": "H100-SXM", "H100-PCIe": "H100-SXM", "B300": "B200"}
# Accelerators NVIDIA timed no kernels on whose architecture a timed one shares (a labelled proxy): their kernel
# fractions of datasheet peak are the stand-in's, times the ratio of the two parts' published microbenchmark
# fractions from one harness (`achievable_*`; B300 / B200 = Azure's GB300 / GB200 cuBLASLt runs: FP8 1.14, FP4 0.75),
# where both have them. B300's FP4 peak is 1.56× B200's on paper, 1.13× in Azure's GEMM runs.
KERNEL_RATE_STAND_INS = {"B300": "B200"}


def moe_gemm_efficiency(
    gpu_id: str, compute: str, hidden: int, inter: int, topk: int, experts: int, moe_tp: int = 1
) -> float:
    """The fraction of the dense GEMM rate a set of `experts` experts of this shape reaches on one GPU in the
    engine's MoE kernel at large token counts, whole (moe_tp = 1) or as each expert's 1/moe_tp slice under
    tensor-parallel MoE (kernel_rates.csv, NVIDIA's TensorRT-LLM MoE tables; fp16 as bf16, int8 as fp8;
    MOE_TABLE_STAND_INS for a chip measured under another id; `compute` is the MoE kernel type,
    Deployment.expert_kernel), as timed. A slicing not timed takes the nearest
    wider one that was (a thinner slice runs no more efficiently than a wider one: Qwen3-30B-A3B's experts in
    NVFP4 on a B200, 0.26 whole, 0.15 in halves, 0.08 in quarters, take 0.08 in untimed eighths), and 1.0 where the
    accelerator, compute type or shape was not timed at all (a deployment then takes the nearest timed set's figure
    where the accelerator has timings of the kernel type: moe_nearest_timing, Deployment.expert_timing).

    The timed figures are taken as they are, not smoothed, but for one check when they are read from NVIDIA's
    tables (scripts/kernel_rates_aic.py: MOE_SPLIT_FASTER): a whole set timed far slower than its own 2-way
    expert-parallel split (the same per-expert GEMMs on half the experts: Llama 4 Scout in FP8 on an H100, 0.17
    whole, the split 0.99) takes the split's figure."""
    return moe_gemm_timing(gpu_id, compute, hidden, inter, topk, experts, moe_tp)[0]


def moe_split_stand_in(gpu_id: str, compute: str, hidden: int, inter: int, topk: int, experts: int) -> int:
    """GPUs of the expert-parallel split whose timing stands in for this whole expert set (NVIDIA did not time the
    set on one GPU: gpt-oss-120b's 128 experts in W4A16 on an H100, timed from 2 GPUs up; or timed it far slower
    than its 2-way split: Llama 4 Scout in FP8); 1 where its own timing holds."""
    rates = kernel_rates().get(MOE_TABLE_STAND_INS.get(gpu_id, gpu_id))
    key = (_SAME_RATE.get(compute, compute), hidden, inter, topk, experts)
    return rates.moe_split_stand_ins.get(key, 1) if rates else 1


def moe_nearest_timing(
    gpu_id: str, compute: str, hidden: int, inter: int, topk: int, experts: int, moe_tp: int = 1
) -> tuple[float, str] | None:
    """For an expert set NVIDIA did not time on this accelerator in this MoE kernel type at this slicing or a wider
    one (a user's config.json, DeepSeek-V3 in per-tensor FP8): nearest_moe_timing over the accelerator's own timings
    (MOE_TABLE_STAND_INS for a chip measured under another id), its description saying where a whole set's figure is
    itself an expert-parallel split's; None where it has no timing of the kernel type at all."""
    rates = kernel_rates().get(MOE_TABLE_STAND_INS.get(gpu_id, gpu_id))
    if rates is None:
        return None
    kernel = _SAME_RATE.get(compute, compute)
    found = nearest_moe_timing(rates.moe_gemm_efficiency, kernel, hidden, inter, topk, experts, moe_tp)
    if found is None:
        return None
    eta, (key, tp) = found
    _, h, i, k, e = key
    text = f"the nearest timed set's, hidden={h} inter={i} topk={k} experts={e}" + (
        f" in 1/{tp} slices" if tp > 1 else ""
    )
    if key[1:] == (hidden, inter, topk, experts):
        text = f"their own 1/{tp} slices' (timed only so thin; a thinner slice runs no faster)"
    elif tp == 1 and key in rates.moe_split_stand_ins:
        text += f" (its {rates.moe_split_stand_ins[key]}-way expert-parallel split's figure)"
    return eta, text


def nearest_moe_timing(
    timed: dict[tuple[str, int, int, int, int], dict[int, float]],
    kernel: str,
    hidden: int,
    inter: int,
    topk: int,
    experts: int,
    moe_tp: int = 1,
) -> tuple[float, tuple[tuple[str, int, int, int, int], int]] | None:
    """The η of the timed expert set of kernel type `kernel` nearest to this one, with that set's key and slicing;
    None if none is timed. The set's own timings at thinner slicings come first where there are any (a thinner slice
    runs no more efficiently, so its widest timed one is a lower bound from the same experts); otherwise near is
    Euclidean in log hidden size, log of the expert width each GPU runs (inter / slicing) and log of the routed
    share topk / experts (a GEMM's size and its tokens per expert at a given step: what the timed η grows with),
    every timed slicing a candidate (benchmarks/moe_nearest_shape.py scores it)."""

    def distance(key: tuple[str, int, int, int, int], tp: int) -> float:
        _, h, i, k, e = key
        return math.hypot(math.log(h / hidden), math.log(i * moe_tp / (tp * inter)), math.log(k * experts / (e * topk)))

    candidates = [(key, tp, eta) for key, by_tp in timed.items() if key[0] == kernel for tp, eta in by_tp.items()]
    own = [c for c in candidates if c[0][1:] == (hidden, inter, topk, experts)]
    if own:
        key, tp, eta = min(own, key=lambda c: c[1])
        return eta, (key, tp)
    if not candidates:
        return None
    key, tp, eta = min(candidates, key=lambda c: distance(c[0], c[1]))
    return eta, (key, tp)


def moe_gemm_timing(
    gpu_id: str, compute: str, hidden: int, inter: int, topk: int, experts: int, moe_tp: int = 1
) -> tuple[float, int]:
    """moe_gemm_efficiency and the slicing whose timing it is (1: whole experts, k: each expert's 1/k; 0: none)."""
    rates = kernel_rates().get(MOE_TABLE_STAND_INS.get(gpu_id, gpu_id))
    timed = (
        rates.moe_gemm_efficiency.get((_SAME_RATE.get(compute, compute), hidden, inter, topk, experts), {})
        if rates
        else {}
    )
    wider = [tp for tp in timed if tp <= moe_tp]
    return (timed[max(wider)], max(wider)) if wider else (1.0, 0)


def _kernel_scale(gpu: Accelerator, ref: Accelerator, compute: str) -> tuple[float | None, float | None]:
    """(bandwidth, GEMM) scale of `gpu` over `ref` from the kernel rates both have, each a fraction of its own
    datasheet peak; the GEMM at `compute` (fp16 as bf16, int8 as fp8), else the nearest type `gpu` has, against the
    reference's same type, else its fp8 (a low-precision rate against the reference's: the H100 has no FP4).
    None where either lacks the figure."""
    rates, ref_rates = kernel_rates().get(gpu.id), kernel_rates().get(ref.id)
    stand_in = _catalogue(None).get(KERNEL_RATE_STAND_INS.get(gpu.id, ""))
    if rates is None and stand_in is not None:
        return _stand_in_scale(gpu, stand_in, ref, compute)
    if rates is None or ref_rates is None:
        return None, None
    bw = None
    if rates.gemv_bandwidth_gb_s and ref_rates.gemv_bandwidth_gb_s:
        bw = (rates.gemv_bandwidth_gb_s / gpu.memory_bandwidth_gb_s) / (
            ref_rates.gemv_bandwidth_gb_s / ref.memory_bandwidth_gb_s
        )
    want = _SAME_RATE.get(compute, compute)
    key = next((k for k in (want, *TFLOPS_FRACTION_FALLBACK) if k in rates.gemm_tflops), None)
    ref_key = next((k for k in (key, "fp8") if k in ref_rates.gemm_tflops), None) if key else None
    if key is None or ref_key is None or key not in gpu.dense_tflops or ref_key not in ref.dense_tflops:
        return bw, None
    gemm = (rates.gemm_tflops[key] / gpu.dense_tflops[key]) / (
        ref_rates.gemm_tflops[ref_key] / ref.dense_tflops[ref_key]
    )
    return bw, gemm


def _stand_in_scale(
    gpu: Accelerator, stand_in: Accelerator, ref: Accelerator, compute: str
) -> tuple[float | None, float | None]:
    """_kernel_scale of `stand_in` (KERNEL_RATE_STAND_INS) carried to `gpu`: each scale times gpu's microbenchmark
    fraction over the stand-in's (bandwidth; GEMM at the first compute type of `compute`, then
    TFLOPS_FRACTION_FALLBACK, both have), unchanged where they share none."""
    bw, gemm = _kernel_scale(stand_in, ref, compute)
    if bw is not None and gpu.achievable_bandwidth_fraction and stand_in.achievable_bandwidth_fraction:
        bw *= gpu.achievable_bandwidth_fraction / stand_in.achievable_bandwidth_fraction
    mine, theirs = gpu.achievable_tflops_fraction, stand_in.achievable_tflops_fraction
    common = next((k for k in (compute, *TFLOPS_FRACTION_FALLBACK) if k in mine and k in theirs), None)
    if gemm is not None and common:
        gemm *= mine[common] / theirs[common]
    return bw, gemm


def relative_achievable(gpu: Accelerator, compute: str) -> tuple[float, float]:
    """(bandwidth, GEMM rate at `compute`) scale of `gpu` against REFERENCE_ACCELERATOR: the ratio of their achieved
    fractions of datasheet peak, like with like. Where both have kernel rates (kernel_rates.csv: the engine's own
    kernels, one harness on both) those decide; else their published microbenchmark fractions: the GEMM ratio at the
    first compute type of `compute`, then TFLOPS_FRACTION_FALLBACK, that both have a figure for; 1.0 where they share
    none, i.e. scaled as the reference is."""
    ref = _catalogue(None).get(REFERENCE_ACCELERATOR)
    if ref is None or gpu.id == REFERENCE_ACCELERATOR:
        return 1.0, 1.0
    kernel_bw, kernel_gemm = _kernel_scale(gpu, ref, compute)
    if kernel_bw is not None and kernel_gemm is not None:
        return kernel_bw, kernel_gemm
    bw, ref_bw = gpu.achievable_bandwidth_fraction, ref.achievable_bandwidth_fraction
    mine, theirs = gpu.achievable_tflops_fraction, ref.achievable_tflops_fraction
    common = next((k for k in (compute, *TFLOPS_FRACTION_FALLBACK) if k in mine and k in theirs), None)
    return (bw / ref_bw if bw and ref_bw else 1.0), (mine[common] / theirs[common] if common else 1.0)


def unknown_accelerators(ids: list[str]) -> list[str]:
    """The ids, sorted and once each, that neither the catalogue nor the user file knows (case-insensitive)."""
    known = {k.lower() for k in accelerators()}
    return sorted({i for i in ids if i and i.lower() not in known})
