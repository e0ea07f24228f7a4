"""Replay fidelity: a trace through the gateway in front of twins, then `tokenomy replay` of the ledger it wrote.

Two twins (`tokenomy twin --speedup K`) stand behind a gateway (`tokenomy gateway`): `small`, a self-hosted
tier (llama-3.1-70b fp8 on two H100-SXM, spilling past a TTFT SLO), and `api`, a second twin priced as
OpenAI/gpt-4.1-mini. `tokenomy bench --trace --time-scale 1/K` replays the first N requests of a trace through
the gateway K times faster than real time (client-side TTFT per request), the gateway is stopped (every ledger
row written), and `tokenomy replay --time-scale K` runs the ledger, back in real time, on a fleet file with the
same tiers, deployment, SLO and route (the API tier's latency: the cost model's unloaded TTFT and TPOT of the
twin behind it). Printed:

- cost: the ledger's total beside replay's prediction. Both price by the one rule of docs/design.md ("Pricing
  self-hosted tokens"): self-hosted tokens at the deployment's $/hour amortised at the planned utilisation, API
  tokens at catalogue prices (cached input at the cached rate); replay's fleet bill (GPU-hours over the span)
  beside them;
- TTFT p50 / p90: what bench measured through the gateway (wall seconds × K), and what replay predicts; the
  gateway ledger's and the self-hosted twin's own figures beside them show what the HTTP hops and the gateway
  add (fixed wall milliseconds, which a speedup of K multiplies by K in the model's time).

    .venv/bin/python benchmarks/replay_fidelity.py [--trace azure-conv] [--num-requests 300] [--speedup 2]
        [--time-scale 1] [--ttft-slo 1.0] [--model llama-3.1-70b] [--tp 2]

Why these defaults: the twins and the gateway add a few wall milliseconds of HTTP and Python per request, which
replay does not model and a speedup of K multiplies by K in the model's time. With a 70B model TTFTs are about
100 ms and those milliseconds a few percent of them; with llama-3.1-8b (`--model llama-3.1-8b --tp 1`) TTFT is
about 20 ms and they are 12–20% of it (at --speedup 1; more at larger K). Speedups above 2 also make the gateway
spill more than replay does (requests stay in flight longer, in the model's time).

The last line is `replay_cost_error: X` (replay's predicted total / the ledger's − 1, as a fraction).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

ADMIN_KEY = "adm-" + secrets.token_hex(16)
ENV = {**os.environ, "TOKENOMY_ADMIN_KEY": ADMIN_KEY, "TOKENOMY_KEY_SECRET": secrets.token_hex(24)}
CLI = [sys.executable, "-m", "tokenomy.cli.main"]
DEPLOYMENT = {"model": "llama-3.1-70b", "gpu": "H100-SXM", "precision": "fp8"}  # --model, --tp change it
TP = [2]
API = "OpenAI/gpt-4.1-mini"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, what: str, log: Path) -> subprocess.Popen:
    """Start a process (stderr to `log`) and wait until `url` answers."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=ENV)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{what} did not come up in 120 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def gateway_config(path: Path, state: Path, small_url: str, api_url: str, ttft_slo_s: float, speedup: float) -> None:
    tiers = [
        {
            "name": "small",
            "url": f"{small_url}/v1",
            "model": "small",
            "classes": ["simple", "complex"],
            "deployment": {**DEPLOYMENT, "count": TP[0]},
            "ttft_slo_s": ttft_slo_s,
            "spill_hold_s": 0.5 / speedup,  # the default hold, in the twins' time
        },
        {"name": "api", "url": f"{api_url}/v1", "model": "api", "classes": ["simple", "complex"], "price": API},
    ]
    config = {
        "state_dir": str(state),
        "admin_key_env": "TOKENOMY_ADMIN_KEY",
        "ledger": {"url": "sqlite"},
        "tiers": tiers,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def fleet_file(path: Path, ttft_slo_s: float, isl: int, osl: int) -> None:
    """The gateway's tiers as a fleet (the format of `simulate --fleet`); the API tier answers like the idle twin
    behind it: the cost model's TTFT and step time for one request of the trace's mean lengths."""
    from tokenomy.costmodel.resolve import DeploymentSpec, resolve
    from tokenomy.watch.compare import predict

    d = resolve(DeploymentSpec(**DEPLOYMENT, tp=TP[0])).deployment
    idle = predict(d, 1.0, isl, osl)
    api = {"name": "api", "api": API, "ttft_median_s": idle.ttft_s, "ttft_sigma": 0.3}
    api |= {"tpot_median_s": idle.itl_s, "tpot_sigma": 0.1}
    fleet = {
        "tiers": [{"name": "small", **DEPLOYMENT, "tp": TP[0], "replicas": 1, "ttft_slo_s": ttft_slo_s}, api],
        "routes": {"*": ["small", "api"]},
    }
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))


