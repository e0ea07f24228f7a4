"""`tokenomy calibrate --host`: turn a host measurement into an accelerators-YAML entry and a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from tokenomy.calibrate.engine_kernels import EngineKernelRate, describe
from tokenomy.calibrate.host import BANDWIDTH_KERNEL, FLOPS_KERNEL, MIB, HostMeasurement

HOST_ID = "host"


def host_entry(
    m: HostMeasurement, host_id: str = HOST_ID, usd_per_hour: float = 0.0, engine_rate: EngineKernelRate | None = None
) -> dict[str, Any]:
    """The measurement as one entry of the accelerators YAML schema (catalog/accelerators.py), decimal GB/s and
    TFLOP/s; memory_gb is binary (the loader multiplies by 2**30) so the planner sees the host's RAM exactly.
    With `engine_rate` (llama.cpp's kernels timed on this host) fp32 is that rate, the sgemm peak kept in sources."""
    date = m.measured_at.split(" ")[0]
    kernels = (
        f"bandwidth: {BANDWIDTH_KERNEL}, {m.stream_bytes / MIB:.0f} MiB array, {m.threads} thread(s); "
        f"FLOP rate: {FLOPS_KERNEL}, n={m.matmul_n}, {m.blas}, {m.threads} thread(s), "
        f"{m.fp32_flops_per_s / 1e9:.1f} GFLOP/s; best of the repeats"
    )
    fp32_flops, matvec = m.fp32_flops_per_s, None
    if engine_rate is not None:
        kernels += "; " + describe(engine_rate)
        fp32_flops, matvec = engine_rate.flops_per_s, engine_rate.matvec_flops_per_s
    fp32_source = (
        "solved from llama.cpp's kernels timed here (the profile's flops_efficiency × fp32 = their rate)"
        if engine_rate
        else "the BLAS sgemm peak (llama.cpp's kernels not timed: engine extra missing)"
    )
    if matvec and engine_rate is not None:
        dense_from = "prompt evaluations and batched decode steps" if engine_rate.batch_errors else "prompt evaluations"
        fp32_source += (
            f" from its {dense_from}; matvec_tflops (one-token steps) from its decodes, which run "
            f"{fp32_flops / matvec:.2f}× slower per FLOP"
        )
    load = ", ".join(f"{x:.2f}" for x in m.load_average)
    return {
        "id": host_id,
        "name": f"{m.cpu_name} ({m.threads} of {m.logical_cpus} logical CPUs)",
        "vendor": m.vendor,
        "memory_gb": round(m.memory_bytes / 2**30, 3),
        "memory_bandwidth_gb_s": round(m.read_bytes_per_s / 1e9, 3),
        "dense_tflops": {"fp32": round(fp32_flops / 1e12, 5)},
        **({"matvec_tflops": {"fp32": round(matvec / 1e12, 5)}} if matvec else {}),
        "interconnect_gb_s": 32.0,
        "interconnect": "none (one host; tp/pp > 1 not meaningful)",
        "usd_per_hour": {"on_demand": usd_per_hour, "reserved": None},
        "sources": {
            "specs": f"measured by tokenomy calibrate --host on {m.measured_at}; {kernels}",
            "price": "--usd-per-hour" if usd_per_hour else "none given (0: the host is already paid for)",
        },
        "as_of": date,
        "notes": (
            f"threads={m.threads}: run the engine with the same thread count. Only fp32 is listed: GGUF formats "
            f"(q4_1 …) fall back to it and the llama.cpp engine profile scales it to its quantised dot-product "
            f"kernels. fp32 is {fp32_source}. Load average (1/5/15 min) at the end of the measurement: {load}; "
            f"CPU share {m.cpu_share:.0%} of {m.threads} thread(s); took {m.seconds:.1f} s."
        ),
    }


def write_host_yaml(entry: dict[str, Any], path: Path) -> None:
    """Write one entry as a YAML list, the shape `--accelerators FILE` and $TOKENOMY_ACCELERATORS read."""
    header = "# A CPU host measured by `tokenomy calibrate --host`; use with --accelerators FILE --gpu host.\n"
    path.write_text(header + yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=120))


