"""Predict one measurement row with the cost model, or say why it cannot be predicted."""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError

from tokenomy.calibrate.measurements import LOAD_KINDS, Measurement
from tokenomy.catalog.accelerators import USER_FILE_ENV
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.profiles import engine_profile, load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import batch_latency_seconds, max_batch, offline_run_tokens_per_s
from tokenomy.costmodel.profile import EngineProfile
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload
from tokenomy.yamlfile import file_error

THROUGHPUT_METRICS = ("output_throughput", "total_throughput", "request_throughput")
# Online-load metrics the simulator predicts: (summary key, statistic).
SIM_METRICS = {
    "mean_ttft": ("ttft_s", "mean"),
    "median_ttft": ("ttft_s", "p50"),
    "p99_ttft": ("ttft_s", "p99"),
    "mean_itl": ("itl_s", "mean"),
    "median_itl": ("itl_s", "p50"),
    "p99_itl": ("itl_s", "p99"),
    "mean_tpot": ("tpot_s", "mean"),
    "median_tpot": ("tpot_s", "p50"),
    "mean_e2e": ("e2e_s", "mean"),
    "median_e2e": ("e2e_s", "p50"),
}
SIM_REQUESTS = 500  # requests per simulated load point (the TensorRT-LLM online runs used 500)
# Loads the simulator predicts: Poisson rate, closed-loop concurrency, and a burst (load_value requests sent at once
# to a server running its own defaults, as `vllm bench serve` does at its default request rate, inf).
ONLINE_LOADS = ("burst", "rate", "concurrency")
MAX_BURST_REQUESTS = 100_000  # a burst's requests are simulated one by one: more would take minutes per row


@dataclass(frozen=True)
class Prediction:
    value: float | None
    skipped_reason: str = ""


def row_deployment(row: Measurement, profile: EngineProfile) -> Deployment:
    """The deployment a measurement row describes, run by `profile` (costmodel.resolve; tp and pp as measured)."""
    user_file = os.environ.get(USER_FILE_ENV)  # part of the key: it may redefine an accelerator id
    return _resolved(row.model, row.gpu, row.tp, row.pp, row.precision, row.kv_precision or "auto", profile, user_file)


@lru_cache(maxsize=4096)
def _resolved(
    model: str,
    gpu: str,
    tp: int,
    pp: int,
    precision: str,
    kv_precision: str,
    profile: EngineProfile,
    user_file: str | None,
) -> Deployment:
    """`resolve` for one row's names and a profile, cached: a fit predicts each row for thousands of profiles."""
    try:
        spec = DeploymentSpec(
            model=model,
            gpu=gpu,
            tp=tp,
            pp=pp,
            precision=precision,
            kv_precision=kv_precision,
            engine=profile.name or "generic",  # for the record: `profile` itself runs it
        )
    except ValidationError as exc:
        raise file_error(exc, "measurement row") from exc
    return resolve(spec, profile).deployment


def _throughput(metric: str, out_tps: float, isl: int, osl: int) -> float:
    if metric == "output_throughput":
        return out_tps
    if metric == "total_throughput":
        return out_tps * (isl + osl) / osl
    return out_tps / osl


# Engine settings a row's run set (its `settings` column, 'name=value; …') that the profiles model, as the profile
# field each sets: TensorRT-LLM's attention_dp_config.enable_balance (EngineProfile.attention_dp_balance).
ROW_SETTINGS = {"attention_dp_balance": "attention_dp_balance"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@lru_cache(maxsize=256)
def row_settings(text: str) -> dict[str, bool] | str:
    """The profile values a row's `settings` text sets ('attention_dp_balance=true'), or why it cannot be used
    (cached: predict reads it twice per row, and a fit predicts each row thousands of times; callers do not mutate
    the dict)."""
    values: dict[str, bool] = {}
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, sep, value = (x.strip() for x in item.partition("="))
        if name not in ROW_SETTINGS:
            near = difflib.get_close_matches(name, ROW_SETTINGS, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(ROW_SETTINGS)})"
            return f"setting '{name}' is not one the profiles model{hint}"
        if not sep or value.lower() not in _TRUE + _FALSE:
            return f"setting '{name}' takes true or false, got '{value}'"
        values[ROW_SETTINGS[name]] = value.lower() in _TRUE
    return values


