"""costmodel.resolve: one DeploymentSpec, one resolve(), and every command, server and package building through it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import tokenomy.costmodel.resolve as resolve_module
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.cli import options
from tokenomy.cli.main import app
from tokenomy.costmodel.resolve import DeploymentSpec, SpecError, resolve

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "tokenomy"
runner = CliRunner()


# --- the spec ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tp": 0}, "tp"),
        ({"pp": -1}, "pp"),
        ({"gpus": 0}, "gpus"),
        ({"max_context": -5}, "max_context"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"max_num_batched_tokens": 0}, "max_num_batched_tokens"),
        ({"precision": "  "}, "precision"),
        ({"model": ""}, "model"),
    ],
)
def test_a_bad_spec_value_is_located_at_its_field(fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DeploymentSpec(**{"model": "llama-3.1-8b", **fields})
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_an_unknown_spec_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        DeploymentSpec(model="llama-3.1-8b", tensor_parallel=2)


@pytest.mark.parametrize(
    ("fields", "option"),
    [
        ({"tp": 0}, "--tp:"),
        ({"max_num_batched_tokens": 0}, "--max-batched-tokens:"),
        ({"max_context": -1}, "--max-context:"),
        ({"gpus": 6, "tp": 4}, "--gpus:"),
    ],
)
def test_the_cli_helper_names_the_option(fields: dict, option: str) -> None:
    with pytest.raises(CatalogError) as info:
        options.deployment_spec(model="llama-3.1-8b", **fields)
    assert str(info.value).startswith(option), str(info.value)
    assert "pydantic" not in str(info.value)


def test_gpus_must_be_whole_replicas_of_tp_times_pp() -> None:
    with pytest.raises(ValidationError) as info:
        DeploymentSpec(model="llama-3.1-8b", tp=2, pp=2, gpus=6)
    (err,) = info.value.errors()
    assert err["loc"] == ("gpus",) and "tp × pp = 4" in err["msg"]
    assert resolve(DeploymentSpec(model="llama-3.1-8b", tp=2, pp=2, gpus=8)).replicas == 2


def test_gpus_not_dividing_the_automatic_tp_is_a_spec_error_on_gpus() -> None:
    # 70B at bf16 needs tp=4 to fit an H100 (140 GB of weights): 6 GPUs are not whole replicas of 4.
    with pytest.raises(SpecError) as info:
        resolve(DeploymentSpec(model="llama-3.1-70b", gpus=6))
    assert info.value.field == "gpus" and "tp × pp = 4" in info.value.reason
    with pytest.raises(CatalogError, match=r"^--gpus: not a multiple of tp × pp = 4"):
        options.deployment_of(model="llama-3.1-70b", gpus=6)


# --- resolving -----------------------------------------------------------------------------------------------------


def _holds(spec: DeploymentSpec, tp: int) -> tuple[bool, int]:
    d = resolve(spec.model_copy(update={"tp": tp})).deployment
    return d.memory.fits, d.max_concurrency(spec.isl, spec.osl)["paged"]


@pytest.mark.parametrize("model", ["llama-3.1-8b", "llama-3.1-70b", "qwen3-30b-a3b"])
def test_automatic_tp_is_the_smallest_power_of_two_holding_64_requests(model: str) -> None:
    spec = DeploymentSpec(model=model)
    d = resolve(spec).deployment
    fits, held = _holds(spec, d.tp)
    assert fits and held >= 64
    if d.tp > 1:  # half that tp either does not fit or holds fewer than 64 requests
        smaller_fits, smaller_held = _holds(spec, d.tp // 2)
        assert not smaller_fits or smaller_held < 64


def test_automatic_tp_stays_within_the_gpus_given() -> None:
    r = resolve(DeploymentSpec(model="llama-3.1-70b", gpus=2))
    assert r.deployment.tp * r.deployment.pp <= 2 and r.n_gpus == 2


def test_native_precision_is_the_checkpoints() -> None:
    for model in ("llama-3.1-8b", "gpt-oss-20b"):
        d = resolve(DeploymentSpec(model=model, tp=1)).deployment
        assert d.precision == load_model(model).native_precision


def test_unknown_names_are_catalogue_errors_naming_the_thing() -> None:
    with pytest.raises(CatalogError, match="model"):
        resolve(DeploymentSpec(model="no-such-model"))
    with pytest.raises(CatalogError, match="GPU"):
        resolve(DeploymentSpec(model="llama-3.1-8b", gpu="no-such-gpu"))
    with pytest.raises(CatalogError, match="engine profile"):
        resolve(DeploymentSpec(model="llama-3.1-8b", engine="no-such-engine"))


def test_memory_fraction_and_scheduler_limits_reach_the_profile() -> None:
    base = resolve(DeploymentSpec(model="llama-3.1-8b", tp=1)).deployment
    d = resolve(
        DeploymentSpec(
            model="llama-3.1-8b", tp=1, gpu_memory_utilization=0.5, max_num_seqs=8, max_num_batched_tokens=2048
        )
    ).deployment
    assert (d.profile.gpu_memory_utilization, d.profile.max_num_seqs, d.profile.max_num_batched_tokens) == (
        0.5,
        8,
        2048,
    )
    assert d.memory.kv_capacity_tokens < base.memory.kv_capacity_tokens  # less memory for the KV cache


def test_a_given_profile_replaces_the_named_engine() -> None:
    fitted = load_profile("sglang").with_values(bw_efficiency=0.5)
    d = resolve(DeploymentSpec(model="llama-3.1-8b", tp=1, engine="vllm"), fitted).deployment
    assert d.profile == fitted


# --- every path builds through resolve -----------------------------------------------------------------------------


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The model ids resolve() looked up, in order (resolve reads the model first)."""
    calls: list[str] = []
    real = resolve_module.load_model

    def counting(name: str):  # noqa: ANN202
        calls.append(name)
        return real(name)

    monkeypatch.setattr(resolve_module, "load_model", counting)
    yield calls


