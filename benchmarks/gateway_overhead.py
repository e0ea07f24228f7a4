"""Latency the gateway adds: the same streaming load straight to a twin, through the gateway, and through LiteLLM.

A twin (`tokenomy twin`), the gateway (`tokenomy gateway`) and LiteLLM's proxy each run as their own
process on this machine, and so does the load generator: the lightest client at hand (the gateway's own
HTTP/1.1 client, keep-alive connections, on uvloop) replaying an open-loop Poisson load of streaming
chat requests, timing each request's first token (TTFT) and its end (E2E) from just before it is sent.
Each run first warms its connections for a second at the same rate, then measures. The added latency is
the difference of the percentiles of the routed and the direct run, so noise from a shared CPU shows up
in both; runs alternate direct / gateway / LiteLLM `--rounds` times and the percentiles pool the rounds.

LiteLLM's proxy is installed from PyPI (`pip install 'litellm[proxy]'`) into a virtual environment kept
in ~/.cache/tokenomy-litellm (made on the first run, reused after) and points a model at the same twin
(`openai/bench` with `api_base` the twin's /v1). If it cannot be installed or started the table says
why, and the gateway's figures still print.

`--workers 1,2` also measures `tokenomy gateway --workers 2` (budgets shared through the Redis of
`--redis-url`, a fresh namespace each run). CPU/req is the server's CPU seconds (user + system, every
worker process included) over the requests it served; it is steadier than latency on a shared machine.

    .venv/bin/python benchmarks/gateway_overhead.py [--rates 200,500] [--seconds 5] [--rounds 2]
        [--max-tokens 32] [--workers 1,2] [--no-litellm] [--nice -10] [--split-tokens 2] [--floor]

The last lines are `gateway_cpu_per_streamed_request_ms: X ms` (one worker, over every rate) and
`gateway_overhead_p50_ms: X ms` (TTFT p50 added at the first rate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from tokenomy.http1 import HttpError, Pool

TOKEN = re.compile(rb'"(?:content|text)":"[^"]')  # an event carrying generated text
LITELLM_VENV = Path(os.environ.get("TOKENOMY_LITELLM_VENV", Path.home() / ".cache" / "tokenomy-litellm"))
LITELLM_KEY = "sk-tokenomy-bench-" + secrets.token_hex(16)  # LiteLLM refuses to start without a strong one
PROMPT = "What is the capital of France? Answer in one sentence."


# ---- the load generator (runs in its own process: `--worker`) -----------------------------------


async def one_request(pool: Pool, path: str, payload: bytes) -> tuple[float, float] | None:
    """(TTFT, E2E) in seconds of one streaming request, or None if it failed or ended without [DONE]."""
    t0 = time.perf_counter()
    ttft = None
    tail = b""
    try:
        resp = await pool.request("POST", path, payload)
        try:
            if resp.status != 200:
                await resp.read()
                return None
            while chunk := await resp.read_chunk():
                if ttft is None and TOKEN.search(chunk):
                    ttft = time.perf_counter() - t0
                tail = (tail + chunk)[-64:]
        finally:
            resp.release()
    except HttpError:
        return None
    e2e = time.perf_counter() - t0
    if ttft is None or b"[DONE]" not in tail:
        return None
    return ttft, e2e


async def open_loop(url: str, key: str | None, model: str, rate: float, seconds: float, max_tokens: int) -> dict:
    """Warm up for a second, then replay `seconds` of Poisson arrivals at `rate`; raw timings."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    payload = json.dumps(body).encode()
    base, _, path = url.partition("/v1")
    pool = Pool(base + "/v1", {"authorization": f"Bearer {key}"} if key else {}, connect_s=10, read_s=60)

    async def replay(n_seconds: float, seed: int) -> tuple[list, list[float], float]:
        rng = np.random.default_rng(seed)
        gaps = rng.exponential(1 / rate, max(int(rate * n_seconds), 1))
        tasks, lags = [], []
        start = time.perf_counter()
        due = start
        for gap in gaps:
            due += gap
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - due)
            tasks.append(asyncio.create_task(one_request(pool, path, payload)))
        sent_for = time.perf_counter() - start
        return await asyncio.gather(*tasks), lags, len(gaps) / sent_for

    warm, _, _ = await replay(1.0, 99)  # warm up: open the connections this rate needs
    await asyncio.sleep(0.5)
    cpu0 = time.process_time()
    results, lags, achieved = await replay(seconds, 1)
    cpu = time.process_time() - cpu0
    pool.close()
    good = [r for r in results if r is not None]
    return {
        "sent": len(results),
        "ok": len(good),
        "achieved_rps": achieved,
        "ttft_s": [r[0] for r in good],
        "e2e_s": [r[1] for r in good],
        "send_lag_p99_ms": float(np.percentile(lags, 99)) * 1e3,
        "warmup": len(warm),
        "client_cpu_ms_per_request": cpu / len(results) * 1e3,
    }


