"""Refit the shipped engine profiles on the shipped measurement file.

TensorRT-LLM has ~300 offline rows: its free parameters are fitted on them; then the per-step
overhead is fitted on its online (Poisson-rate) TTFT/ITL rows through the simulator. vLLM and SGLang have
too few offline rows to fit six parameters, so they take the hardware efficiencies fitted on
TensorRT-LLM and keep their own scheduler and memory settings; `generic` does the same.

Run: python scripts/fit_profiles.py
"""

from __future__ import annotations

from dataclasses import replace

from tokenomy.calibrate.fit import fit_profile, fit_step_overhead
from tokenomy.calibrate.measurements import read_measurements
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import PROFILE_DIR, load_profile, save_profile
from tokenomy.costmodel.profile import FITTED


def main() -> None:
    path = DATA_DIR / "measurements.csv"
    rows = read_measurements(path)
    trt = load_profile("tensorrt-llm")
    fitted = fit_profile(trt, [r for r in rows if r.engine == trt.name])
    fitted = fit_step_overhead(fitted, [r for r in rows if r.engine == trt.name])
    fitted = replace(fitted, fitted_on=f"measurements.csv: {fitted.fit['rows']} tensorrt-llm rows")
    save_profile(fitted, PROFILE_DIR / "tensorrt-llm.json")
    print(
        f"tensorrt-llm: median APE {fitted.fit['median_ape']:.1%}, p90 {fitted.fit['p90_ape']:.1%}; "
        f"step overhead {fitted.step_overhead_s * 1e3:.2f} ms (online latency median APE "
        f"{fitted.fit.get('online_median_ape', float('nan')):.1%})"
    )
    shared = {k: getattr(fitted, k) for k in FITTED}
    for name in ("vllm", "sglang", "generic"):
        profile = replace(load_profile(name), **shared, fitted_on="efficiencies from the tensorrt-llm fit", fit={})
        save_profile(profile, PROFILE_DIR / f"{name}.json")
        print(f"{name}: efficiencies copied from tensorrt-llm")


if __name__ == "__main__":
    main()
