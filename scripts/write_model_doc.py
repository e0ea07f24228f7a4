"""Regenerate docs/cost-model.md: every term of the step-time formula next to its value in the shipped profiles,
its fit status, its range over the cross-validation refits and its source; then each accelerator's published
achievable fractions, kernel rates and host factor. Read from the shipped files only (profiles,
residual_quantiles.json, accelerators.yaml, kernel_rates.csv), so the page cannot drift from them.

.venv/bin/python scripts/write_model_doc.py          # write
.venv/bin/python scripts/write_model_doc.py --check  # exit 1 when the committed page differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenomy.catalog.accelerators import (
    KERNEL_RATE_STAND_INS,
    KERNEL_RATES_FILE,
    REFERENCE_ACCELERATOR,
    accelerators,
    kernel_rates,
    relative_achievable,
)
from tokenomy.catalog.models import DATA_DIR, load_model, model_ids
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.intervals import RESIDUALS_FILE
from tokenomy.costmodel.profile import EngineProfile

OUT = Path(__file__).resolve().parent.parent / "docs" / "cost-model.md"

# (profile field, the term it sets, where it enters the step time). Order: the formula's, top to bottom.
TERMS = (
    ("bw_efficiency", "memory time", "t_mem = bytes read (weights touched, KV) / (peak bandwidth × a × e)"),
    ("flops_efficiency", "16-bit compute time", "t_comp = FLOPs (2·N per token + attention) / (peak × a × e)"),
    ("low_precision_flops_efficiency", "fp8 / int8 / fp4 compute time", "as t_comp, in the format's compute type"),
    ("overlap_k", "memory–compute overlap", "t_roof = (t_mem^k + t_comp^k)^(1/k); 1 adds them, ∞ is the max"),
    ("step_overhead_s", "fixed cost per step", "+ c once per forward step (scheduling, sampling, launch)"),
    ("layer_overhead_s", "fixed cost per layer", "+ c × layers per step (kernel launches, norms)"),
    ("moe_layer_overhead_s", "fixed cost per MoE layer", "+ c × MoE layers per step (the fused MoE op's floor)"),
    (
        "moe_routing_alpha",
        "uneven expert routing (power-law exponent)",
        "routed experts' compute × φ(α, experts, GPUs holding whole experts), NVIDIA's power-law / balanced timings",
    ),
    ("seq_overhead_s", "host cost per sequence (C++ executor)", "+ c × sequences in the step"),
    (
        "python_executor_seq_overhead_s",
        "host cost per sequence (Python executor)",
        "+ c × host_overhead_factor × sequences (÷ tp for MoE run attention-DP) instead, from python_executor_since",
    ),
    (
        "allreduce_latency_s",
        "collective latency",
        "+ 2 × layers × c per step at tp > 1 (2 × MoE layers under attention DP or expert parallelism)",
    ),
    (
        "comm_efficiency",
        "collective bandwidth",
        "+ 2 × layers × 2(tp−1)/tp × hidden × 2 B × tokens / (link × e); attention DP: 2 × MoE layers × (tp−1)/tp × …",
    ),
    ("moe_gemm_half_tokens", "grouped-GEMM fill (MoE)", "+ experts touched × m½ padded rows of expert compute"),
    ("moe_permute_passes", "router / permute (MoE)", "+ passes × k × hidden × 2 B per token at the memory rate"),
    (
        "attention_dp_balance",
        "busiest attention-DP rank",
        "+ the compute of the ⌈K/R⌉ prompt chunks on one rank less its even 1/R share (false: the engine does not "
        "balance prompts over the ranks; an offline run's cohort of b requests prefills on every rank at once, "
        "⌈b/R⌉ of them on the busiest)",
    ),
    ("gpu_memory_utilization", "memory the engine may use", "KV = utilisation × memory − weights − activations …"),
    ("runtime_overhead_gb", "runtime reservation per GPU", "… − this per GPU (CUDA context, graphs, buffers)"),
    (
        "max_num_seqs",
        "sequences in flight",
        "scheduler limit, per attention-DP rank (offline rows: trtllm-bench's, offline_limits_rule)",
    ),
    (
        "max_num_batched_tokens",
        "tokens per step",
        "prefill chunk budget per step (per micro-batch with pp; per attention-DP rank)",
    ),
    ("kv_block_tokens", "KV block size", "paged KV blocks of this many tokens"),
    ("kv_admission", "KV admission", "on_demand: when the prompt's blocks are free; full_length: the whole length"),
)
PROFILES = ("tensorrt-llm", "vllm-rocm")  # the profiles fitted on their own rows; vllm, sglang, generic borrow


def _value(value: object) -> str:
    """A parameter's value as the page shows it (4 significant figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) if value not in ("", None) else "—"
    return f"{value:.4g}"


