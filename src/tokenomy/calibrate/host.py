"""Measure this machine's CPU as an accelerator the cost model can use: memory bandwidth, FLOP rate, memory, cores.

Kernels (numpy; each figure is the best of many short calls over a second or two, so on a machine shared with
other processes it is what the host gives when nothing else is in the way):

- memory bandwidth: a streaming read, `numpy.add.reduce` (sum) of a float32 array 8× the last-level cache, a
  quarter at a time, split over `threads` Python threads (numpy releases the GIL inside the reduction); bytes/s =
  bytes read / wall seconds, each byte counted once as STREAM does for its read kernels (McCalpin, STREAM).
- FLOP rate: a float32 n×n @ n×n matmul (BLAS sgemm, 2·n³ FLOP), with BLAS limited to `threads` threads through
  threadpoolctl.

Which rate the cost model uses for GGUF Q4_1: llama.cpp's CPU backend does not dequantise to 16-bit. For one token
it quantises the activations to Q8_1 blocks and runs `ggml_vec_dot_q4_1_q8_1`: per block of 32 weights it unpacks
the nibbles, multiplies bytes by bytes with integer SIMD (maddubs/madd), converts to fp32 and accumulates with
one FMA scaled by the two block scales (the Q8_0 embedding/lm_head goes through `ggml_vec_dot_q8_0_q8_0` alike).
The host has no fp16/bf16 matrix units, so the entry lists only `fp32`: the cost model's compute type for q4_1
(fp16) falls back to it (Accelerator.flops_per_s), and the engine profile's `flops_efficiency` is the fraction of
this fp32 sgemm peak that the quantised dot-product kernels reach (see profiles/llama.cpp.json).
"""

from __future__ import annotations

import itertools
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

MIB = 2**20
DEFAULT_LLC_BYTES = 32 * MIB  # when sysfs does not say
LLC_MULTIPLE = 8  # stream an array this many times the last-level cache, so the cache holds at most 1/8 of it
MIN_STREAM_BYTES = 256 * MIB
# …and at most this much: a VM may report a huge shared cache (480 MiB seen), and 8× that is gigabytes of RAM. At the
# cap a chunk was last read three chunks (768 MiB) earlier, still more than such a cache holds.
MAX_STREAM_BYTES = 1024 * MIB
STREAM_CHUNKS = 4  # the array is read a quarter at a time (each quarter 2× the last-level cache by default)
DEFAULT_REPEATS = 10  # at least this many timed calls per kernel…
DEFAULT_MIN_SECONDS = 1.5  # …and for at least this long, so a preempted call does not set the figure
MATMUL_N = 512  # 2·512³ = 0.27 GFLOP on 3 MiB of operands (85 FLOP per byte): compute bound, a few ms per call
BANDWIDTH_KERNEL = "numpy.add.reduce (sum) of a float32 array, streaming read"
FLOPS_KERNEL = "numpy float32 matmul (BLAS sgemm), 2·n³ FLOP"


@dataclass(frozen=True)
class HostMeasurement:
    """What `measure_host` found; rates are the best of the repeats."""

    cpu_name: str
    vendor: str
    threads: int  # threads the kernels ran on (= cores assumed used by the engine)
    logical_cpus: int
    memory_bytes: int  # total physical memory
    llc_bytes: int
    stream_bytes: int  # array size of the bandwidth kernel
    read_bytes_per_s: float
    matmul_n: int
    fp32_flops_per_s: float
    blas: str
    load_average: tuple[float, float, float]  # 1, 5 and 15 minute, when the measurement ended
    seconds: float  # wall time the measurement took
    cpu_share: float  # process CPU seconds / (wall seconds × threads): below 1 when other processes took the cores
    measured_at: str  # ISO date and time (local)


