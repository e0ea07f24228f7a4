"""`tokenomy calibrate --host`: the host measurement, the accelerator entry it writes, and `plan` on that entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tokenomy.calibrate import engine_kernels, host
from tokenomy.calibrate.host import (
    HostMeasurement,
    last_level_cache_bytes,
    matmul_flops_per_s,
    measure_host,
    stream_read_bytes_per_s,
    total_memory_bytes,
)
from tokenomy.catalog.accelerators import Accelerator, accelerators, load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.hostcal import host_entry, write_host_yaml
from tokenomy.cli.main import app
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import single_stream

runner = CliRunner()
MIB = 2**20


def quick_measurement(threads: int | None = 1) -> HostMeasurement:
    """A real measurement with small sizes: 16 MiB streamed, 128×128 matmuls, a few repeats."""
    return measure_host(threads=threads, stream_bytes=16 * MIB, matmul_n=128, repeats=3, min_seconds=0.0)


@pytest.fixture
def quick_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `calibrate --host` measure with small sizes (the same code path, seconds less); llama.cpp's kernels are
    not timed here (tests/calibrate/test_engine_kernels.py and the engine tests do that)."""
    monkeypatch.setattr(engine_kernels, "missing_parts", lambda: ["llama-cpp-python (not timed in unit tests)"])
    real = host.measure_host
    monkeypatch.setattr(
        host,
        "measure_host",
        lambda threads=None: real(threads=threads, stream_bytes=16 * MIB, matmul_n=128, repeats=3, min_seconds=0.0),
    )


def test_kernels_return_sane_positive_rates() -> None:
    bandwidth = stream_read_bytes_per_s(8 * MIB, threads=1, repeats=2)
    flops = matmul_flops_per_s(n=96, threads=1, repeats=2)
    assert 1e8 < bandwidth < 1e13  # 0.1 GB/s .. 10 TB/s
    assert 1e7 < flops < 1e15  # 10 MFLOP/s .. 1 PFLOP/s


def test_kernels_run_on_several_threads() -> None:
    assert stream_read_bytes_per_s(8 * MIB, threads=2, repeats=2) > 1e8
    assert matmul_flops_per_s(n=96, threads=2, repeats=2) > 1e7


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"repeats": 0}, {"array_bytes": 0}])
def test_stream_rejects_non_positive_arguments(kwargs: dict[str, int]) -> None:
    args = {"array_bytes": MIB, "threads": 1, "repeats": 1, **kwargs}
    with pytest.raises(ValueError, match="positive"):
        stream_read_bytes_per_s(**args)


def test_matmul_rejects_non_positive_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        matmul_flops_per_s(n=0)


def test_measure_host_fills_every_figure() -> None:
    m = quick_measurement(threads=1)
    assert m.threads == 1 and m.logical_cpus >= 1
    assert m.memory_bytes == total_memory_bytes() > 2**28  # more than 256 MiB of RAM
    assert m.read_bytes_per_s > 1e8 and m.fp32_flops_per_s > 1e7
    assert m.stream_bytes == 16 * MIB and m.matmul_n == 128
    assert len(m.load_average) == 3 and all(x >= 0 for x in m.load_average)
    assert 0 < m.cpu_share and m.seconds > 0
    assert m.measured_at[:2] == "20" and m.cpu_name


def test_measure_host_rejects_zero_threads() -> None:
    with pytest.raises(ValueError, match="threads must be positive"):
        measure_host(threads=0, stream_bytes=MIB, matmul_n=32, repeats=1)