def test_plan_builds_through_resolve(resolved: list[str]) -> None:
    res = runner.invoke(app, ["plan", "--model", "llama-3.1-8b", "--precision", "bf16,fp8", "--json"])
    assert res.exit_code == 0, res.output
    assert resolved == ["llama-3.1-8b", "llama-3.1-8b"]


def test_simulate_and_its_draft_build_through_resolve(resolved: list[str]) -> None:
    args = ["simulate", "--model", "llama-3.1-8b", "--draft-model", "llama-3.2-1b", "--num-requests", "20", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert resolved == ["llama-3.1-8b", "llama-3.2-1b"]


def test_the_twin_builds_through_resolve(resolved: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenomy.twin.server as server
    from tokenomy.cli.twin import twin_server
    from tokenomy.sim.replica import ReplicaConfig

    twin = twin_server(DeploymentSpec(model="llama-3.1-8b"), 1.0, None, 0, None, ReplicaConfig(), 256, 0, 0)
    assert twin.engine.d.model.id == "llama-3.1-8b" and resolved == ["llama-3.1-8b"]

    def stop(d, **_):  # noqa: ANN001, ANN202
        raise RuntimeError(d.model.id)

    monkeypatch.setattr(server, "build_twin", stop)
    with pytest.raises(RuntimeError, match="llama-3.2-1b"), server.running_twin("llama-3.2-1b"):
        pass
    assert resolved[-1] == "llama-3.2-1b"


def test_gateway_tiers_build_through_resolve(resolved: list[str]) -> None:
    from tokenomy.gateway.config import load_config
    from tokenomy.gateway.router import self_hosted_deployment

    cfg = load_config(REPO / "examples" / "gateway.yaml")
    tiers = [t for t in cfg.tiers if t.deployment is not None]
    for t in tiers:
        d = self_hosted_deployment(t)
        assert d.n_gpus == t.deployment.count
    assert resolved == [t.deployment.model for t in tiers]


def test_fleet_files_build_through_resolve(resolved: list[str], tmp_path: Path) -> None:
    from tokenomy.sim.fleetfile import load_fleet
    from tokenomy.sim.replica import ReplicaConfig

    fleet = load_fleet(REPO / "examples" / "fleet.yaml", ReplicaConfig())
    gpu_tiers = [t for t in fleet.tiers if hasattr(t, "deployment")]
    assert gpu_tiers and resolved == [t.deployment.model.id for t in gpu_tiers]
    bad = tmp_path / "fleet.yaml"
    bad.write_text("tiers:\n  - {name: b, model: llama-3.1-8b, gpu: no-such-gpu}\nroutes: {'*': [b]}\n")
    with pytest.raises(CatalogError, match=r"fleet.yaml: .*GPU"):
        load_fleet(bad, ReplicaConfig())


def test_calibration_rows_build_through_resolve(resolved: list[str]) -> None:
    from tokenomy.calibrate import predict
    from tokenomy.calibrate.measurements import read_measurement_file

    rows = read_measurement_file(SRC / "catalog" / "data" / "measurements.csv").rows[:5]
    predict._resolved.cache_clear()
    profile = load_profile("tensorrt-llm")
    for row in rows:
        predict.row_deployment(row, profile)
    assert resolved and set(resolved) <= {r.model for r in rows}


def test_advisor_candidates_build_through_resolve(resolved: list[str]) -> None:
    from tests.advise.conftest import small_workload
    from tokenomy.advise.search import evaluate

    table = evaluate(small_workload())
    assert len(resolved) >= len(table.keys) > 0


CONSTRUCTOR = re.compile(r"(?<![\w.])Deployment\(")
# Builds a Deployment from objects that no catalogue name stands for (a synthetic architecture timed on this host).
FROM_OBJECTS = {"calibrate/engine_kernels.py"}


def test_only_the_costmodel_constructs_a_deployment() -> None:
    builders = {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if CONSTRUCTOR.search(p.read_text()) and p.parent.name != "costmodel"
    }
    assert builders <= FROM_OBJECTS, f"build through costmodel.resolve instead: {sorted(builders - FROM_OBJECTS)}"
    costmodel = {p.name for p in (SRC / "costmodel").glob("*.py") if CONSTRUCTOR.search(p.read_text())}
    assert costmodel <= {"deployment.py", "resolve.py"}
