"""Wall time of a full `tokenomy validate` of every shipped measurement file (no FILE: measurements.csv and each
measurements_*.csv), as a user runs it (fresh process).

Goal: under 10 s. Prints the median of 3 runs; the last line is `validate_seconds: X s`.

Run: python benchmarks/validate_speed.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tokenomy.calibrate.measurements import read_measurements, shipped_measurement_files


def wall_seconds() -> float:
    start = time.perf_counter()
    args = [sys.executable, "-m", "tokenomy.cli.main", "validate", "--json"]  # no FILE: every shipped file
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    rows = sum(len(read_measurements(path)) for path in shipped_measurement_files())
    print(f"{rows} rows in {len(shipped_measurement_files())} shipped files")
    runs = [wall_seconds() for _ in range(3)]
    print(f"runs: {', '.join(f'{r:.2f}' for r in runs)} s")
    print(f"validate_seconds: {statistics.median(runs):.2f} s")


if __name__ == "__main__":
    main()