def test_last_level_cache_is_the_highest_level(tmp_path: Path) -> None:
    for index, level, size in (("index0", 1, "32K"), ("index2", 2, "1024K"), ("index3", 3, "32768K")):
        (tmp_path / index).mkdir()
        (tmp_path / index / "level").write_text(f"{level}\n")
        (tmp_path / index / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(tmp_path) == 32 * MIB
    assert last_level_cache_bytes(tmp_path / "missing") == host.DEFAULT_LLC_BYTES


def test_entry_loads_through_the_catalogue_loader(tmp_path: Path) -> None:
    m = quick_measurement()
    path = tmp_path / "host.yaml"
    write_host_yaml(host_entry(m, "my-host", usd_per_hour=0.25), path)
    loaded = load_accelerator("my-host", str(path))
    assert isinstance(loaded, Accelerator)
    assert loaded.bandwidth_bytes_per_s == pytest.approx(m.read_bytes_per_s, rel=1e-3)
    assert loaded.flops_per_s("fp32") == pytest.approx(m.fp32_flops_per_s, rel=1e-3)
    assert loaded.memory_bytes == pytest.approx(m.memory_bytes, rel=1e-3)  # memory_gb is binary GB
    assert loaded.usd_per_gpu_hour() == 0.25
    assert "measured by tokenomy calibrate --host" in loaded.sources["specs"]
    assert "H100-SXM" in accelerators(str(path))  # added to the catalogue, not replacing it


def test_q4_1_on_a_host_uses_the_fp32_rate_and_the_llama_cpp_profile(tmp_path: Path) -> None:
    """The single-stream ITL is the profile's formula on the host's two measured rates (costmodel/perf.py)."""
    path = tmp_path / "host.yaml"
    path.write_text(
        yaml.safe_dump([{"id": "h", "memory_gb": 16, "memory_bandwidth_gb_s": 20, "dense_tflops": {"fp32": 0.1}}])
    )
    profile = load_profile("llama.cpp")
    d = Deployment(load_model("smollm2-135m"), load_accelerator("h", str(path)), precision="q4_1", profile=profile)
    n = d.numbers()
    # GGUF Q4_1 linear layers (20 bytes per 32 weights) and the tied Q8_0 embedding as lm_head (34 per 32).
    assert n.dense_bytes == pytest.approx((26_542_080 + 79_626_240) * 20 / 32 + 28_311_552 * 34 / 32 + 35_136 * 2)
    assert n.matmul_flops_per_s == pytest.approx(0.1e12 * profile.flops_efficiency)
    assert n.bytes_per_s == pytest.approx(20e9 * profile.bw_efficiency)
    ctx = 16 + 128 / 2
    t_mem = (n.dense_bytes + n.kv_full_bytes_per_token * ctx) / n.bytes_per_s
    t_comp = (n.matmul_flops_per_token + n.lm_head_flops_per_seq + n.attn_full_flops_per_pair * ctx) / (
        n.matmul_flops_per_s
    )
    k = profile.overlap_k
    expected = profile.step_overhead_s + 30 * profile.layer_overhead_s + profile.seq_overhead_s
    expected += (t_mem**k + t_comp**k) ** (1 / k)
    assert single_stream(d, 16, 128)[1] == pytest.approx(expected, rel=1e-9)


def test_llama_cpp_profile_describes_a_one_request_cpu_engine() -> None:
    p = load_profile("llama.cpp")
    assert p.name == "llama.cpp" and p.max_num_seqs == 1
    assert p.bw_efficiency == 1.0  # relative to a measured streaming read, not a datasheet
    assert p.runtime_overhead_gb < 1.0 and 0 < p.flops_efficiency < 1


def test_calibrate_host_writes_yaml_that_plan_runs_on(tmp_path: Path, quick_host: None) -> None:
    out = tmp_path / "host.yaml"
    res = runner.invoke(app, ["calibrate", "--host", "--threads", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "memory bandwidth" in res.output and "GFLOP/s" in res.output and "load average" in res.output
    entry = yaml.safe_load(out.read_text())[0]
    assert entry["id"] == "host" and set(entry["dense_tflops"]) == {"fp32"}
    assert "threads=1" in entry["notes"]
    plan_args = ["plan", "--model", "smollm2-135m", "--precision", "q4_1", "--gpu", "host",
                 "--accelerators", str(out), "--engine", "llama.cpp", "--isl", "16", "--osl", "128"]  # fmt: skip
    res = runner.invoke(app, [*plan_args, "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    assert plan["fits"] and plan["gpu"] == "host" and plan["engine"] == "llama.cpp" and plan["tp"] == 1
    assert 1e-4 < plan["itl_s"] < 10.0
    # the KV cache holds thousands of such requests, but llama.cpp's server runs one at a time, and plan says so
    assert plan["max_concurrency"]["paged"] > 1 and plan["max_concurrency"]["engine"] == 1
    assert plan["memory"]["capacity_bytes"] == pytest.approx(entry["memory_gb"] * 2**30)
    table = runner.invoke(app, plan_args)
    assert table.exit_code == 0, table.output
    assert "decode (single stream)" in table.output and f"{1 / plan['itl_s']:,.1f} tok/s" in table.output
    assert "scheduler's max_num_seqs" in table.output


def test_calibrate_host_without_output_prints_the_yaml(quick_host: None) -> None:
    res = runner.invoke(app, ["calibrate", "--host", "--threads", "1", "--usd-per-hour", "0.5", "--host-id", "box"])
    assert res.exit_code == 0, res.output
    entry = yaml.safe_load(res.stdout)[0]
    assert entry["id"] == "box" and entry["usd_per_hour"]["on_demand"] == 0.5
    assert Accelerator.model_validate(entry).memory_bandwidth_gb_s > 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calibrate"], "give a measurement FILE to fit, or --host"),
        (["calibrate", "rows.csv", "--host"], "not both"),
        (["calibrate", "--host", "--threads", "0"], "threads must be positive"),
        (["calibrate", "--host", "--usd-per-hour", "-1"], "--usd-per-hour must be ≥ 0"),
    ],
)
def test_calibrate_argument_errors(args: list[str], message: str, quick_host: None) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output.replace("\n", " ")


def test_calibrate_file_still_fits_measurements(tmp_path: Path) -> None:
    res = runner.invoke(app, ["calibrate", str(tmp_path / "none.csv")])
    assert res.exit_code == 2 and "no such file" in res.output
