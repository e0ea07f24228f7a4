"""Token-emission jitter of `tokenomy twin` with many concurrent streams, against a baseline in the same process.

The twin runs in this process (uvicorn on a background thread); the client, `tokenomy bench`'s HTTP/1.1
client, runs in a separate process so it does not compete for the server's event loop. Server side, every
write of a step's tokens to a stream records when it completed against the step's scheduled end, counted
after every stream has its first token:

- emission lateness (signed; the pass of 256 writes is centred on the step's end): one pass takes several
  ms here (a socket write each), so the spread of lateness is at least the pass's duration;
- jitter as delay variation (RFC 3393): per stream, the change in lateness from one token to the next, i.e.
  |actual gap − scheduled gap| between consecutive token events. The twin writes streams in the batch's
  order, which is stable from step to step, so a stream's place in the pass does not count as jitter.

Each round runs the baseline (writes back to back, sleeping between steps: the twin before pacing) and then
the twin as `tokenomy twin --busy-wait` runs it (paced writes, spinning between steps; `--no-busy-wait`:
paced, sleeping). The headline is the median over rounds of the delay variation's p99. Before the rounds, a
busy loop measures how often this machine takes the CPU away for more than 1 ms: on a virtual machine that
happens a few times a second, and each time a pass is under way, up to every stream's next gap is off by as
much — the floor under the p99.

    .venv/bin/python benchmarks/twin_jitter.py --streams 256 --osl 512 [--rounds 3] [--no-busy-wait]

Last line: `emission_jitter_p99_ms: X ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import time

import numpy as np
import uvloop

from tokenomy.costmodel.perf import decode_step_seconds
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.http1 import Pool
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.tokenizer import prompt_of
from tokenomy.twin.server import TwinThread, build_twin

PROBE_S = 5.0  # seconds of busy loop measuring how often the OS takes the CPU away


async def _httpx_client(url: str, model: str, streams: int, isl: int, osl: int) -> list[list[float]]:
    """Like `_client`, with httpx: a heavier client (about one CPU for 256 streams here) that never sleeps."""
    import httpx

    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(300.0)) as client:

        async def one(i: int) -> list[float]:
            body = {"model": model, "prompt": prompt_of(isl, seed=i), "max_tokens": osl, "stream": True}
            times: list[float] = []
            async with client.stream("POST", "/v1/completions", json=body) as response:
                response.raise_for_status()
                async for chunk in response.aiter_raw():
                    now = time.perf_counter()
                    times.extend([now] * chunk.count(b"data: {"))
            return times

        return await asyncio.gather(*(one(i) for i in range(streams)))


async def _client(url: str, model: str, streams: int, isl: int, osl: int) -> list[list[float]]:
    """Open `streams` streaming completions at once; per stream, the arrival time of each token event.

    The client is `tokenomy bench`'s lean HTTP/1.1 client (about a quarter of a CPU for 256 streams here)."""
    pool = Pool(url, read_s=300.0)

    async def one(i: int) -> list[float]:
        body = json.dumps({"model": model, "prompt": prompt_of(isl, seed=i), "max_tokens": osl, "stream": True})
        times: list[float] = []
        response = await pool.request("POST", "/v1/completions", body.encode())
        try:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {(await response.read())[:200]!r}")
            while chunk := await response.read_chunk():
                now = time.perf_counter()
                times.extend([now] * chunk.count(b"data: {"))
        finally:
            response.release()
        return times

    try:
        return await asyncio.gather(*(one(i) for i in range(streams)))
    finally:
        pool.close()


def client_process(
    url: str,
    model: str,
    streams: int,
    isl: int,
    osl: int,
    nice: int,
    kind: str,
    out: mp.Queue,
) -> None:
    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # any CPU, even if the twin was pinned (taskset)
    if nice:
        os.nice(nice)
    client = _httpx_client if kind == "httpx" else _client
    streams_times = uvloop.run(client(url, model, streams, isl, osl))
    out.put((streams_times, time.process_time()))


def cpu_interruptions(seconds: float) -> tuple[float, float, float]:
    """Spin for `seconds` and see how often the OS took the CPU away: (>1 ms gaps per second, >2 ms gaps per
    second, longest gap in seconds). The floor under any timing on this machine: a busy loop that does nothing."""
    gaps_s = []
    last = start = time.perf_counter()
    while last - start < seconds:
        now = time.perf_counter()
        if now - last > 0.0005:
            gaps_s.append(now - last)
        last = now
    gaps = np.array(gaps_s)
    return float((gaps > 0.001).sum() / seconds), float((gaps > 0.002).sum() / seconds), float(gaps.max(initial=0))


