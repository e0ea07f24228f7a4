"""The summary of a `tokenomy bench`: the main run's figures, then sweep, search, economics and prediction.

The runs are tokenomy.bench.runner's; economics (price, $/Mtok, MBU/MFU) and the cost model's prediction for the
same workload are tokenomy.bench.economics'. Times stay in wall-clock seconds; `speedup` converts them to
deployment time where a figure is priced or predicted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenomy.results import RunSummary

if TYPE_CHECKING:
    from tokenomy.bench.economics import Price
    from tokenomy.bench.runner import BenchOutcome, BenchPlan, RunOutcome
    from tokenomy.costmodel.deployment import Deployment
    from tokenomy.sim.workload import WorkloadSpec

SEARCH_RATE_UNIT = "req/s, wall clock, whole endpoint"


def dataset_name(spec_isl: str, trace: str | None) -> str:
    """The dataset a run's prompts came from: the trace's file name, sharegpt, '' for fixed lengths, else bench."""
    if trace:
        return Path(trace).stem
    return "sharegpt" if spec_isl == "sharegpt" else "" if spec_isl.isdigit() else "bench"


def bench_summary(
    outcome: BenchOutcome,
    plan: BenchPlan,
    d: Deployment | None,
    gpus: int,
    price: Price | None,
    speedup: float,
    spec: WorkloadSpec,
    started_unix_s: float,
) -> RunSummary:
    """The summary of a bench: the main run's figures at the top, then sweep, search, economics and prediction."""
    main = outcome.main
    for run in [main, *outcome.sweep]:
        add_economics(run, price, speedup)
    summary: dict[str, Any] = dict(main.summary)
    summary["run_id"] = f"bench-{int(started_unix_s)}"
    ep = outcome.endpoint
    summary["endpoint"] = {"url": ep.base_url, "model": ep.model, "kind": ep.kind}
    summary["workload"] = {
        "isl": spec.isl,
        "osl": spec.osl,
        "num_requests": spec.num_requests,
        "seed": spec.seed,
        "trace": spec.trace,
        "dataset": dataset_name(spec.isl, spec.trace),
    }
    if spec.sessions:  # multi-turn: isl is each turn's new message, the load opens sessions
        summary["workload"].update(
            turns=spec.turns, think_s=spec.think_s, system_prompt_tokens=spec.system_prompt_tokens
        )
    summary["speedup"] = speedup
    summary["warmup"] = {"requests": plan.warmup, "errors": outcome.warmup_errors}
    if d is not None:
        summary.update(_deployment_figures(outcome, d, gpus, speedup, spec))
    if outcome.sweep:
        summary["sweep"] = [RunSummary.model_validate(run.summary) for run in outcome.sweep]
    if outcome.search is not None:
        summary["slo_search"] = outcome.search.outcome()
        summary["slo_search"]["rate_unit"] = SEARCH_RATE_UNIT
        summary["slo_search"]["verification"] = outcome.verification.as_dict() if outcome.verification else None
    return RunSummary.model_validate(summary)


def _deployment_figures(
    outcome: BenchOutcome, d: Deployment, gpus: int, speedup: float, spec: WorkloadSpec
) -> dict[str, Any]:
    """The deployment the endpoint stands for and, when a request succeeded, utilisation and the prediction."""
    from tokenomy.bench.economics import achieved_utilisation, comparison, predicted_summary

    main = outcome.main
    replicas = max(gpus // d.n_gpus, 1)
    out: dict[str, Any] = {
        "deployment": {
            "model": d.model.id,
            "gpu": d.gpu.id,
            "num_gpus": gpus,
            "tp": d.tp,
            "pp": d.pp,
            "replicas": replicas,
            "precision": d.fmt.name,
            "kv_precision": d.kv_dtype,
            "engine": d.profile.name,
        }
    }
    if main.arrays.ok.any():
        duration = main.summary["duration_s"] * speedup
        out["utilisation"] = achieved_utilisation(d, main.arrays, duration, speedup, replicas)
        predicted = predicted_summary(d, main.workload, speedup, replicas, spec.seed)
        out["prediction"] = {"summary": predicted, "comparison": comparison(main.summary, predicted)}
    return out


def add_economics(run: RunOutcome, price: Price | None, speedup: float) -> None:
    """$/Mtok of a run, in deployment time, when a price is known (added to its summary)."""
    from tokenomy.bench.economics import prefill_share, usd_per_mtok

    s = run.summary
    if price is None or not s["requests"]["completed"]:
        return
    tokens = s["tokens"]
    s["usd_per_mtok"] = usd_per_mtok(
        price, s["duration_s"] * speedup, tokens["input"], tokens["output"], prefill_share(run.arrays)
    )
