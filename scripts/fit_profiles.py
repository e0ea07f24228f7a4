"""Refit the shipped engine profiles on the shipped measurement file, then cross-validate the fit and write
the residual quantiles behind every 80 % interval. Every shipped measurement file is read (measurements.csv and
measurements_*.csv beside it); rows of engines the recipe does not fit on are predicted in the cross-validation only.

TensorRT-LLM has ~300 offline rows: its free parameters are fitted on them (those the rows cannot
identify keep the documented default or fit.py PRIORS, and the profile's `fit.parameters` says so); then the per-step
overhead is fitted on its online (Poisson-rate) TTFT/ITL rows through the simulator. vLLM and SGLang
have too few rows to fit the profile parameters, so they take those fitted on TensorRT-LLM (the profile
records `borrows_from` and `borrowed`, and plan/simulate print a note) and keep their own scheduler and
memory settings; `generic` does the same. SGLang's own online latency rows then refit its per-step
overhead where they identify it; vLLM's rows ran V0 multi-step scheduling, which the simulator does not
model, so they only validate (calibrate/fit.py: fit_engine_profiles, OWN_ROW_FITS). vLLM on AMD GPUs is its own
profile, vllm-rocm (catalog/profiles.py VENDOR_PROFILES): it starts from the borrowed values and refits what the
ROCm vLLM offline rows (measurements_rocm_vllm.csv) identify (OWN_OFFLINE_FITS); every cross-validation fold refits
it too, so holding out the AMD family leaves it the borrowed values. SGLang on AMD, sglang-rocm, has no rows of its
own: it takes vllm-rocm's device efficiencies and SGLang's host costs (ROCM_BUILDS).

Then leave-one-group-out cross-validation (engine version, accelerator family, model family) refits
without each group and predicts it; the out-of-sample log residuals, pooled over the three groupings,
give the bands in catalog/data/residual_quantiles.json (costmodel/intervals.py says how a band is chosen).

Run: python scripts/fit_profiles.py [--no-cv] [--no-profiles] [--report PATH] [--from-report PATH]
Last, docs/cost-model.md is regenerated from what was written (scripts/write_model_doc.py).
(--no-profiles: write only the residual quantiles; --report: also the cross-validation report as JSON;
--from-report: take the held-out predictions of a saved report instead of refitting, and only rewrite the bands
and their coverage: for a change of the interval rule, not of the model or the data)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tokenomy.calibrate.fit import OTHER_ENGINES, ROCM_BUILDS, fit_engine_profiles, parameter_lines
from tokenomy.calibrate.measurements import read_measurements, shipped_measurement_files
from tokenomy.calibrate.validate import CrossValidation, cross_validate, cv_report, metric_loads
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import PROFILE_DIR, load_profile, save_profile
from tokenomy.costmodel.intervals import RESIDUALS_FILE, build_residual_table

ENGINES = ("tensorrt-llm", *OTHER_ENGINES, *ROCM_BUILDS)


def cv_from_report(path: str, rows: list) -> CrossValidation:
    """The cross-validation a saved --report holds: its held-out rows (by id) with their out-of-sample predictions."""
    with open(path) as fh:
        saved = json.load(fh)
    by_id = {row.id: row for row in rows}
    missing = sorted({h["id"] for h in saved["held_out"]} - set(by_id))
    if missing:
        raise SystemExit(f"error: {path}: held-out rows {', '.join(missing[:5])} are not in the shipped files")
    cv = CrossValidation(fits=saved["fits"], fold_parameters=saved["fold_parameters"])
    for h in saved["held_out"]:
        cv.held_out.setdefault(h["grouping"], []).append((h["group"], by_id[h["id"]], h["predicted"]))
    return cv


def fold_ranges(fold_parameters: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """Per tensorrt-llm parameter, the lowest and highest value its cross-validation refits gave ('0.9: fitted')."""
    values: dict[str, list[float]] = {}
    for params in fold_parameters.values():
        for name, text in params.items():
            values.setdefault(name, []).append(float(text.split(":", 1)[0]))
    return {name: [min(v), max(v)] for name, v in sorted(values.items())}


def write_residuals(cv: CrossValidation, files: list, report_path: str) -> None:
    """Write the residual bands of a cross-validation, its report if asked, and print its coverage."""
    table = build_residual_table(cv.residuals())
    data = {
        "generated_by": "scripts/fit_profiles.py",
        "residuals": "log(measured / predicted) of held-out rows, leave-one-group-out over engine version, "
        "accelerator family and model family, pooled; n: distinct rows, groups: distinct engine version x "
        "accelerator family x model family cells (costmodel/intervals.py)",
        "measurements": ", ".join(p.name for p in files),
        "fold_parameter_ranges": fold_ranges(cv.fold_parameters),
        **table.to_dict(),
    }
    (DATA_DIR / RESIDUALS_FILE).write_text(json.dumps(data, indent=1) + "\n")
    report = cv_report(cv)
    if report_path:
        with open(report_path, "w") as fh:
            json.dump(report, fh, indent=1)
    for grouping, g in report["groupings"].items():
        lines = list(g["metrics"].items())
        for metric in g["metrics"]:  # a metric measured under several loads also per load kind
            lines += [(f"{metric} | {load}", m) for load, m in metric_loads(g["loads"], metric)]
        for metric, m in lines:
            cov = "—" if m["coverage_80"] is None else f"{m['coverage_80']:.0%}"
            print(
                f"cv {grouping}: {metric}: n {m['n']}, median {m['median_ape']:.1%}, p90 {m['p90_ape']:.1%}, "
                f"80% coverage {cov}"
            )
    for metric, cov in report["coverage_80"].items():
        print(f"cv all groupings: {metric}: 80% coverage {cov:.0%}")
    print(f"written: {DATA_DIR / RESIDUALS_FILE} ({cv.fits} refits)")


def main(run_cv: bool = True, write_profiles: bool = True, report_path: str = "", from_report: str = "") -> None:
    files = shipped_measurement_files()  # what `tokenomy validate` with no FILE reads
    rows = [row for path in files for row in read_measurements(path)]
    if from_report:  # the interval rule only: the saved held-out predictions, no refit
        write_residuals(cv_from_report(from_report, rows), files, report_path)
        return
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
        online = prof.fit.get("online_rows")
        checked = f"; own rows: {own['status']} ({online} rows)" if own and online else ""
        print(f"{name}: borrows {', '.join(prof.borrowed) or 'nothing'} from {prof.borrows_from or '-'}{checked}")
        for line in parameter_lines(prof) if prof.fit.get("row_ids") else []:  # its own offline fit (OWN_OFFLINE_FITS)
            print(f"  {line}")
    if not run_cv:
        return
    cv = cross_validate(rows, bases, progress=lambda s: print(f"  cv: {s}", flush=True))
    write_residuals(cv, files, report_path)


def write_model_doc() -> None:
    """Regenerate docs/cost-model.md from the files just written (its values must match them)."""
    subprocess.run([sys.executable, str(Path(__file__).with_name("write_model_doc.py"))], check=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    report = args[args.index("--report") + 1] if "--report" in args else ""
    saved = args[args.index("--from-report") + 1] if "--from-report" in args else ""
    main("--no-cv" not in args, "--no-profiles" not in args, report, saved)
    write_model_doc()