def _profile_for(row: Measurement, profile: EngineProfile | None) -> EngineProfile:
    """`profile`, else the one the row's engine runs with on its GPU (engine_profile: vllm on an AMD GPU is
    vllm-rocm), else generic for an engine the catalogue has no profile for; as the row's engine version ran
    (EngineProfile.for_engine_version: TensorRT-LLM before v0.19 had the C++ executor) with the settings its run
    set (`row_settings`; predict skips a row whose settings cannot be read)."""
    try:
        chosen = profile or engine_profile(row.engine, row.gpu)
    except CatalogError:
        chosen = load_profile("generic")
    settings = row_settings(row.settings)
    chosen = chosen.with_values(**settings) if isinstance(settings, dict) and settings else chosen
    return chosen.for_engine_version(row.engine_version)


# Dataset `uniform:F`: isl and osl are maxima, and each request's lengths are independent uniform integers from
# int(F·isl) to isl and int(F·osl) to osl (vLLM's older benchmark_serving `--dataset-name random
# --random-range-ratio F`, as SemiAnalysis InferenceX runs it with F = 0.8; newer vLLM draws from L·(1 − F) to
# L·(1 + F) instead).
UNIFORM_DATASET = "uniform:"


def uniform_lengths(dataset: str, isl: int | None, osl: int | None) -> tuple[str, str] | str:
    """The simulator's length forms ('uniform:MIN:MAX') for dataset 'uniform:F', or why the row cannot have them."""
    text = dataset[len(UNIFORM_DATASET) :]
    try:
        fraction = float(text)
    except ValueError:
        fraction = math.nan
    if not 0 < fraction <= 1:
        return f"dataset '{dataset}': give uniform:F with 0 < F <= 1 (the shortest length as a share of isl/osl)"
    if not isl or not osl:
        return f"dataset '{dataset}' without isl/osl (its maximum lengths)"
    return f"uniform:{max(int(fraction * isl), 1)}:{isl}", f"uniform:{max(int(fraction * osl), 1)}:{osl}"


