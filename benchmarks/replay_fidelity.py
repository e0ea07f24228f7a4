"""Replay fidelity: a trace through the gateway in front of twins, then `tokenomy replay` of the ledger it wrote.

Two twins (`tokenomy twin`, real time) stand behind a gateway (`tokenomy gateway`): `small`, a self-hosted
tier (llama-3.1-8b fp8 on one H100-SXM, spilling past a TTFT SLO), and `api`, a second twin priced as
OpenAI/gpt-4.1-mini. `tokenomy bench --trace` replays the first N requests of a trace through the gateway
(client-side TTFT per request), the gateway is stopped (every ledger row written), and `tokenomy replay`
runs the ledger on a fleet file with the same tiers, deployment, SLO and route. Printed:

- cost: the ledger's total (what the gateway charged: self-hosted tokens at the planner's $/Mtok at 70%
  utilisation, API tokens at catalogue prices) beside replay's prediction (GPU tiers billed by the hour for
  the run's span, API tokens at catalogue prices), and beside it the prediction with the self-hosted tier's
  tokens priced as the gateway prices them (like for like: only the routing and token counts differ);
- TTFT p50 / p90: what bench measured through the gateway, and what replay predicts.

    .venv/bin/python benchmarks/replay_fidelity.py [--trace azure-conv] [--num-requests 200] [--time-scale 1]
        [--ttft-slo 1.0]

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
DEPLOYMENT = {"model": "llama-3.1-8b", "gpu": "H100-SXM", "precision": "fp8"}
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


def gateway_config(path: Path, state: Path, small_url: str, api_url: str, ttft_slo_s: float) -> None:
    tiers = [
        {
            "name": "small",
            "url": f"{small_url}/v1",
            "model": "small",
            "classes": ["simple", "complex"],
            "deployment": {**DEPLOYMENT, "count": 1},
            "ttft_slo_s": ttft_slo_s,
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


def fleet_file(path: Path, ttft_slo_s: float) -> None:
    """The gateway's tiers as a fleet (the format of `simulate --fleet`)."""
    fleet = {
        "tiers": [
            {"name": "small", **DEPLOYMENT, "replicas": 1, "ttft_slo_s": ttft_slo_s},
            {"name": "api", "api": API},
        ],
        "routes": {"*": ["small", "api"]},
    }
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))


def percentiles_s(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return float(np.percentile(v, 50)), float(np.percentile(v, 90))


def like_for_like_usd(ledger: Path, fleet: Path, config: Path) -> float:
    """Replay's routing and token counts with the self-hosted tier's tokens priced as the gateway prices them."""
    from tokenomy.gateway.config import load_config
    from tokenomy.gateway.router import self_hosted_deployment, tier_prices
    from tokenomy.replay.alternatives import fleet_from_file
    from tokenomy.replay.sources import read_source
    from tokenomy.sim.fleet import simulate_fleet

    rep = read_source(str(ledger))
    f = fleet_from_file(fleet)
    run = simulate_fleet(f, rep.workload, 0, None)
    log = run.result.log
    gw = {t.name: t for t in load_config(config).tiers}
    usd = 0.0
    for i, tier in enumerate(f.tiers):
        t = gw[tier.name]
        prices = tier_prices(t, self_hosted_deployment(t) if t.deployment else None)
        mine = (run.tier_of == i) & log.done
        usd += (
            log.input_tokens[mine].sum() * prices.usd_per_mtok_input
            + log.output_tokens[mine].sum() * prices.usd_per_mtok_output
        ) / 1e6
    return float(usd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default="azure-conv")
    ap.add_argument("--num-requests", type=int, default=200)
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--ttft-slo", type=float, default=1.0, help="the self-hosted tier's TTFT SLO, s")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-fidelity-") as tmp:
        d = Path(tmp)
        ports = {name: free_port() for name in ("small", "api", "gateway")}
        urls = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
        procs: list[subprocess.Popen] = []
        try:
            for name in ("small", "api"):
                twin = [*CLI, "twin", "--model", DEPLOYMENT["model"], "--gpu", DEPLOYMENT["gpu"]]
                twin += ["--precision", DEPLOYMENT["precision"], "--port", str(ports[name])]
                twin += ["--served-model-name", name, "--seed", "1" if name == "api" else "0"]
                procs.append(start(twin, f"{urls[name]}/v1/models", f"twin {name}", d / f"{name}.log"))
            config = d / "gateway.yaml"
            gateway_config(config, d / "state", urls["small"], urls["api"], args.ttft_slo)
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
            bench += ["--num-requests", str(args.num_requests), "--time-scale", str(args.time_scale)]
            bench += ["--requests-jsonl", str(requests_jsonl), "--json", "--no-progress"]
            done = subprocess.run(bench, capture_output=True, text=True, env=ENV, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"bench failed ({done.returncode}): {done.stderr[-2000:]}")
            stop(gateway)
        finally:
            for p in reversed(procs):
                stop(p)
        ledger = d / "state" / "ledger.sqlite"
        fleet = d / "fleet.yaml"
        fleet_file(fleet, args.ttft_slo)
        cmd = [*CLI, "replay", str(ledger), "--fleet", str(fleet), "--json", "--workers", "1"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"replay failed ({done.returncode}): {done.stderr[-2000:]}")
        out = json.loads(done.stdout)
        actual, predicted = out["figures"][0], out["figures"][1]
        measured = [json.loads(line) for line in requests_jsonl.read_text().splitlines() if line.strip()]
        bench_p50, bench_p90 = percentiles_s([m.get("ttft_s") for m in measured if not m.get("error")])
        like = like_for_like_usd(ledger, fleet, config)
        ledger_usd, replay_usd = actual["usd"], predicted["usd"]
        print(
            f"requests: {actual['requests']} in the ledger (skipped: {out['skipped'] or 'none'}); "
            f"tiers actual {actual['tier_requests']}, replayed {predicted['tier_requests']}"
        )
        print(
            f"cost: ledger ${ledger_usd:.6f}; replay ${replay_usd:.6f} ({replay_usd / ledger_usd - 1:+.1%}); "
            f"replay with self-hosted tokens priced as the gateway does ${like:.6f} ({like / ledger_usd - 1:+.1%})"
        )
        for q, bench_s in (("p50", bench_p50), ("p90", bench_p90)):
            pred = predicted["ttft_s"][q]
            print(f"TTFT {q}: bench {bench_s * 1e3:.1f} ms, replay {pred * 1e3:.1f} ms ({pred / bench_s - 1:+.1%})")
        print(f"replay_cost_error: {replay_usd / ledger_usd - 1:.4f}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"replay_fidelity: cannot run: {' '.join(str(exc).split())}")