def twin_mean_ttft_s(url: str) -> float:
    """The twin's own mean TTFT (its vllm:time_to_first_token_seconds histogram, wall seconds): the engine alone,
    without the HTTP hops and the gateway."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"vllm:time_to_first_token_seconds_{part}"):
                values[part] = float(line.rsplit(" ", 1)[1])
    return values["sum"] / values["count"] if values.get("count") else float("nan")


def percentiles_s(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return float(np.percentile(v, 50)), float(np.percentile(v, 90))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default="azure-conv")
    ap.add_argument("--num-requests", type=int, default=300)
    ap.add_argument("--speedup", type=float, default=2.0, help="the twins run this many times faster than real time")
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--ttft-slo", type=float, default=1.0, help="the self-hosted tier's TTFT SLO, s")
    ap.add_argument("--model", default=DEPLOYMENT["model"], help="the twins' model (catalogue id)")
    ap.add_argument("--tp", type=int, default=TP[0], help="GPUs per twin (tensor parallel)")
    args = ap.parse_args()
    DEPLOYMENT["model"], TP[0] = args.model, args.tp
    with tempfile.TemporaryDirectory(prefix="replay-fidelity-") as tmp:
        d = Path(tmp)
        ports = {name: free_port() for name in ("small", "api", "gateway")}
        urls = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
        procs: list[subprocess.Popen] = []
        try:
            for name in ("small", "api"):
                twin = [*CLI, "twin", "--model", DEPLOYMENT["model"], "--gpu", DEPLOYMENT["gpu"]]
                twin += ["--precision", DEPLOYMENT["precision"], "--tp", str(TP[0]), "--port", str(ports[name])]
                twin += ["--served-model-name", name, "--seed", "1" if name == "api" else "0"]
                twin += ["--speedup", str(args.speedup)]
                procs.append(start(twin, f"{urls[name]}/v1/models", f"twin {name}", d / f"{name}.log"))
            config = d / "gateway.yaml"
            gateway_config(config, d / "state", urls["small"], urls["api"], args.ttft_slo, args.speedup)
            gw_cmd = [*CLI, "gateway", "--config", str(config), "--port", str(ports["gateway"])]
            gateway = start(gw_cmd, f"{urls['gateway']}/healthz", "the gateway", d / "gateway.log")
            procs.append(gateway)
            r = httpx.post(
                f"{urls['gateway']}/admin/keys",
                json={"team": "bench"},
                headers={"authorization": f"Bearer {ADMIN_KEY}"},
                timeout=10,
            )
            r.raise_for_status()
            ENV["REPLAY_FIDELITY_KEY"] = r.json()["key"]
            requests_jsonl = d / "requests.jsonl"
            bench = [*CLI, "bench", "--url", f"{urls['gateway']}/v1", "--model", "auto"]
            bench += ["--api-key-env", "REPLAY_FIDELITY_KEY", "--trace", args.trace]
            bench += ["--num-requests", str(args.num_requests), "--time-scale", str(args.time_scale / args.speedup)]
            bench += ["--requests-jsonl", str(requests_jsonl), "--json", "--no-progress"]
            done = subprocess.run(bench, capture_output=True, text=True, env=ENV, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"bench failed ({done.returncode}): {done.stderr[-2000:]}")
            stop(gateway)
            twin_ttft_s = twin_mean_ttft_s(urls["small"]) * args.speedup
        finally:
            for p in reversed(procs):
                stop(p)
        ledger = d / "state" / "ledger.sqlite"
        fleet = d / "fleet.yaml"
        measured = [json.loads(line) for line in requests_jsonl.read_text().splitlines() if line.strip()]
        ok = [m for m in measured if not m.get("error")]
        isl = round(float(np.mean([m["prompt_tokens"] for m in ok])))
        osl = round(float(np.mean([m["output_tokens"] for m in ok])))
        fleet_file(fleet, args.ttft_slo, isl, osl)
        cmd = [*CLI, "replay", str(ledger), "--fleet", str(fleet), "--json", "--workers", "1"]
        cmd += ["--time-scale", str(args.speedup)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"replay failed ({done.returncode}): {done.stderr[-2000:]}")
        out = json.loads(done.stdout)
        actual, predicted = out["figures"][0], out["figures"][1]
        bench_p50, bench_p90 = percentiles_s([m["ttft_s"] * args.speedup for m in ok if m.get("ttft_s") is not None])
        ledger_usd, replay_usd = actual["usd"], predicted["usd"]
        print(
            f"requests: {actual['requests']} in the ledger (skipped: {out['skipped'] or 'none'}); "
            f"tiers actual {actual['tier_requests']}, replayed {predicted['tier_requests']}"
        )
        print(
            f"cost: ledger ${ledger_usd:.6f}; replay ${replay_usd:.6f} ({replay_usd / ledger_usd - 1:+.1%}); "
            f"replay's fleet bill (GPU-hours over the span + API tokens) ${predicted['fleet_usd']:.6f}"
        )
        for q, bench_s in (("p50", bench_p50), ("p90", bench_p90)):
            pred = predicted["ttft_s"][q]
            gw = actual["ttft_s"].get(q, float("nan"))
            print(
                f"TTFT {q}: bench {bench_s * 1e3:.1f} ms, replay {pred * 1e3:.1f} ms ({pred / bench_s - 1:+.1%}); "
                f"the gateway's ledger (upstream's first token) {gw * 1e3:.1f} ms"
            )
        bench_mean = float(np.mean([m["ttft_s"] * args.speedup for m in ok if m.get("ttft_s") is not None]))
        replay_mean = float(np.mean(predicted["ttft_quantiles_s"]))  # mean of its 101 percentiles
        print(
            f"TTFT mean: bench {bench_mean * 1e3:.1f} ms, the self-hosted twin's own (its /metrics, no HTTP or "
            f"gateway) {twin_ttft_s * 1e3:.1f} ms, replay ≈{replay_mean * 1e3:.1f} ms"
        )
        print(f"replay_cost_error: {replay_usd / ledger_usd - 1:.4f}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"replay_fidelity: cannot run: {' '.join(str(exc).split())}")