def host_table(m: HostMeasurement, host_id: str = HOST_ID, rate: EngineKernelRate | None = None) -> Table:
    """What was measured, one row per figure."""
    table = Table(title=f"tokenomy calibrate --host → '{host_id}'", header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("how")
    table.add_row("CPU", m.cpu_name, f"{m.threads} of {m.logical_cpus} logical CPUs used")
    table.add_row("memory", f"{m.memory_bytes / 2**30:,.1f} GiB", "sysconf pages × page size")
    table.add_row("memory bandwidth", f"{m.read_bytes_per_s / 1e9:,.1f} GB/s", f"{BANDWIDTH_KERNEL}")
    table.add_row("", "", f"{m.stream_bytes / MIB:.0f} MiB array (last-level cache {m.llc_bytes / MIB:.0f} MiB)")
    table.add_row("fp32 FLOP rate", f"{m.fp32_flops_per_s / 1e9:,.1f} GFLOP/s", f"{FLOPS_KERNEL}, n={m.matmul_n}")
    table.add_row("", "", m.blas)
    if rate is not None:
        timed = ", ".join(
            f"{r.shape.name} {r.best_tokens_per_s:.1f} tok/s, prefill {r.prefill_seconds * 1e3:.0f} ms"
            + (f", {r.batch_seqs}-sequence step {r.batch_step_seconds * 1e3:.1f} ms" if r.batch_step_seconds else "")
            for r in rate.shapes
        )
        table.add_row("llama.cpp dense rate", f"{rate.flops_per_s / 1e9:,.1f} GFLOP/s", f"used as fp32: {timed}")
        if rate.matvec_flops_per_s:
            table.add_row("llama.cpp one-token rate", f"{rate.matvec_flops_per_s / 1e9:,.1f} GFLOP/s",
                          "used as matvec_tflops (decode steps)")  # fmt: skip
    load = " / ".join(f"{x:.2f}" for x in m.load_average)
    table.add_row("load average", load, "1 / 5 / 15 min, at the end")
    table.add_row("CPU share", f"{m.cpu_share:.0%}", "process CPU time / (wall × threads) while measuring")
    return table


def calibrate_host(
    output: Path | None,
    threads: int | None,
    usd_per_hour: float,
    host_id: str,
    console: Any,
    engine_kernels: str = "auto",
) -> dict[str, Any]:
    """Measure this host (and, unless engine_kernels is "off", llama.cpp's kernels on it: "auto" when the engine
    extra is installed, "on" requires it), print the table and write (or print) the YAML entry; returns the entry."""
    import sys

    from tokenomy.calibrate import engine_kernels as kernels
    from tokenomy.calibrate.host import measure_host
    from tokenomy.catalog.accelerators import Accelerator

    if usd_per_hour < 0:
        raise ValueError(f"--usd-per-hour must be ≥ 0, got {usd_per_hour}")
    if engine_kernels not in ("auto", "on", "off"):
        raise ValueError(f"--engine-kernels must be auto, on or off, got {engine_kernels!r}")
    missing = kernels.missing_parts()
    if engine_kernels == "on" and missing:
        raise ValueError(f"--engine-kernels on needs {', '.join(missing)}: pip install -e '.[engine]'")
    with console.status("measuring memory bandwidth and FLOP rate…"):
        m = measure_host(threads=threads)
    rate = None
    if engine_kernels != "off" and not missing:
        host = Accelerator.model_validate(host_entry(m, host_id, usd_per_hour))
        with console.status("timing llama.cpp's kernels on synthetic models…"):
            rate = kernels.measure_engine_rate(host, m.threads)
    elif engine_kernels == "auto":
        note = f"llama.cpp's kernels not timed (missing {', '.join(missing)}): fp32 is the BLAS sgemm peak\n"
        sys.stderr.write(note)  # stdout may carry the YAML
    entry = host_entry(m, host_id, usd_per_hour, rate)
    if output is None:
        sys.stdout.write(yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=120))
        return entry
    console.print(host_table(m, host_id, rate))
    write_host_yaml(entry, output)
    console.print(f"host entry written to {output}: tokenomy plan --gpu {host_id} --accelerators {output} …")
    return entry
