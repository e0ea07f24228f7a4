"""`tokenomy simulate --slo … --find-capacity`: bench's capacity search with probes on the simulator (virtual time)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tokenomy.bench.search import CapacitySettings, parse_slo
from tokenomy.bench.simprobe import simulate_capacity
from tokenomy.cli.main import app
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload

runner = CliRunner()
DEPLOYMENT = ["--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--tp", "1", "--isl", "128", "--osl", "32"]


def simulate_cli(*args: str):
    return runner.invoke(app, ["simulate", *DEPLOYMENT, *args])


def test_a_loose_slo_finds_the_replicas_saturation_rate_and_a_tight_one_less() -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM", tp=1)).deployment
    spec = WorkloadSpec(isl="128", osl="32", seed=0)
    offline = simulate(d, build_workload(spec.model_copy(update={"num_requests": 4000})), ReplicaConfig())
    ceiling = offline.summary()["throughput"]["requests_per_s"]  # every request queued at once: the most it serves
    settings = CapacitySettings(start_rps=ceiling / 4, max_probes=12, min_window_s=20.0)
    loose = simulate_capacity(d, spec, ReplicaConfig(), parse_slo("e2e_p99<=60s"), settings).search
    tight = simulate_capacity(d, spec, ReplicaConfig(), parse_slo("tpot_p90<=12ms"), settings).search
    assert loose.best_ok is not None and tight.best_ok is not None
    assert 0.8 * ceiling <= loose.best_ok <= 1.05 * ceiling  # served >= 95% of offered: at most ~5% over
    assert tight.best_ok < 0.8 * loose.best_ok
    failed = [p for p in loose.probes if not p.ok]
    assert failed and all(any(r.startswith("served ") for r in p.reasons) for p in failed)  # overload, not latency


def test_find_capacity_on_the_command_line_json_and_text() -> None:
    res = simulate_cli("--slo", "ttft_p99<=500ms,tpot_p90<=15ms", "--find-capacity", "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    search = s["slo_search"]
    assert search["best_rate_rps"] > 0 and search["rate_unit"] == "req/s per replica"
    assert s["slo"] == ["ttft_p99<=0.5s", "tpot_p90<=0.015s"] and s["deployment"]["tp"] == 1
    assert all(p["ok"] or p["reasons"] for p in search["probes"])
    assert all(p["measured_requests"] >= 50 for p in search["probes"])
    res = simulate_cli("--slo", "ttft_p99<=500ms,tpot_p90<=15ms", "--find-capacity")
    text = " ".join(res.stdout.split())
    assert res.exit_code == 0 and "capacity search on the simulator: llama-3.1-8b on H100-SXM tp=1" in text
    assert f"highest rate meeting the SLO {search['best_rate_rps']:,.4g} req/s" in text
    assert "FAIL (" in text  # the failing probes say why


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "ttft_p99<=1s"], "--slo and --find-capacity go together"),
        (["--find-capacity"], "--slo and --find-capacity go together"),
        (["--slo", "ttft_p99<=1parsec", "--find-capacity"], "unit 'parsec'"),
    ],
)
def test_capacity_options_say_what_is_wrong(args: list[str], message: str) -> None:
    res = simulate_cli(*args)
    assert res.exit_code == 2 and message in " ".join(res.output.split()) and "Traceback" not in res.output
