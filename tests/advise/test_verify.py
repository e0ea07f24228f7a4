"""Stage-2 jobs: pure functions of their inputs, so local processes and Ray agree, and probing stops at a pass."""

from __future__ import annotations

import pytest

from tokenomy.advise.verify import PROBE_FRACTIONS, SimJob, job_workload, probe, run_jobs
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment

D = Deployment(load_model("llama-3.1-8b"), load_accelerator("H100-SXM"), 1, 1, "fp8", "fp8", load_profile("vllm"))
CLASSES = (("chat", "lognormal:1000:0.5", "lognormal:200:0.5", 3.0), ("code", "2000", "300", 1.0))


def job(rate: float, key: object = 0) -> SimJob:
    return SimJob(key, D, None, 4, 0.7, 128, CLASSES, rate, 800, 0, 1.0, 0.05, 0.99)


def test_job_workload_follows_the_class_shares_and_lengths() -> None:
    w = job_workload(SimJob(0, D, None, 4, 0.7, 128, CLASSES, 5.0, 4000, 0, 1.0, 0.05, 0.99))
    code = w.classes == "code"
    assert abs(code.mean() - 0.25) < 0.03
    assert set(w.input_tokens[code].tolist()) == {2000} and set(w.output_tokens[code].tolist()) == {300}
    assert abs(len(w) / w.arrival_s[-1] - 5.0) < 0.5


def test_probing_lowers_the_rate_until_the_attainment_passes() -> None:
    results = probe(lambda k, f: job(200.0 * f, k), ["x"], {"x": 0.99}, executor="local")
    probes, fraction = results["x"]
    assert [p["fraction"] for p in probes] == list(PROBE_FRACTIONS[: len(probes)])
    assert all(p["slo_attainment"] < 0.99 for p in probes[:-1])  # every rate before the last failed
    assert fraction == 0 or probes[-1]["slo_attainment"] >= 0.99


def test_ray_gives_the_same_results_as_local_processes() -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tokenomy[ray]')")
    jobs = [job(4.0, "a"), job(12.0, "b")]
    local = run_jobs(jobs, "local")
    on_ray = run_jobs(jobs, "ray")
    for a, b in zip(local, on_ray, strict=True):
        assert a == b