def run_twin(args: argparse.Namespace, paced: bool, busy_wait: bool) -> dict:
    """Serve a twin in this process, stream from a client process; the twin's and the client's timing figures."""
    d = resolve(DeploymentSpec(model=args.model, gpu=args.gpu)).deployment
    replica = ReplicaConfig(max_num_seqs=max(args.streams, 256))
    twin = build_twin(d, speedup=args.speedup, replica=replica, busy_wait=busy_wait)
    if not paced:
        twin.engine.pace_factor = 0.0
    runner = TwinThread(twin)
    url = runner.start()
    gc.collect()
    gc.freeze()  # as `tokenomy twin` does: long-lived objects out of the cyclic GC, no 50 ms full collections
    engine = twin.engine
    results: mp.Queue = mp.get_context("spawn").Queue()
    client = mp.get_context("spawn").Process(
        target=client_process,
        args=(url, d.model.id, args.streams, args.isl, args.osl, args.client_nice, args.client, results),
    )
    started = time.perf_counter()
    client.start()
    # Warm-up: until every stream has its first token (admission burst, prompt counting, prefill).
    while engine.counters.generation_tokens < args.streams and client.is_alive():
        time.sleep(0.01)
    twin.loop.call_soon_threadsafe(engine.lateness.reset)
    twin.loop.call_soon_threadsafe(engine.delay_variation.reset)
    warm_s = time.perf_counter() - started
    streams, client_cpu_s = results.get(timeout=600)
    client.join()
    stats = twin.stats_dict()
    runner.stop()
    gc.unfreeze()
    ctx = args.isl + args.osl / 2
    return {
        "label": ("paced" if paced else "back to back") + (", busy-wait" if busy_wait else ", sleeping"),
        "lateness": stats["emission_lateness_s"],
        "variation": stats["emission_delay_variation_s"],
        "streams": streams,
        "client_cpu_s": client_cpu_s,
        "wall_s": time.perf_counter() - started,
        "warm_s": warm_s,
        "steps": stats["steps"],
        "resyncs": stats["counters"]["resyncs"],
        "predicted_itl_s": float(decode_step_seconds(d, args.streams, ctx)) / args.speedup,
        "deployment": f"{d.model.id} on {d.gpu.id} tp={d.tp}",
    }


def print_run(run: dict) -> None:
    lateness, variation, streams = run["lateness"], run["variation"], run["streams"]
    ms = {k: v * 1e3 for k, v in lateness.items() if k != "count"}
    dv = {k: v * 1e3 for k, v in variation.items() if k != "count"}
    stream_itl_s = np.array([(t[-1] - t[0]) / (len(t) - 1) for t in streams if len(t) > 2])
    tokens = sum(len(t) for t in streams)
    print(
        f"[{run['label']}] {tokens:,} token events; warm-up {run['warm_s']:.2f} s; steps {run['steps']:,}; "
        f"resyncs {run['resyncs']}; client CPU {run['client_cpu_s']:.1f} s over {run['wall_s']:.1f} s"
    )
    print(
        f"  lateness (signed) over {lateness['count']:,} writes: min {ms['min']:.3f}, p50 {ms['p50']:.3f}, "
        f"p99 {ms['p99']:.3f}, max {ms['max']:.3f} ms"
    )
    print(
        f"  delay variation over {variation['count']:,} gaps: p50 {dv['p50']:.3f}, p90 {dv['p90']:.3f}, "
        f"p99 {dv['p99']:.3f}, p99.9 {dv['p999']:.3f}, max {dv['max']:.3f} ms"
    )
    print(
        f"  client mean ITL per stream: median {np.median(stream_itl_s) * 1e3:.2f} ms "
        f"(min {stream_itl_s.min() * 1e3:.2f}, max {stream_itl_s.max() * 1e3:.2f}) "
        f"vs predicted decode step {run['predicted_itl_s'] * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--gpu", default="H100-SXM")
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--isl", type=int, default=128)
    parser.add_argument("--osl", type=int, default=512)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (baseline, twin as configured)")
    parser.add_argument("--no-busy-wait", action="store_true", help="the twin sleeps between steps")
    parser.add_argument(
        "--client-nice", type=int, default=0, help="niceness increment for the client (a starved client reads late)"
    )
    parser.add_argument(
        "--client", choices=["tokenomy", "httpx"], default="tokenomy", help="HTTP client reading the streams"
    )
    args = parser.parse_args()

    per_s_1ms, per_s_2ms, longest_s = cpu_interruptions(PROBE_S)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} (1, 5, 15 min) on {os.cpu_count()} CPUs")
    print(
        f"machine floor: a busy loop lost its CPU for > 1 ms {per_s_1ms:.1f}×/s, > 2 ms {per_s_2ms:.1f}×/s "
        f"(longest {longest_s * 1e3:.1f} ms) over {PROBE_S:g} s"
    )
    p99_ms: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for paced, busy in ((False, False), (True, not args.no_busy_wait)):
            run = run_twin(args, paced, busy)
            if not p99_ms:
                print(
                    f"deployment: {run['deployment']}, speedup {args.speedup:g}; {args.streams} streams × "
                    f"{args.osl} tokens (isl {args.isl}); client: {args.client}"
                )
            print_run(run)
            p99_ms.setdefault(run["label"], []).append(run["variation"]["p99"] * 1e3)
    (base_label, base), (label, chosen) = p99_ms.items()
    print(
        f"delay variation p99 per round: {base_label} {', '.join(f'{x:.2f}' for x in base)} ms; "
        f"{label} {', '.join(f'{x:.2f}' for x in chosen)} ms"
    )
    ratio = np.median(base) / np.median(chosen)
    print(f"median p99: {label} {np.median(chosen):.3f} ms vs {base_label} {np.median(base):.3f} ms ({ratio:.1f}×)")
    print(f"emission_jitter_p99_ms: {np.median(chosen):.3f} ms")


if __name__ == "__main__":
    main()