def _status(profile: EngineProfile, name: str) -> str:
    """How the profile got a parameter: its fit status, 'borrowed from X', or the profile's documented setting."""
    if name in profile.borrowed:
        return f"borrowed from {profile.borrows_from}"
    fitted = profile.fit.get("parameters", {}).get(name)
    if fitted:
        return str(fitted["status"]).split(":")[0]
    source = profile.sources.get(name, "").lower()
    if getattr(profile, name) == 0 and name == "python_executor_seq_overhead_s":
        return "no Python executor"
    if source.startswith("measured"):
        return "measured, not fitted"
    if "prior" in source.split(":")[0] or source.startswith("tokenomy's documented prior"):
        return "prior, not fitted"
    return "engine setting" if source else "default"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rendered() -> str:
    """The page's text."""
    profiles = {name: load_profile(name) for name in PROFILES}
    residuals = json.loads((DATA_DIR / RESIDUALS_FILE).read_text())
    ranges = residuals.get("fold_parameter_ranges", {})
    trt = profiles["tensorrt-llm"]
    out = [
        "# The cost model, term by term",
        "",
        "Generated by `scripts/write_model_doc.py` from the shipped profiles (`catalog/data/profiles/*.json`), the",
        "cross-validation record in `catalog/data/residual_quantiles.json`, `catalog/data/accelerators.yaml` and",
        "`catalog/data/kernel_rates.csv`;",
        "`make test` fails when this page and those files disagree. The formula is `costmodel/perf.py: StepCost`.",
        "",
        "One forward step of a replica (a decode step, a prefill chunk, or both) takes",
        "",
        "    t = step_overhead + layers × layer_overhead + MoE layers × MoE layer overhead",
        "        + sequences × host cost per sequence",
        "        + (t_mem^k + t_comp^k)^(1/k) + collectives (tensor-parallel all-reduces; under attention DP an",
        "          all-gather and a reduce-scatter around each MoE layer; under expert parallelism two all-to-alls)",
        "",
        "with t_mem the bytes the step reads over the achieved bandwidth and t_comp its FLOPs over the achieved",
        "tensor-core rate. An efficiency e is a fraction of the datasheet peak as on the reference accelerator",
        f"({REFERENCE_ACCELERATOR}); on another accelerator it is scaled by a, that accelerator's achieved fraction of",
        "its datasheet peak over the reference's (tables below), like compute type with like: from the engine's own",
        "kernels as NVIDIA measured them where both have those, else from published microbenchmarks.",
        "",
        "With pipeline parallelism a step is a round of pp micro-batches (`costmodel/perf.py: pipeline_round_s`):",
        "micro-batch j takes t_j through the whole model, h_j of it host work (step_overhead + sequences × host",
        "cost per sequence). Its GPU work splits over the stages but every rank's executor schedules and prepares",
        "every micro-batch, so the round lasts max(max t_j, Σ (h_j + (t_j − h_j) / pp)).",
        "",
        "`fitted`: least squares on the profile's own rows (`calibrate/fit.py`); `prior kept`: the rows cannot",
        "identify it (sensitivity under 0.05 per scale unit) and it keeps its documented prior; `engine setting`: the",
        "engine's own default; `measured`: a published measurement; `prior, not fitted`: tokenomy's documented prior,",
        "no rows fit it. Each has its source in the profile's `sources`. *Across refits*: the lowest and highest",
        "value of the tensorrt-llm profile over the leave-one-group-out refits of `tokenomy validate --cv` (a refit",
        "that cannot identify a parameter gives its prior).",
        "",
        "| term | enters the step time as | parameter | " + " | ".join(PROFILES) + " | across refits |",
        "|---|---|---|" + "---:|" * len(PROFILES) + "---:|",
    ]
    for name, term, form in TERMS:
        values = [f"{_value(getattr(p, name))} ({_status(p, name)})" for p in profiles.values()]
        span = ranges.get(name)
        across = f"{_value(span[0])}–{_value(span[1])}" if span else "not fitted"
        out.append(f"| {term} | {_cell(form)} | `{name}` | " + " | ".join(values) + f" | {across} |")
    out += ["", "Sources of the tensorrt-llm values (the profile's `sources`):", ""]
    for name, _, _ in TERMS:
        if name in trt.sources:
            out.append(f"- `{name}`: {_cell(trt.sources[name])}")
    out += _accelerator_section()
    return "\n".join(out) + "\n"


