"""The measure → calibrate → predict loop on the real engine: SmolLM2-135M (GGUF Q4_1) on llama.cpp, this host.

1. `tokenomy calibrate --host --threads 1`: this host as an accelerator entry (llama.cpp's kernels timed on
   synthetic models of other shapes);
2. a llama.cpp server with 1 thread (the load generator keeps the other core);
3. `tokenomy simulate` at concurrency 1 and 4 (128 in / 64 out) with the shipped llama.cpp profile: predicted
   before anything is measured on the server (out of sample);
4. `tokenomy bench` at concurrency 1 and 4, appending measurement rows (`--measurements-csv`);
5. `tokenomy calibrate rows.csv --engine llama.cpp`: the profile fitted to those rows;
6. `tokenomy simulate` again with the fitted profile (in sample: fitted to the rows it is compared with).

Prints output throughput and mean ITL, measured and predicted, per concurrency. Needs the engine extra.
Last line: `engine_loop_worst_error: X %` (the fitted profile's worst error over both figures and both loads).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ISL, OSL = 128, 64
CONCURRENCIES = (1, 4)
THREADS = 1
COMPARED = ("output_tokens_per_s", "mean_itl_s")  # the goal's figures; TTFT (prefill + queue) is printed beside them


def tokenomy(*args: str, timeout: float = 900) -> str:
    """Run the tokenomy CLI in a child process, as a user would; its stdout."""
    command = [sys.executable, "-c", "from tokenomy.cli.main import app; app(prog_name='tokenomy')", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"tokenomy {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def deployment_args(host_yaml: Path, engine: str) -> list[str]:
    return ["--model", "smollm2-135m", "--precision", "q4_1", "--gpu", "host", "--accelerators", str(host_yaml),
            "--engine", engine]  # fmt: skip


def simulated(host_yaml: Path, engine: str, concurrency: int, requests: int) -> dict[str, float]:
    """Output tok/s and mean ITL that `tokenomy simulate` predicts for a closed loop of `concurrency`."""
    args = [*deployment_args(host_yaml, engine), "--isl", str(ISL), "--osl", str(OSL),
            "--concurrency", str(concurrency), "--num-requests", str(requests), "--json"]  # fmt: skip
    out = json.loads(tokenomy("simulate", *args))
    return figures(out)


def figures(summary: dict[str, Any]) -> dict[str, float]:
    """The compared figures of a run summary (simulate and bench share its shape)."""
    return {"output_tokens_per_s": summary["throughput"]["output_tokens_per_s"],
            "mean_itl_s": summary["itl_s"]["mean"], "mean_ttft_s": summary["ttft_s"]["mean"]}  # fmt: skip


def measured(url: str, host_yaml: Path, rows: Path, concurrency: int, requests: int) -> dict[str, float]:
    """What `tokenomy bench` measures against the server, appending its measurement rows to `rows`."""
    out = json.loads(tokenomy("bench", "--url", url, *deployment_args(host_yaml, "llama.cpp"), "--isl", str(ISL),
                              "--osl", str(OSL), "--concurrency", str(concurrency), "--num-requests", str(requests),
                              "--warmup", "2", "--measurements-csv", str(rows), "--json", "--no-progress"))  # fmt: skip
    return figures(out)


def loop(requests: int, work: Path) -> dict[str, Any]:
    """Every step above; each figure and error."""
    sys.path.insert(0, str(REPO))
    from tests.engine.conftest import find_gguf, running_server

    gguf = find_gguf()
    if gguf is None:
        raise SystemExit("SmolLM2 GGUF not found: pip install -e '.[engine]'")
    host_yaml, rows, fitted = work / "host.yaml", work / "rows.csv", work / "fitted.json"
    tokenomy("calibrate", "--host", "--threads", str(THREADS), "--output", str(host_yaml))
    before = {c: simulated(host_yaml, "llama.cpp", c, requests) for c in CONCURRENCIES}
    with running_server(gguf, work / "server.log", n_threads=THREADS) as server:
        bench = {c: measured(server.base_url, host_yaml, rows, c, requests) for c in CONCURRENCIES}
    calibrate_out = tokenomy("calibrate", str(rows), "--engine", "llama.cpp", "--accelerators", str(host_yaml),
                             "--output", str(fitted))  # fmt: skip
    after = {c: simulated(host_yaml, str(fitted), c, requests) for c in CONCURRENCIES}

    def errors(pred: dict[int, dict[str, float]], keys: tuple[str, ...] = COMPARED) -> dict[str, float]:
        return {f"{k}@c{c}": abs(pred[c][k] - bench[c][k]) / bench[c][k] for c in CONCURRENCIES for k in keys}

    return {"measured": bench, "predicted_out_of_sample": before, "predicted_fitted": after,
            "errors_out_of_sample": errors(before), "errors_fitted": errors(after),
            "ttft_errors_out_of_sample": errors(before, ("mean_ttft_s",)),
            "ttft_errors_fitted": errors(after, ("mean_ttft_s",)),
            "fitted_profile": json.loads(fitted.read_text()), "calibrate_output": calibrate_out}  # fmt: skip


def report(r: dict[str, Any]) -> None:
    from tokenomy.calibrate.host import cpu_identity

    print(f"CPU: {cpu_identity()[0]}; llama.cpp server with {THREADS} thread(s); {ISL} in / {OSL} out")
    print(f"  {'load':<6} {'figure':<22} {'measured':>10} {'shipped profile':>16} {'fitted profile':>15}")
    for c in CONCURRENCIES:
        for key, unit, scale in (("output_tokens_per_s", "tok/s", 1.0), ("mean_itl_s", "ms", 1e3),
                                 ("mean_ttft_s", "ms", 1e3)):  # fmt: skip
            m, b, a = r["measured"][c][key], r["predicted_out_of_sample"][c][key], r["predicted_fitted"][c][key]
            eb, ea = abs(b - m) / m, abs(a - m) / m
            print(f"  c={c:<4} {key + ' (' + unit + ')':<22} {m * scale:>10.2f} {b * scale:>9.2f} ({eb:>4.0%})"
                  f" {a * scale:>8.2f} ({ea:>4.0%})")  # fmt: skip
    fit = r["fitted_profile"].get("fit", {})
    last_line = r["calibrate_output"].strip().splitlines()[-1]
    print(f"fitted (in sample, on these {fit.get('rows', '?')} rows): {last_line}")
    print(f"engine_loop_out_of_sample_worst_error: {max(r['errors_out_of_sample'].values()) * 100:.1f} %")
    print(f"engine_loop_worst_error: {max(r['errors_fitted'].values()) * 100:.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per load (after 2 warm-up requests)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = loop(args.requests, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    report(result)


if __name__ == "__main__":
    main()