def worker_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(open_loop(args.url, args.key, args.model, args.rate, args.seconds, args.max_tokens))
    print(json.dumps(out))


# ---- the servers -----------------------------------------------------------------------------------


def niceness(n: int):  # noqa: ANN201
    """A preexec_fn giving a child process niceness n (None for 0)."""
    return (lambda: os.setpriority(os.PRIO_PROCESS, 0, n)) if n else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process and its live descendants (`--workers` processes) have used (Linux /proc)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_s(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def descendants(pid: int) -> list[int]:
    """The live child processes of `pid` and theirs (Linux /proc)."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def signal_tree(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to a server and its `--workers` processes (a worker left running keeps its timers going)."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> str | None:
    """None once `url` answers 200; otherwise why not."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return f"did not answer {url} within {timeout_s:.0f} s"


def litellm_executable(log: Path) -> tuple[str | None, str]:
    """The `litellm` command from the cached venv (installing it on first use), or None and why not."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return str(exe), f"LiteLLM from {LITELLM_VENV}"
    print(f"installing LiteLLM's proxy into {LITELLM_VENV} (once; a few minutes)…", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, capture_output=True)
        with log.open("w") as fh:
            subprocess.run(
                [str(LITELLM_VENV / "bin" / "pip"), "install", "litellm[proxy]"],
                check=True,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=1200,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(LITELLM_VENV, ignore_errors=True)
        tail = log.read_text()[-300:].strip().replace("\n", " | ") if log.exists() else ""
        return None, f"pip install 'litellm[proxy]' failed ({exc.__class__.__name__}): {tail}"
    return (str(exe), f"LiteLLM from {LITELLM_VENV}") if exe.exists() else (None, "no litellm command after install")


def litellm_version() -> str:
    try:
        out = subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "show", "litellm"], capture_output=True, text=True, timeout=60
        )
        return next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("Version"))
    except (OSError, StopIteration, subprocess.TimeoutExpired):
        return "?"


def start_litellm(state: Path, twin_port: int, nice: int) -> tuple[subprocess.Popen | None, int, str]:
    """LiteLLM's proxy in front of the twin: (process, port, note) — process None when it could not start."""
    exe, note = litellm_executable(state / "litellm-install.log")
    if exe is None:
        return None, 0, note
    config = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": "openai/bench",
                    "api_base": f"http://127.0.0.1:{twin_port}/v1",
                    "api_key": "dummy",
                },
            }
        ],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": LITELLM_KEY},
    }
    cfg = state / "litellm.yaml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch of the price map at start
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "PYTHONUNBUFFERED": "1",
    }
    log = (state / "litellm.log").open("w")
    proc = subprocess.Popen(
        [exe, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=niceness(nice),
    )
    why = wait_up(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout_s=180)
    if why is not None:
        proc.kill()
        proc.wait()
        tail = (state / "litellm.log").read_text()[-300:].strip().replace("\n", " | ")
        return None, 0, f"LiteLLM's proxy {why}: {tail}"
    return proc, port, f"{note} (litellm {litellm_version()}, 1 worker)"


def run_load(url: str, key: str | None, model: str, rate: float, seconds: float, max_tokens: int, nice: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--url", url, "--model", model]
    cmd += ["--rate", str(rate), "--seconds", str(seconds), "--max-tokens", str(max_tokens)]
    if key:
        cmd += ["--key", key]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 20 + 120, preexec_fn=niceness(nice))
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        dump = Path(tempfile.mkstemp(prefix="tokenomy-overhead-load-", suffix=".txt")[1])
        dump.write_text(out.stdout + "\n---- stderr ----\n" + out.stderr)
        raise RuntimeError(f"the load generator's output is not its JSON line ({exc}); it is in {dump}") from None


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def saturated(r: dict) -> bool:
    """A target that did not keep up: requests failed, or they queued (median TTFT over a second)."""
    return r["ok"] < r["sent"] or pct(r["ttft_s"], 50) > 1000.0


def table(results: dict[tuple[float, str], dict], rates: list[float], skipped: dict[float, str]) -> dict[float, float]:
    """Print the side-by-side table; returns the gateway's added TTFT p50 at each rate."""
    head = (
        f"{'rate':>5} {'target':>8} {'ok/sent':>11} {'req/s':>6} {'TTFT p50':>9} {'p99':>8} {'E2E p50':>8} {'p99':>8}"
    )
    print(head + f" {'added TTFT p50':>15} {'p99':>8} {'E2E p50':>8} {'p99':>8}  {'CPU/req':>8}  load")
    added_p50 = {}
    for rate in rates:
        d = results[(rate, "direct")]
        base = {q: (pct(d["ttft_s"], q), pct(d["e2e_s"], q)) for q in (50, 99)}
        names = [n for n in ("direct", "floor", "gateway", "gateway×2", "litellm") if (rate, n) in results]
        for name in names:
            r = results[(rate, name)]
            t50, t99, e50, e99 = pct(r["ttft_s"], 50), pct(r["ttft_s"], 99), pct(r["e2e_s"], 50), pct(r["e2e_s"], 99)
            line = (
                f"{rate:>5g} {name:>8} {r['ok']:>5}/{r['sent']:<5} {np.mean(r['rps']):>6.0f} {t50:>9.2f} {t99:>8.2f} "
                f"{e50:>8.2f} {e99:>8.2f}"
            )
            if name == "direct":
                line += f" {'':>15} {'':>8} {'':>8} {'':>8}"
            else:
                added = (t50 - base[50][0], t99 - base[99][0], e50 - base[50][1], e99 - base[99][1])
                line += f" {added[0]:>+15.2f} {added[1]:>+8.2f} {added[2]:>+8.2f} {added[3]:>+8.2f}"
                if name == "gateway":
                    added_p50[rate] = added[0]
            print(line + f"  {r['cpu_s'] / r['served'] * 1e3:>6.2f}ms  {r['load1']:.1f}")
        if rate in skipped:
            print(f"{rate:>5g} {'litellm':>8} not run: {skipped[rate]}")
        for name in names[1:]:
            r = results[(rate, name)]
            ratios = [pct(r[f], q) / base[q][i] for i, f in enumerate(("ttft_s", "e2e_s")) for q in (50, 99)]
            print(
                f"{rate:>5g} {name:>8} / direct: TTFT p50 {ratios[0]:.2f}× p99 {ratios[1]:.2f}×, "
                f"E2E p50 {ratios[2]:.2f}× p99 {ratios[3]:.2f}×"
            )
    return added_p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,500", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="direct/gateway/LiteLLM runs alternate this often")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--speedup", type=float, default=4.0, help="twin speed-up over the modelled H100")
    parser.add_argument(
        "--low-rate", type=float, default=10.0, help="also compare all three at this rate, which LiteLLM sustains"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the thinnest relay on the same stack (benchmarks/relay_floor.py): the stack's own CPU per "
        "request, and the gateway's above it",
    )
    parser.add_argument(
        "--split-tokens",
        type=int,
        default=0,
        help="also run the gateway at this many output tokens (e.g. 2) at the first rate, and split its CPU per "
        "request into a part per request and a part per streamed token (a line through the two points)",
    )
    parser.add_argument(
        "--workers", default="1", help="gateway worker counts to measure, e.g. 1,2 (more than 1 needs --redis-url)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="shared budgets for --workers > 1")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of every process of the benchmark (negative, as root: ahead of unrelated jobs on the machine)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return

    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    exe = str(Path(sys.executable).with_name("tokenomy"))
    twin_port, gw_port = free_port(), free_port()
    state = Path(tempfile.mkdtemp(prefix="tokenomy-overhead-"))
    config = state / "gateway.yaml"
    tier = {
        "name": "bench",
        "url": f"http://127.0.0.1:{twin_port}/v1",
        "model": "bench",
        "classes": ["simple", "complex"],
        "deployment": {"model": "llama-3.1-8b", "gpu": "H100-SXM"},
    }
    config.write_text(yaml.safe_dump({"state_dir": str(state), "tiers": [tier], "limits": {"max_tokens": 4096}}))
    from tokenomy.gateway.keys import KeyStore
    from tokenomy.gateway.ledger import Database

    _, key = KeyStore(Database("sqlite", state), state).create("bench")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    twin = subprocess.Popen(
        [exe, "twin", "--model", "llama-3.1-8b", "--served-model-name", "bench", "--port", str(twin_port),
         "--speedup", str(args.speedup), "--max-num-seqs", "1024"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=niceness(args.nice),
    )  # fmt: skip
    gateway = subprocess.Popen(
        [exe, "gateway", "--config", str(config), "--port", str(gw_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=niceness(args.nice),
    )  # fmt: skip
    procs = [gateway, twin]
    if args.floor:
        floor_port = free_port()
        floor = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("relay_floor.py")), "--port", str(floor_port),
             "--upstream", f"http://127.0.0.1:{twin_port}/v1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=niceness(args.nice),
        )  # fmt: skip
        procs.append(floor)
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    multi = None
    if 2 in worker_counts:
        multi_port = free_port()
        multi_config = state / "gateway-workers.yaml"
        multi_state = state / "workers"
        multi_cfg = {"state_dir": str(multi_state), "tiers": [tier], "limits": {"max_tokens": 4096}}
        multi_cfg["shared"] = {"redis_url": args.redis_url, "namespace": f"bench-{secrets.token_hex(4)}"}
        multi_config.write_text(yaml.safe_dump(multi_cfg))
        secret = secrets.token_hex(32)
        env["TOKENOMY_KEY_SECRET"] = os.environ["TOKENOMY_KEY_SECRET"] = secret  # one secret for both workers
        multi_key = KeyStore(Database("sqlite", multi_state), multi_state, "TOKENOMY_KEY_SECRET").create("bench")[1]
        multi_log = state / "gateway-workers.log"  # a file, not a pipe: a pipe nobody reads blocks the workers
        with multi_log.open("w") as log:
            multi = subprocess.Popen(
                [exe, "gateway", "--config", str(multi_config), "--port", str(multi_port), "--workers", "2"],
                env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=niceness(args.nice),
            )  # fmt: skip
        procs.append(multi)
    litellm_note = "skipped (--no-litellm)"
    targets = {
        "direct": (f"http://127.0.0.1:{twin_port}/v1/chat/completions", None, "bench", twin),
        "gateway": (f"http://127.0.0.1:{gw_port}/v1/chat/completions", key, "auto", gateway),
    }
    if args.floor:
        targets["floor"] = (f"http://127.0.0.1:{floor_port}/v1/chat/completions", None, "bench", floor)
    results: dict[tuple[float, str], dict] = {}
    skipped: dict[float, str] = {}

    def measure(rate: float, name: str, max_tokens: int = args.max_tokens, into: dict | None = None) -> dict:
        url, k, model, proc = targets[name]
        for other, (_, _, _, p) in targets.items():  # a proxy not being measured is paused, so its timers stay quiet
            if other not in ("direct", name):
                signal_tree(p, signal.SIGSTOP)
        if name != "direct":
            signal_tree(proc, signal.SIGCONT)
        time.sleep(0.5)
        cpu0 = cpu_s(proc.pid)
        r = run_load(url, k, model, rate, args.seconds, max_tokens, args.nice)
        acc = (results if into is None else into).setdefault(
            (rate, name), {"sent": 0, "ok": 0, "ttft_s": [], "e2e_s": [], "cpu_s": 0.0}
        )
        acc["cpu_s"] += cpu_s(proc.pid) - cpu0
        for f in ("sent", "ok", "ttft_s", "e2e_s"):
            acc[f] += r[f]
        acc["served"] = acc.get("served", 0) + r["sent"] + r["warmup"]
        acc.setdefault("rps", []).append(r["achieved_rps"])
        acc.setdefault("client_cpu", []).append(r["client_cpu_ms_per_request"])
        acc["load1"] = os.getloadavg()[0]
        return r

    try:
        up = [("twin", twin, twin_port), ("gateway", gateway, gw_port)]
        for name, proc, port in up + ([("relay floor", floor, floor_port)] if args.floor else []):
            path = "/v1/models" if name == "twin" else "/healthz"
            if (why := wait_up(f"http://127.0.0.1:{port}{path}", proc)) is not None:
                raise SystemExit(f"{name} {why}")
        if multi is not None:
            if (why := wait_up(f"http://127.0.0.1:{multi_port}/healthz", multi)) is None:
                url = f"http://127.0.0.1:{multi_port}/v1/chat/completions"
                targets["gateway×2"] = (url, multi_key, "auto", multi)
            else:
                tail = multi_log.read_text()[-500:].strip().replace("\n", " | ")
                print(f"gateway --workers 2 not measured: {why}: {tail}", file=sys.stderr)
        if not args.no_litellm:
            litellm, port, litellm_note = start_litellm(state, twin_port, args.nice)
            if litellm is not None:
                procs.insert(0, litellm)
                targets["litellm"] = (f"http://127.0.0.1:{port}/v1/chat/completions", LITELLM_KEY, "bench", litellm)
        litellm_saturated_at = None
        low = [args.low_rate] if "litellm" in targets and args.low_rate > 0 else []
        for rate in low + rates:
            for round_ in range(1 if rate in low else args.rounds):
                for name in targets:
                    if name == "litellm" and litellm_saturated_at is not None and litellm_saturated_at != rate:
                        skipped[rate] = f"it saturated at {litellm_saturated_at:g} req/s"
                        continue
                    if name == "litellm" and round_ > 0 and saturated(results[(rate, name)]):
                        continue  # one saturated run says enough
                    measure(rate, name)
                    if name == "litellm" and saturated(results[(rate, name)]) and rate not in low:
                        litellm_saturated_at = rate
        split: dict[tuple[float, str], dict] = {}
        if args.split_tokens:
            for _ in range(args.rounds):  # the same rounds as the main runs, at the first rate
                measure(rates[0], "gateway", args.split_tokens, split)
    finally:
        for proc in procs:
            signal_tree(proc, signal.SIGCONT)
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(
        f"streaming chat, {args.max_tokens} output tokens, twin Llama-3.1-8B/H100 ×{args.speedup:g}; "
        f"{args.seconds:g} s of Poisson arrivals per run, {args.rounds} rounds per rate (pooled); "
        "each server and the load generator in its own process" + (f", all at nice {args.nice}" if args.nice else "")
    )
    print(f"litellm: {litellm_note}")
    added_p50 = table(results, low + rates, skipped)
    print(
        "ms throughout; added = routed − direct percentile; CPU/req = the server process's CPU per request it served "
        f"(direct: the twin's); load = 1-min load average after the run, on {os.cpu_count()} CPUs shared by "
        "the twin, the gateway, LiteLLM, the load generator and anything else running"
    )
    client_cpu = np.mean([c for r in results.values() for c in r["client_cpu"]])
    print(f"load generator CPU: {client_cpu:.2f} ms per request")
    one = [results[(rate, "gateway")] for rate in rates]
    gateway_cpu_ms = sum(r["cpu_s"] for r in one) / sum(r["served"] for r in one) * 1e3
    if all((rate, "gateway×2") in results for rate in rates):
        two = [results[(rate, "gateway×2")] for rate in rates]
        two_ms = sum(r["cpu_s"] for r in two) / sum(r["served"] for r in two) * 1e3
        print(f"gateway_workers2_cpu_per_streamed_request_ms: {two_ms:.2f} ms (--workers 2, all processes)")
    if split:
        few = split[(rates[0], "gateway")]
        at_few = few["cpu_s"] / few["served"] * 1e3
        full = results[(rates[0], "gateway")]
        at_full = full["cpu_s"] / full["served"] * 1e3
        per_token_ms = (at_full - at_few) / (args.max_tokens - args.split_tokens)
        fixed_ms = at_few - args.split_tokens * per_token_ms
        print(
            f"gateway CPU split at {rates[0]:g} req/s: {at_few:.2f} ms/request at {args.split_tokens} output tokens, "
            f"{at_full:.2f} ms at {args.max_tokens}: {fixed_ms:.2f} ms per request + {per_token_ms * 1e3:.1f} µs per "
            "streamed token (a line through the two points)"
        )
        print(f"gateway_cpu_per_request_fixed_ms: {fixed_ms:.2f} ms")
        print(f"gateway_cpu_per_streamed_token_us: {per_token_ms * 1e3:.1f} us")
    if all((rate, "floor") in results for rate in rates):
        bare = [results[(rate, "floor")] for rate in rates]
        floor_ms = sum(r["cpu_s"] for r in bare) / sum(r["served"] for r in bare) * 1e3
        print(
            f"relay_floor_cpu_per_streamed_request_ms: {floor_ms:.2f} ms (the same stack relaying, nothing else; "
            f"the gateway's own work: {gateway_cpu_ms - floor_ms:.2f} ms per request)"
        )
    print(f"gateway_cpu_per_streamed_request_ms: {gateway_cpu_ms:.2f} ms (one worker, over {args.rates} req/s)")
    print(f"gateway_overhead_p50_ms: {added_p50[rates[0]]:.2f} ms")


if __name__ == "__main__":
    main()
