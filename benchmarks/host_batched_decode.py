"""Predicted vs measured decode steps of several sequences at once (as llama-server's busy slots run them) for
SmolLM2-135M (GGUF Q4_1) under llama.cpp on this host.

1. `tokenomy calibrate --host --threads N --output host.yaml` (its rates are solved from synthetic shapes, never
   SmolLM2: calibrate/engine_kernels.py);
2. llama.cpp (llama-cpp-python's batch API, in process, N threads) times decode steps of 1, 2, 4, 8 and 16
   sequences after a 16-token prompt each (calibrate/engine_decode.py: measure_batched_decode, fastest of 3 runs'
   median step);
3. the cost model's step time for the same batch and context (costmodel/perf.py: step_seconds, as the simulator
   computes each step) on the calibrated host with the llama.cpp profile.

    .venv/bin/python benchmarks/host_batched_decode.py --threads 1

Needs the engine extra. Prints one line per batch size, then, last, `host_batched_decode_error_4: X %` (the
4-sequence step, llama-server's default slot count: |pred − meas| / meas).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from host_decode import ENGINE, MODEL, PRECISION, locate_gguf, tokenomy
from tokenomy.calibrate.engine_decode import measure_batched_decode
from tokenomy.calibrate.host import default_threads
from tokenomy.catalog.accelerators import use_user_file
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.perf import step_seconds
from tokenomy.costmodel.resolve import DeploymentSpec, resolve

BATCHES = (1, 2, 4, 8, 16)
PROMPT_TOKENS, STEPS = 16, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads for numpy and llama.cpp")
    args = parser.parse_args()
    gguf = locate_gguf()
    errors: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        host_yaml = Path(tmp) / "host.yaml"
        tokenomy("calibrate", "--host", "--threads", str(args.threads), "--output", str(host_yaml))
        use_user_file(str(host_yaml))
        spec = DeploymentSpec(model=MODEL, gpu="host", precision=PRECISION, engine=ENGINE)
        deployment = resolve(spec, load_profile(ENGINE)).deployment
        for seqs in BATCHES:
            m = measure_batched_decode(gguf, args.threads, seqs, PROMPT_TOKENS, STEPS)
            predicted_s = float(step_seconds(deployment, seqs, seqs, m.context_tokens, m.context_tokens))
            errors[seqs] = abs(predicted_s - m.step_seconds) / m.step_seconds
            print(
                f"{seqs:2d} sequences: step predicted {predicted_s * 1e3:6.2f} ms, "
                f"measured {m.step_seconds * 1e3:6.2f} ms (CPU share {m.cpu_share:.0%}), error {errors[seqs]:.1%}"
            )
    print(f"host_batched_decode_error_4: {errors[4] * 100:.1f} %")


if __name__ == "__main__":
    main()
