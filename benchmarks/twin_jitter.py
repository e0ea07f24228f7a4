"""Token-emission jitter of `tokenomy twin` with many concurrent streams.

The twin runs in this process (uvicorn on a background thread); the client runs in a separate process so
it does not compete for the server's event loop. Server side, every write of a step's tokens to a stream
records when it completed against the step's scheduled end, counted after every stream has its first token:

- emission lateness (signed; the pass of 256 writes is centred on the step's end): one pass of 256 socket
  writes takes ~2.5 ms of CPU here, so a stream written late in the pass is always ~1.2 ms late, and the
  spread of lateness is at least the pass's duration even on a quiet machine;
- jitter as delay variation (RFC 3393): per stream, the change in lateness from one token to the next, i.e.
  |actual gap − scheduled gap| between consecutive token events. The twin writes streams in the batch's
  order, which is stable from step to step, so a stream's place in the pass does not count as jitter.

The headline (last line) is the delay variation's p99: it is what a client sees as jitter (uneven token
gaps); the lateness says how far the whole schedule sits from the cost model's clock. Client side, the gaps
between a stream's SSE events are compared with the cost model's decode step. On a shared machine, other
processes taking the CPUs show up directly in the tail: the load average is printed, and `--realtime`
(root) runs twin and client under SCHED_FIFO.

    .venv/bin/python benchmarks/twin_jitter.py --streams 256 --osl 512 [--realtime]

Last line: `emission_jitter_p99_ms: X ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import time

import numpy as np

from tokenomy.cli.simulating import deployment_for
from tokenomy.costmodel.perf import decode_step_seconds
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.tokenizer import prompt_of
from tokenomy.twin.server import TwinThread, build_twin

REALTIME_PRIORITY = 10


async def _client(url: str, model: str, streams: int, isl: int, osl: int) -> list[list[float]]:
    """Open `streams` streaming completions at once; per stream, the arrival time of each token event."""
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
                    events = chunk.count(b"data: {")
                    times.extend([now] * events)
            return times

        return await asyncio.gather(*(one(i) for i in range(streams)))


def client_process(url: str, model: str, streams: int, isl: int, osl: int, nice: int, out: mp.Queue) -> None:
    if nice:
        os.nice(nice)
    out.put(asyncio.run(_client(url, model, streams, isl, osl)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--gpu", default="H100-SXM")
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--isl", type=int, default=128)
    parser.add_argument("--osl", type=int, default=512)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument(
        "--server-nice", type=int, default=0, help="niceness increment for the server (negative needs root)"
    )
    parser.add_argument(
        "--client-nice", type=int, default=0, help="niceness increment for the client (a starved client reads late)"
    )
    parser.add_argument("--realtime", action="store_true", help="twin and client under SCHED_FIFO (needs root)")
    args = parser.parse_args()
    if args.realtime:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))  # the client inherits it
    if args.server_nice:
        os.nice(args.server_nice)  # the client, spawned later, inherits it (plus --client-nice)

    d = deployment_for(args.model, args.gpu, None, 1, "native", "auto", "vllm")
    twin = build_twin(d, speedup=args.speedup, replica=ReplicaConfig(max_num_seqs=max(args.streams, 256)))
    runner = TwinThread(twin)
    url = runner.start()
    gc.collect()
    gc.freeze()  # as `tokenomy twin` does: long-lived objects out of the cyclic GC, no 50 ms full collections
    engine = twin.engine
    results: mp.Queue = mp.get_context("spawn").Queue()
    client = mp.get_context("spawn").Process(
        target=client_process, args=(url, d.model.id, args.streams, args.isl, args.osl, args.client_nice, results)
    )
    started = time.perf_counter()
    client.start()
    # Warm-up: until every stream has its first token (admission burst, prompt counting, prefill).
    while engine.counters.generation_tokens < args.streams and client.is_alive():
        time.sleep(0.01)
    twin.loop.call_soon_threadsafe(engine.lateness.reset)
    twin.loop.call_soon_threadsafe(engine.delay_variation.reset)
    warm_s = time.perf_counter() - started
    streams = results.get(timeout=600)
    client.join()
    stats = twin.stats_dict()
    runner.stop()

    lateness, variation = stats["emission_lateness_s"], stats["emission_delay_variation_s"]
    gaps = np.concatenate([np.diff(np.array(t)) for t in streams if len(t) > 2])
    tokens = sum(len(t) for t in streams)
    ctx = args.isl + args.osl / 2
    predicted_itl_s = float(decode_step_seconds(d, args.streams, ctx)) / args.speedup
    p1, p50, p90, p99 = np.percentile(gaps, [1, 50, 90, 99])
    stream_itl_s = np.array([(t[-1] - t[0]) / (len(t) - 1) for t in streams if len(t) > 2])
    policy = "SCHED_FIFO" if args.realtime else f"nice {os.nice(0)}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"deployment: {d.model.id} on {d.gpu.id} tp={d.tp}, speedup {args.speedup:g}; server {policy}")
    print(f"load average {load} (1, 5, 15 min) on {os.cpu_count()} CPUs")
    print(f"streams: {args.streams} × {args.osl} tokens (isl {args.isl}); {tokens:,} token events received")
    resyncs = stats["counters"]["resyncs"]
    print(f"warm-up (all first tokens out): {warm_s:.2f} s; steps {stats['steps']:,}; resyncs {resyncs}")
    ms = {k: v * 1e3 for k, v in lateness.items() if k != "count"}
    print(
        f"server emission lateness (signed) over {lateness['count']:,} writes: min {ms['min']:.3f} ms, "
        f"p50 {ms['p50']:.3f} ms, p90 {ms['p90']:.3f} ms, p99 {ms['p99']:.3f} ms, max {ms['max']:.3f} ms"
    )
    print(
        f"server emission |lateness|: p50 {ms['jitter_p50']:.3f} ms, p90 {ms['jitter_p90']:.3f} ms, "
        f"p99 {ms['jitter_p99']:.3f} ms, p99.9 {ms['jitter_p999']:.3f} ms"
    )
    dv = {k: v * 1e3 for k, v in variation.items() if k != "count"}
    print(
        f"server jitter as delay variation |Δ lateness| per stream over {variation['count']:,} gaps: "
        f"p50 {dv['p50']:.3f} ms, p90 {dv['p90']:.3f} ms, p99 {dv['p99']:.3f} ms, p99.9 {dv['p999']:.3f} ms, "
        f"max {dv['max']:.3f} ms"
    )
    print(
        f"client ITL: p1 {p1 * 1e3:.2f} ms, p50 {p50 * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms; "
        f"predicted decode step at batch {args.streams}, context {ctx:.0f}: {predicted_itl_s * 1e3:.2f} ms; "
        f"spread p99−p1 {(p99 - p1) * 1e3:.2f} ms"
    )
    print(
        f"client mean ITL per stream: median {np.median(stream_itl_s) * 1e3:.2f} ms "
        f"(min {stream_itl_s.min() * 1e3:.2f}, max {stream_itl_s.max() * 1e3:.2f}) "
        f"vs predicted {predicted_itl_s * 1e3:.2f} ms"
    )
    print(f"emission_jitter_p99_ms: {dv['p99']:.3f} ms")


if __name__ == "__main__":
    main()
