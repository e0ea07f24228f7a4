"""Out-of-sample accuracy of the cost model against issue 13's goals: leave-one-group-out cross-validation of the
fitted profiles on every shipped measurement file (the machinery of `tokenomy validate --cv`; nothing is written).

Goals: offline output throughput median APE <= 10 %, p90 <= 30 %; mean TTFT and mean ITL under load median <= 12 %,
p90 <= 35 %; 80 % intervals covering 75-85 % of held-out rows, per metric. Prints each grouping's figures and
whether each goal is met; the last line is `cv_output_throughput_p90_worst: X %` (the worst grouping's p90).

It also prints offline output throughput per held-out group (the README's per-group table).

Run: python benchmarks/cv_accuracy.py   (about 10 minutes on a 2-core machine)
     python benchmarks/cv_accuracy.py --from-report cv.json   (the report `scripts/fit_profiles.py --report` saved)
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import numpy as np

from tokenomy.calibrate.fit import OTHER_ENGINES
from tokenomy.calibrate.measurements import read_measurements, shipped_measurement_files
from tokenomy.calibrate.validate import cross_validate, cv_report
from tokenomy.catalog.profiles import load_profile

# 'metric | load kind' -> (median goal, p90 goal), fractions (cv_report's `loads`: offline throughput apart from
# the same metric under load; TTFT and ITL are measured under load only)
GOALS = {
    "output_throughput | offline": (0.10, 0.30),
    "mean_ttft | rate": (0.12, 0.35),
    "mean_ttft | concurrency": (0.12, 0.35),
    "mean_itl | rate": (0.12, 0.35),
    "mean_itl | concurrency": (0.12, 0.35),
}
COVERAGE = (0.75, 0.85)


def offline_groups(report: dict) -> None:
    """Offline output throughput per held-out group: n, median and p90 APE (from the report's held-out rows)."""
    apes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for h in report["held_out"]:
        if h["metric"] == "output_throughput" and h.get("load_kind") == "offline":
            apes[(h["grouping"], h["group"])].append(abs(h["predicted"] - h["measured"]) / h["measured"])
    for (grouping, group), v in sorted(apes.items()):
        print(
            f"  offline output_throughput | {grouping}: {group}: n {len(v)}, median {np.median(v):.1%}, "
            f"p90 {np.percentile(v, 90):.1%}"
        )


def main(saved: str = "") -> None:
    start = time.perf_counter()
    rows = [row for path in shipped_measurement_files() for row in read_measurements(path)]
    if saved:
        try:
            with open(saved) as fh:
                report = json.load(fh)
            report["groupings"], report["held_out"]  # noqa: B018 - the keys this script reads
        except (OSError, ValueError, KeyError, TypeError) as exc:
            sys.exit(f"error: --from-report {saved}: not a report of `scripts/fit_profiles.py --report` ({exc})")
    else:
        bases = {name: load_profile(name) for name in ("tensorrt-llm", *OTHER_ENGINES)}
        report = cv_report(cross_validate(rows, bases))
    worst_p90 = 0.0
    for grouping, g in report["groupings"].items():
        for metric, (median_goal, p90_goal) in GOALS.items():
            m = g["loads"].get(metric)
            if not m:
                continue
            ok = m["median_ape"] <= median_goal and m["p90_ape"] <= p90_goal
            cov = m["coverage_80"]
            cov_ok = cov is not None and COVERAGE[0] <= cov <= COVERAGE[1]
            print(
                f"{grouping:18} {metric:27} n {m['n']:4d}  median {m['median_ape']:6.1%}  p90 {m['p90_ape']:6.1%}  "
                f"goal {'met' if ok else 'missed'}  80% coverage {'-' if cov is None else f'{cov:.0%}'} "
                f"({'in' if cov_ok else 'outside'} 75-85%)"
            )
            if metric == "output_throughput | offline":
                worst_p90 = max(worst_p90, m["p90_ape"])
    offline_groups(report)
    print(f"{len(rows)} rows, {report['fits']} refits in {time.perf_counter() - start:.0f} s")
    print(f"cv_output_throughput_p90_worst: {100 * worst_p90:.1f} %")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--from-report" in args and args.index("--from-report") + 1 >= len(args):
        sys.exit("error: --from-report needs the path of a saved report (scripts/fit_profiles.py --report PATH)")
    main(args[args.index("--from-report") + 1] if "--from-report" in args else "")
