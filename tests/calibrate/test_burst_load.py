"""Load kind `burst`: load_value requests sent at once to a server at its own defaults (`vllm bench serve` at its
default request rate, inf). The simulator runs exactly those requests from t=0; a burst's throughput pools with
the other loaded throughputs, and its rows fit nothing (no offline fit, no step-overhead fit)."""

import pytest

from tests.calibrate.measurement_rows import measurement
from tokenomy.calibrate.fit import STEP_OVERHEAD_LOADS, fit_profile, fit_step_overhead
from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.predict import predict, row_deployment
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.intervals import residual_metric
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload


def _burst(requests: float, metric: str = "output_throughput", **changes: object) -> Measurement:
    unit = "tokens/s" if metric == "output_throughput" else "s"
    row = dict(load_kind="burst", load_value=requests, metric=metric, unit=unit, isl=2000, osl=100)
    return measurement(**{**row, **changes})


def test_a_burst_is_the_simulators_run_of_exactly_those_requests_from_t0() -> None:
    row = _burst(300)
    d = row_deployment(row, load_profile("tensorrt-llm"))
    run = simulate(d, build_workload(WorkloadSpec(isl="2000", osl="100", num_requests=300, seed=0))).summary()
    assert predict(row).value == pytest.approx(run["throughput"]["output_tokens_per_s"], rel=1e-12)
    assert predict(_burst(300, "mean_ttft")).value == pytest.approx(run["ttft_s"]["mean"], rel=1e-12)


def test_more_requests_at_once_wait_longer_for_their_first_token() -> None:
    few, many = predict(_burst(50, "mean_ttft")).value, predict(_burst(800, "mean_ttft")).value
    assert few is not None and many is not None and many > 2 * few


def test_a_burst_of_sharegpt_requests_runs_the_sharegpt_lengths() -> None:
    sharegpt = predict(_burst(500, dataset="sharegpt", isl=None, osl=None)).value
    fixed = predict(_burst(500)).value
    assert sharegpt is not None and fixed is not None and sharegpt != pytest.approx(fixed, rel=0.01)


@pytest.mark.parametrize(("requests", "why"), [(12.5, "counts the requests sent at once"), (None, "load_value")])
def test_a_burst_without_a_whole_number_of_requests_is_skipped_with_its_reason(
    requests: float | None, why: str
) -> None:
    got = predict(_burst(requests))
    assert got.value is None and why in got.skipped_reason


@pytest.mark.parametrize(("num_gpus", "tp"), [(8, 1), (12, 8)])
def test_a_burst_over_more_gpus_than_one_replica_is_skipped_with_its_reason(num_gpus: int, tp: int) -> None:
    got = predict(_burst(1000, num_gpus=num_gpus, tp=tp, model="llama-3.1-70b"))
    assert (
        got.value is None and f"a burst over {num_gpus} GPUs where one replica spans tp·pp = {tp}" in got.skipped_reason
    )


def test_a_burst_too_large_to_simulate_is_skipped_with_its_reason() -> None:
    got = predict(_burst(1e9))
    assert got.value is None and "at most 100,000 simulated" in got.skipped_reason


def test_a_bursts_throughput_pools_with_throughput_under_load() -> None:
    assert residual_metric("output_throughput", "burst") == "output_throughput@load"
    assert residual_metric("mean_ttft", "burst") == "mean_ttft"


def test_burst_rows_fit_neither_the_offline_parameters_nor_the_step_overhead() -> None:
    assert "burst" not in STEP_OVERHEAD_LOADS
    base = load_profile("tensorrt-llm")
    bursts = [_burst(200, value=50.0, id=f"b{i}") for i in range(3)]
    bursts += [_burst(200, "mean_ttft", value=0.01, id=f"t{i}") for i in range(3)]
    with pytest.raises(ValueError, match=r"no measurement rows .* \(6 burst rows validate only: they fit nothing\)"):
        fit_profile(base, bursts)  # no offline row to fit: the bursts are not taken as offline
    kept = fit_step_overhead(base, bursts)
    assert kept.step_overhead_s == base.step_overhead_s
    assert "no online TTFT/ITL rows" in kept.fit["parameters"]["step_overhead_s"]["online"]