def _accelerator_section() -> list[str]:
    """The accelerators' achieved fractions (kernel rates, published microbenchmarks), the scale a the model takes
    from them, host factors, and the measured all-reduce latencies beside the profile's prior."""
    rates = kernel_rates()
    out = [
        "",
        "## Accelerators: achieved fractions of the datasheet peak, and host factor",
        "",
        f"*Kernel rates* (`catalog/data/{KERNEL_RATES_FILE}`, written by `scripts/kernel_rates_aic.py`):",
        "TensorRT-LLM's own kernels as NVIDIA timed them on each GPU for AIConfigurator (its shipped, Apache-2.0",
        "performance tables): the best memory-bound bf16 GEMV (m = 1, weights of 512 MB or more) over the datasheet",
        "bandwidth, and the best GEMM of the table per compute type over the datasheet rate. *Microbenchmarks*",
        "(`accelerators.yaml`, each entry's `sources`): the best STREAM kernel and the best vendor-BLAS GEMM per",
        "compute type. The scale a is an accelerator's fraction over the reference's, kernel rates where both have",
        "them (one harness on both; an FP4 rate against the reference's FP8), else microbenchmarks, else 1",
        "(`catalog/accelerators.py: relative_achievable`); an untimed part of a timed architecture takes the timed",
        "one's kernel scale times their microbenchmark ratio (`KERNEL_RATE_STAND_INS`: "
        + ", ".join(f"{a} from {b}" for a, b in KERNEL_RATE_STAND_INS.items())
        + "). Host factor: how much slower the host CPU runs PyTorch",
        "host work than a DGX H100's Xeon (it multiplies the Python executor's cost per sequence).",
        "",
        "| accelerator | kernel rates: bandwidth, GEMM by compute type | microbenchmarks: bandwidth, GEMM"
        " | a: bandwidth; GEMM bf16 / fp8 / fp4 | host factor |",
        "|---|---|---|---|---:|",
    ]
    for acc in accelerators().values():
        mine = rates.get(acc.id)
        kernel = "—"
        if mine is not None:
            bw = f"{mine.gemv_bandwidth_gb_s / acc.memory_bandwidth_gb_s:.3g}" if mine.gemv_bandwidth_gb_s else "—"
            gemm = ", ".join(
                f"{k} {v / acc.dense_tflops[k]:.3g}"
                for k, v in sorted(mine.gemm_tflops.items())
                if k in acc.dense_tflops
            )
            kernel = f"{bw}; {gemm or '—'}"
        micro_gemm = ", ".join(f"{k} {v:.3g}" for k, v in sorted(acc.achievable_tflops_fraction.items())) or "—"
        micro = f"{_value(acc.achievable_bandwidth_fraction)}; {micro_gemm}"
        scales = [relative_achievable(acc, c) for c in ("bf16", "fp8", "fp4")]
        scale = f"{scales[0][0]:.3g}; " + " / ".join(f"{g:.3g}" for _, g in scales)
        out.append(f"| {acc.id} | {kernel} | {micro} | {scale} | {_value(acc.host_overhead_factor)} |")
    out += [
        "",
        "## All-reduce latency: the prior and the measured kernel",
        "",
        "TensorRT-LLM's custom all-reduce as NVIDIA timed it (same tables; median over messages of up to 16,384 bf16",
        "elements, a decode step's all-reduce), against the profile's `allreduce_latency_s` prior, which every",
        "accelerator and tensor-parallel size shares:",
        "",
        "| accelerator | tp | measured µs |",
        "|---|---:|---:|",
    ]
    for accel, mine in rates.items():
        out += [f"| {accel} | {tp} | {us:.2f} |" for tp, us in sorted(mine.allreduce_latency_us.items())]
    return out + _moe_section(rates)


