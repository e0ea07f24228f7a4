"""Glue between `tokenomy twin` and the twin server: build it from the simulator's options, serve until stopped."""

from __future__ import annotations

import gc
import threading

import numpy as np
from rich.console import Console
from rich.markup import escape

from tokenomy.cli.options import resolve_deployment
from tokenomy.cli.signals import stop_on_signals
from tokenomy.costmodel.perf import single_stream
from tokenomy.costmodel.resolve import DeploymentSpec
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.summary import check_runnable
from tokenomy.sim.workload import Workload
from tokenomy.twin.server import TwinServer, TwinThread, build_twin

STARTUP_ISL = 512  # prompt and output lengths of the unloaded TTFT/ITL printed at startup
STARTUP_OSL = 256


def twin_server(
    spec: DeploymentSpec,
    speedup: float,
    fail: str | None,
    after_tokens: int,
    served_model_name: str | None,
    replica: ReplicaConfig,
    default_max_tokens: int,
    max_model_len: int,
    seed: int,
    answer_pass_rate: float | None = None,
    answer_pass_rate_by_type: dict[str, float] | None = None,
    busy_wait: bool = False,
) -> TwinServer:
    """The twin for these options; CatalogError or ValueError when they are wrong."""
    d = resolve_deployment(spec).deployment
    check_runnable(d, Workload(np.zeros(0), np.zeros(0), np.zeros(0)), None)  # refuses a model that does not fit
    return build_twin(
        d,
        speedup=speedup,
        served_model_name=served_model_name,
        fail=fail,
        seed=seed,
        replica=replica,
        busy_wait=busy_wait,
        default_max_tokens=default_max_tokens,
        max_model_len=max_model_len,
        after_tokens=after_tokens,
        answer_pass_rate=answer_pass_rate,
        answer_pass_rate_by_type=answer_pass_rate_by_type,
    )


def parse_pass_rates(text: str | None) -> dict[str, float] | None:
    """'arithmetic=0.5,code=0.9' → {"arithmetic": 0.5, "code": 0.9}; ValueError names a bad entry."""
    if not text:
        return None
    rates = {}
    for entry in text.split(","):
        name, _, value = entry.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--answer-pass-rate-by-type: expected TYPE=RATE, got '{entry}'") from None
    return rates


def startup_line(twin: TwinServer, url: str) -> str:
    """One rich line: where it serves, what it stands in for, and its unloaded latency."""
    d = twin.engine.d
    ttft_s, itl_s = single_stream(d, STARTUP_ISL, STARTUP_OSL)
    k = twin.engine.speedup
    speed = f", {k:g}× real time (wall: TTFT {ttft_s / k * 1e3:.1f} ms, ITL {itl_s / k * 1e3:.2f} ms)" if k != 1 else ""
    fault = f"; [red]fail={escape(str(twin.fail))}[/]" if twin.fail else ""
    return (
        f"[bold green]twin[/] serving [bold]{escape(twin.settings.served_model_name)}[/] at "
        f"[link={url}/v1]{url}/v1[/link] — {escape(d.model.id)} on {d.n_gpus}× {d.gpu.id} "
        f"(tp={d.tp}, pp={d.pp}, {d.fmt.name}, {d.profile.name}); "
        f"predicted unloaded TTFT {ttft_s * 1e3:.1f} ms ({STARTUP_ISL}-token prompt), ITL {itl_s * 1e3:.2f} ms"
        f"{speed}{fault}"
    )


def serve(twin: TwinServer, host: str, port: int, console: Console) -> None:
    """Serve until Ctrl-C or SIGTERM."""
    runner = TwinThread(twin, host, port)
    url = runner.start()
    gc.collect()
    gc.freeze()  # startup objects leave the cyclic GC: a full collection would stall token emission for ~50 ms
    console.print(startup_line(twin, url))
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            while not stop.is_set() and runner.thread.is_alive():
                stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        console.print("twin stopped")
