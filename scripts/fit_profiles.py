"""Refit the shipped engine profiles on the shipped measurement file, then cross-validate the fit and write
the residual quantiles behind every 80 % interval.

TensorRT-LLM has ~300 offline rows: its free parameters are fitted on them (those the rows cannot
identify keep the documented default or fit.py PRIORS, and the profile's `fit.parameters` says so); then the per-step
overhead is fitted on its online (Poisson-rate) TTFT/ITL rows through the simulator. vLLM and SGLang
have too few rows to fit the profile parameters, so they take those fitted on TensorRT-LLM (the profile
records `borrows_from` and `borrowed`, and plan/simulate print a note) and keep their own scheduler and
memory settings; `generic` does the same. SGLang's own online latency rows then refit its per-step
overhead where they identify it; vLLM's rows ran V0 multi-step scheduling, which the simulator does not
model, so they only validate (calibrate/fit.py: fit_engine_profiles, OWN_ROW_FITS).

Then leave-one-group-out cross-validation (engine version, accelerator family, model family) refits
without each group and predicts it; the out-of-sample log residuals, pooled over the three groupings,
give the quantiles in catalog/data/residual_quantiles.json (costmodel/intervals.py).

Run: python scripts/fit_profiles.py [--no-cv] [--no-profiles] [--report PATH]
(--no-profiles: write only the residual quantiles; --report: also the cross-validation report as JSON)
"""

from __future__ import annotations

import json
import sys

from tokenomy.calibrate.fit import fit_engine_profiles
from tokenomy.calibrate.measurements import read_measurements
from tokenomy.calibrate.validate import cross_validate, cv_report
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import PROFILE_DIR, load_profile, save_profile
from tokenomy.costmodel.intervals import RESIDUALS_FILE, build_residual_table

ENGINES = ("tensorrt-llm", "vllm", "sglang", "generic")


def main(run_cv: bool = True, write_profiles: bool = True, report_path: str = "") -> None:
    path = DATA_DIR / "measurements.csv"
    rows = read_measurements(path)
    bases = {name: load_profile(name) for name in ENGINES}
    fitted = fit_engine_profiles(rows, bases)
    for name, profile in fitted.items():
        if write_profiles:
            save_profile(profile, PROFILE_DIR / f"{name}.json")
    trt = fitted["tensorrt-llm"]
    print(
        f"tensorrt-llm: in-sample median APE {trt.fit['median_ape']:.1%}, p90 {trt.fit['p90_ape']:.1%}; "
        f"step overhead {trt.step_overhead_s * 1e3:.2f} ms (online latency median APE "
        f"{trt.fit.get('online_median_ape', float('nan')):.1%})"
    )
    for name, p in trt.fit["parameters"].items():
        print(f"  {name} = {p['value']:.4g}: {p['status']}")
    for name in ENGINES[1:]:
        prof = fitted[name]
        own = prof.fit.get("parameters", {}).get("step_overhead_s")
        checked = f"; own rows: {own['status']} ({prof.fit['online_rows']} rows)" if own else ""
        print(f"{name}: borrows {', '.join(prof.borrowed) or 'nothing'} from {prof.borrows_from or '-'}{checked}")
    if not run_cv:
        return
    cv = cross_validate(rows, bases, progress=lambda s: print(f"  cv: {s}", flush=True))
    table = build_residual_table(cv.residuals())
    data = {
        "generated_by": "scripts/fit_profiles.py",
        "residuals": "log(measured / predicted) of held-out rows, leave-one-group-out over engine version, "
        "accelerator family and model family, pooled",
        "measurements": "measurements.csv",
        **table.to_dict(),
    }
    (DATA_DIR / RESIDUALS_FILE).write_text(json.dumps(data, indent=1) + "\n")
    report = cv_report(cv)
    if report_path:
        with open(report_path, "w") as fh:
            json.dump(report, fh, indent=1)
    for grouping, g in report["groupings"].items():
        for metric, m in g["metrics"].items():
            cov = "—" if m["coverage_80"] is None else f"{m['coverage_80']:.0%}"
            print(
                f"cv {grouping}: {metric}: n {m['n']}, median {m['median_ape']:.1%}, p90 {m['p90_ape']:.1%}, "
                f"80% coverage {cov}"
            )
    print(f"written: {DATA_DIR / RESIDUALS_FILE} ({cv.fits} refits)")


if __name__ == "__main__":
    args = sys.argv[1:]
    report = args[args.index("--report") + 1] if "--report" in args else ""
    main("--no-cv" not in args, "--no-profiles" not in args, report)