def _moe_section(rates: dict) -> list[str]:
    """The MoE kernel's measured grouped-GEMM efficiency for the catalogue's MoE models' expert shapes."""
    models = [m for m in map(load_model, model_ids()) if m.is_moe]
    out = [
        "",
        "## MoE grouped GEMMs: measured efficiency per expert shape",
        "",
        "A routed expert's FLOPs run at η × R_e, its kernel's GEMM rate (`expert_gemm_efficiency`,",
        "`costmodel/perf.py`): t_comp gains tokens × k × F_e × (1/(η R_e) − 1/R) over the dense rate R, on top of the",
        "grouped-GEMM fill term (R_e = R but for W4A8 experts at the FP8 rate beside bf16 attention, where the term",
        "can save time). η is NVIDIA's",
        "timing of TensorRT-LLM's MoE kernel for a whole expert set on one GPU (AIConfigurator's `moe_perf` tables,",
        "balanced routing, the same release as the GEMM table): the FLOPs one more token costs (k × 6 × hidden ×",
        "inter) at that table's best dense GEMM rate over the latency it adds at 4,096 tokens and more. Small experts",
        "run far below the dense rate, the more so the faster the tensor cores. A shape whose latency there is not",
        "compute-bound is written as η = 1; an accelerator (GH200 and H100 PCIe take the H100 SXM's:",
        "`MOE_TABLE_STAND_INS`) or kernel type without a table takes η = 1; a shape not in the tables (a user's",
        "`config.json`, DeepSeek-V3 in per-tensor FP8) takes the η of the timed set of the same kernel type on the",
        "same accelerator nearest to it in log hidden size, log expert width per GPU and log routed share top-k /",
        "experts (`moe_nearest_timing`; a set timed only in thinner slices takes its own widest first; the plan",
        "note names it). Where the engine runs MoE tensor-parallel",
        "(TensorRT-LLM before its PyTorch releases, vLLM, SGLang: `Deployment.moe_tp`), each GPU runs every expert's",
        "inter / tp columns, and η is the tables' run of that slicing (moe_tp_size = tp; the nearest wider",
        "slicing's figure where that was not timed); where every GPU holds whole experts (TensorRT-LLM's attention-DP",
        "+ expert-parallel MoE recipe, expert parallelism) the one-GPU figure. The slope",
        "is the whole fused op's, so the permute/unpermute passes that `moe_permute_passes` charges apart are in it",
        "too: at large token counts they are counted twice. Every engine profile takes these TensorRT-LLM figures.",
        "The kernel follows the weights (`Deployment.expert_kernel`): block-scaled FP8 (`fp8-block`, DeepSeek-V3's",
        "checkpoint) runs the block-scale kernel, gpt-oss's MXFP4 experts W4A16 on an accelerator without FP4 tensor",
        "cores (`mxfp4-w4a16`, Hopper) and W4A8 with MXFP8 activations on one with them (`mxfp4-w4a8`, Blackwell)",
        "where the engine runs them so (TensorRT-LLM: profile `mxfp4_moe_mxfp8_activations`; another engine's own",
        "MXFP4 × bf16 kernel there, `mxfp4-bf16`, is untimed: the dense bf16 rate), each η",
        "a fraction of its activations' GEMM rate (`MOE_KERNEL_RATES`: bf16 for W4A16, FP8 for W4A8 and fp8-block);",
        "where the whole set was timed only split over GPUs (gpt-oss-120b on an H100), its smallest expert-parallel",
        "split's figure stands in (marked `(epN)`), and so does the 2-way split's where the whole set's timing",
        "computes its routed copies more than 1.5× slower per GPU than that split (the same per-expert GEMMs on half",
        "the experts: a slower kernel choice; Llama 4 Scout in FP8, `scripts/kernel_rates_aic.py: MOE_SPLIT_FASTER`);",
        "a kernel type never timed runs at the dense rate. Each cell:",
        "kernel type, η timed for the whole experts / sliced over 2 / 4 / 8 GPUs (– not timed: the cost model takes",
        "the nearest wider slicing's figure, `catalog/accelerators.py: moe_gemm_efficiency`).",
        "",
        "| model | hidden × inter, top-k of experts | " + " | ".join(rates) + " |",
        "|---|---|" + "---|" * len(rates),
    ]
    for m in sorted(models, key=lambda m: m.id):
        shape = (m.hidden_size, m.expert_intermediate_size, m.experts_per_token, m.n_experts)
        cells = []
        for mine in rates.values():
            found = [
                f"{c} "
                + " / ".join(f"{by_tp[tp]:.2f}" if tp in by_tp else "–" for tp in (1, 2, 4, 8))
                + (f" (ep{mine.moe_split_stand_ins[(c, *s)]})" if (c, *s) in mine.moe_split_stand_ins else "")
                for (c, *s), by_tp in sorted(mine.moe_gemm_efficiency.items())
                if tuple(s) == shape
            ]
            cells.append(", ".join(found) or "—")
        out.append(f"| {m.id} | {shape[0]} × {shape[1]}, {shape[2]} of {shape[3]} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = rendered()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            sys.exit("stale docs/cost-model.md (run scripts/write_model_doc.py)")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