def default_threads() -> int:
    """llama-cpp-python's default thread count: half the logical CPUs (one per physical core with SMT), at least 1."""
    return max(1, (os.cpu_count() or 1) // 2)


def total_memory_bytes() -> int:
    """Physical memory: pages × page size (POSIX sysconf), else MemTotal of /proc/meminfo."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("cannot read the total memory of this host")


def _parse_cache_size(text: str) -> int:
    """sysfs cache sizes look like '32768K' or '2M'."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": MIB, "G": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def last_level_cache_bytes(cache_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Size of the highest-level cache cpu0 sees (sysfs), or DEFAULT_LLC_BYTES when unknown."""
    best_level, best_bytes = 0, 0
    for index in sorted(cache_dir.glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = _parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if level > best_level or (level == best_level and size > best_bytes):
            best_level, best_bytes = level, size
    return best_bytes or DEFAULT_LLC_BYTES


def cpu_identity() -> tuple[str, str]:
    """(model name, vendor) from /proc/cpuinfo, falling back to platform.processor()."""
    name, vendor = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "vendor_id" and not vendor:
                vendor = value.strip()
    except OSError:
        pass
    return name or platform.processor() or "unknown CPU", vendor


def best_seconds(run: Callable[[], object], repeats: int, min_seconds: float = 0.0) -> float:
    """Shortest wall time of `run` after one warm-up call, over at least `repeats` calls and `min_seconds`: on a
    shared machine some calls are preempted, and the best one is the host's own speed."""
    run()
    best = float("inf")
    count, start = 0, time.perf_counter()
    while count < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        count += 1
    return best


def stream_read_bytes_per_s(
    array_bytes: int, threads: int = 1, repeats: int = DEFAULT_REPEATS, min_seconds: float = 0.0
) -> float:
    """Streaming read bandwidth: sum a float32 array of `array_bytes` in STREAM_CHUNKS chunks, timing each chunk
    (split over `threads` threads); bytes of a chunk / its best time. Each chunk was last read STREAM_CHUNKS − 1
    chunks earlier, so with the array at LLC_MULTIPLE × the last-level cache it comes from memory, not cache."""
    if array_bytes <= 0 or threads <= 0 or repeats <= 0:
        raise ValueError("array_bytes, threads and repeats must be positive")
    data = np.ones(max(array_bytes // 4, STREAM_CHUNKS * threads), dtype=np.float32)  # every page written
    chunks = [np.array_split(c, threads) for c in np.array_split(data, STREAM_CHUNKS)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if threads == 1:
            calls = [lambda parts=parts: np.add.reduce(parts[0]) for parts in chunks]
        else:  # one Python thread per part: numpy releases the GIL inside the reduction
            calls = [lambda parts=parts: list(pool.map(np.add.reduce, parts)) for parts in chunks]
        rotation = itertools.cycle(calls)
        seconds = best_seconds(lambda: next(rotation)(), repeats * STREAM_CHUNKS, min_seconds)
    return sum(part.nbytes for part in chunks[0]) / seconds


def matmul_flops_per_s(
    n: int = MATMUL_N, threads: int = 1, repeats: int = DEFAULT_REPEATS, min_seconds: float = 0.0
) -> float:
    """FLOP rate of a float32 n×n @ n×n matmul (2·n³ FLOP) with BLAS limited to `threads` threads."""
    if n <= 0 or threads <= 0 or repeats <= 0:
        raise ValueError("n, threads and repeats must be positive")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = best_seconds(lambda: np.matmul(a, b, out=out), repeats, min_seconds)
    return 2.0 * n**3 / seconds


def blas_name() -> str:
    """The BLAS numpy calls, e.g. 'openblas 0.3.27 (SkylakeX)', from threadpoolctl."""
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") == "blas":
            arch = f" ({info['architecture']})" if info.get("architecture") else ""
            return f"{info.get('internal_api', 'blas')} {info.get('version') or ''}".strip() + arch
    return "unknown BLAS"


def measure_host(
    threads: int | None = None,
    stream_bytes: int | None = None,
    matmul_n: int = MATMUL_N,
    repeats: int = DEFAULT_REPEATS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
) -> HostMeasurement:
    """Measure bandwidth and FLOP rate on `threads` threads (default: default_threads()), back to back, each the
    best of at least `repeats` calls and `min_seconds`."""
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be positive, got {threads}")
    llc = last_level_cache_bytes()
    memory = total_memory_bytes()
    size = stream_bytes or min(max(MIN_STREAM_BYTES, LLC_MULTIPLE * llc), MAX_STREAM_BYTES)
    if size > memory // 4:
        raise ValueError(f"a {size / MIB:.0f} MiB stream array needs more than a quarter of this host's memory")
    name, vendor = cpu_identity()
    start, cpu_start = time.perf_counter(), time.process_time()
    read = stream_read_bytes_per_s(size, threads, repeats, min_seconds)
    flops = matmul_flops_per_s(matmul_n, threads, repeats, min_seconds)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    return HostMeasurement(
        cpu_name=name,
        vendor=vendor,
        threads=threads,
        logical_cpus=os.cpu_count() or 1,
        memory_bytes=memory,
        llc_bytes=llc,
        stream_bytes=size,
        read_bytes_per_s=read,
        matmul_n=matmul_n,
        fp32_flops_per_s=flops,
        blas=blas_name(),
        load_average=os.getloadavg(),
        seconds=seconds,
        cpu_share=cpu_seconds / (seconds * threads),
        measured_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