def _predict_online(row: Measurement, profile: EngineProfile | None) -> Prediction:
    """A rate-, concurrency- or burst-load row, through the simulator (Poisson arrivals, a closed loop, or
    load_value requests at once; fixed, ShareGPT or uniform lengths)."""
    if row.metric not in SIM_METRICS and row.metric not in THROUGHPUT_METRICS:
        return Prediction(None, f"metric '{row.metric}' under {row.load_kind} load is not predicted")
    if row.dataset in ("", "fixed"):
        if not row.isl or not row.osl:
            return Prediction(None, "fixed-length row without isl/osl")
        lengths = (str(row.isl), str(row.osl))
    elif row.dataset == "sharegpt":
        lengths = ("sharegpt", "sharegpt")
    elif row.dataset.startswith(UNIFORM_DATASET):
        lengths = uniform_lengths(row.dataset, row.isl, row.osl)
        if isinstance(lengths, str):
            return Prediction(None, lengths)
    else:
        return Prediction(None, f"no length distribution known for dataset '{row.dataset}'")
    if not row.load_value or row.load_value <= 0:
        return Prediction(None, f"{row.load_kind} load without a positive load_value")
    try:
        d = row_deployment(row, _profile_for(row, profile))
    except CatalogError as exc:
        return Prediction(None, str(exc))
    if not d.memory.fits:
        return Prediction(None, "model does not fit this deployment in the cost model")
    replicas = max(row.num_gpus // d.n_gpus, 1)
    per_replica = row.load_value / replicas
    if row.load_kind == "burst":
        if not float(row.load_value).is_integer():
            return Prediction(None, f"burst load_value counts the requests sent at once, got {row.load_value:g}")
        if row.num_gpus != d.n_gpus:  # how a router splits them, and when the last replica finishes, is not given
            why = f"a burst over {row.num_gpus} GPUs where one replica spans tp·pp = {d.n_gpus} is not predicted"
            return Prediction(None, why)
        if row.load_value > MAX_BURST_REQUESTS:
            return Prediction(None, f"a burst of {row.load_value:g} requests: at most {MAX_BURST_REQUESTS:,} simulated")
        load: dict[str, float] = {"burst": int(row.load_value)}
    elif row.load_kind == "rate":
        load = {"rate": per_replica}
    else:
        load = {"concurrency": max(int(round(per_replica)), 1)}
    summary = _simulated(d, lengths, tuple(load.items()))
    if row.metric in SIM_METRICS:
        key, stat = SIM_METRICS[row.metric]
        return Prediction(summary[key][stat])
    out_tps = summary["throughput"]["output_tokens_per_s"] * replicas
    osl = summary["mean_output_tokens"]
    isl = summary["mean_input_tokens"]
    return Prediction(_throughput(row.metric, out_tps, isl, osl))


_SIM_CACHE: dict[tuple, dict] = {}


def _simulated(d: Deployment, lengths: tuple[str, str], load: tuple) -> dict:
    """Summary of the simulated load point (cached: one row per metric shares a run)."""
    # The profile's values (not its id: a fit creates and drops thousands of them) are part of the key.
    key = (d.profile, d.model.id, d.gpu.id, d.tp, d.pp, d.precision, d.kv_precision, lengths, load)
    if key not in _SIM_CACHE:
        given = dict(load)
        burst = int(given.pop("burst", 0))  # a burst: that many requests, all at t=0 (no rate, no concurrency)
        spec = WorkloadSpec(isl=lengths[0], osl=lengths[1], num_requests=burst or SIM_REQUESTS, seed=0, **given)
        w = build_workload(spec)
        summary = simulate(d, w).summary()
        summary["mean_input_tokens"] = float(w.input_tokens.mean())
        summary["mean_output_tokens"] = float(w.output_tokens.mean())
        _SIM_CACHE[key] = summary
    return _SIM_CACHE[key]


def predict(row: Measurement, profile: EngineProfile | None = None) -> Prediction:
    """Predicted value of a row in its base unit (s, tokens/s, req/s), or the reason it is skipped."""
    if row.load_kind not in LOAD_KINDS:
        return Prediction(None, f"load kind '{row.load_kind}' is not one of {', '.join(LOAD_KINDS)}")
    settings = row_settings(row.settings)
    if isinstance(settings, str):
        return Prediction(None, settings)
    if row.load_kind in ONLINE_LOADS:
        return _predict_online(row, profile)
    if row.isl is None or row.osl is None or row.isl <= 0 or row.osl <= 0:
        return Prediction(None, f"dataset '{row.dataset or '(none)'}' has no fixed isl/osl")
    if row.dataset not in ("", "fixed"):
        return Prediction(None, f"length distribution of dataset '{row.dataset}' needs the simulator")
    try:
        d = row_deployment(row, _profile_for(row, profile))
    except CatalogError as exc:
        return Prediction(None, str(exc))
    if not d.memory.fits:
        return Prediction(None, "model does not fit this deployment in the cost model")
    replicas = max(row.num_gpus // d.n_gpus, 1)
    isl, osl = row.isl, row.osl
    if row.load_kind == "offline" and row.metric in THROUGHPUT_METRICS:
        if max_batch(d, isl, osl) < 1:
            return Prediction(None, "one request does not fit the KV cache")
        requests = row.load_value  # the run's requests, when the source gives them; else an endless run
        if requests is None:
            out = offline_run_tokens_per_s(d, isl, osl, None) * replicas
        elif not math.isfinite(requests) or requests < 1 or not float(requests).is_integer():
            why = f"offline load_value counts the run's requests: a whole number ≥ 1, got {requests:g}"
            return Prediction(None, why)
        else:  # the replica with the most requests (⌈N/R⌉) ends the run
            most = math.ceil(requests / replicas)
            out = offline_run_tokens_per_s(d, isl, osl, most) * requests / most
        return Prediction(_throughput(row.metric, out, isl, osl))
    if row.load_kind == "batch" and row.load_value:
        batch = int(row.load_value)
        if batch > max_batch(d, isl, osl):
            return Prediction(None, f"a batch of {batch} exceeds what the KV cache and scheduler hold at once")
        e2e = batch_latency_seconds(d, isl, osl, batch)
        if row.metric == "batch_e2e_latency":
            return Prediction(e2e)
        if row.metric in THROUGHPUT_METRICS:
            return Prediction(_throughput(row.metric, batch * osl / e2e * replicas, isl, osl))
    return Prediction(None, f"metric '{row.metric}' under '{row.load_kind}' load is not predicted")
