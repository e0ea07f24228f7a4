"""Mean TTFT at a fixed concurrency is the small part of a closed loop's request time. With C sessions each sending
its next request as the last one ends, Little's law gives, per request, C / X = TTFT + (osl − 1)·ITL (X: requests
per second), so

    TTFT = C / X − (osl − 1)·ITL,   κ = (osl − 1)·ITL / TTFT:

TTFT is 1 / (1 + κ) of the request's time, a miss of m on TTFT a miss of about m / κ on the request's end-to-end
time, and TTFT inferred from throughput and ITL would need both within about 12% / κ to land within issue 13's 12%.
For NVIDIA NIM's fixed-concurrency tables (measurements_nim.csv: mean TTFT, mean ITL and output tokens/s of the same
runs) this script checks the identity on NIM's figures (they obey it) and on the simulator's predictions (which obey
it too), and prints κ and the simulator's TTFT miss as a share of the measured request time. Per cell: model, GPU,
shape and concurrency with all three metrics.

Last line: `nim_ttft_itl_sensitivity_median: κ` (the median κ over those cells).

Run: python benchmarks/ttft_closed_loop.py   (a few seconds)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tokenomy.calibrate.measurements import Measurement, read_measurements
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.models import DATA_DIR

METRICS = ("mean_ttft", "mean_itl", "output_throughput")
GOAL = 0.12  # issue 13: mean TTFT under load, median APE


def little_ttft_s(concurrency: float, output_tokens_per_s: float, osl: int, itl_s: float) -> float:
    """The mean TTFT a closed loop of `concurrency` sessions leaves: C / X − (osl − 1)·ITL, X = tokens/s ÷ osl."""
    return concurrency * osl / output_tokens_per_s - (osl - 1) * itl_s


def cells(rows: list[Measurement]) -> dict[tuple, dict[str, Measurement]]:
    """The fixed-concurrency runs that report all of METRICS, by (model, GPU, tp, precision, isl, osl, concurrency)."""
    out: dict[tuple, dict[str, Measurement]] = defaultdict(dict)
    for r in rows:
        if r.load_kind == "concurrency" and r.metric in METRICS and r.num_gpus == r.tp * r.pp:
            out[(r.model, r.gpu, r.tp, r.precision, r.isl, r.osl, r.load_value)][r.metric] = r
    return {k: v for k, v in out.items() if len(v) == len(METRICS)}


def main() -> None:
    found = cells(read_measurements(DATA_DIR / "measurements_nim.csv"))
    measured_gap, predicted_gap, kappa, ttft_ape, itl_ape, thr_ape, little_ape, share = [], [], [], [], [], [], [], []
    for (_, _, _, _, _, osl, conc), m in sorted(found.items()):
        ttft, itl, thr = (m[k].value for k in METRICS)
        pred = [predict(m[k]).value for k in METRICS]
        if any(p is None for p in pred):
            continue
        p_ttft, p_itl, p_thr = pred
        measured_gap.append(abs(little_ttft_s(conc, thr, osl, itl) / ttft - 1))
        predicted_gap.append(abs(little_ttft_s(conc, p_thr, osl, p_itl) / p_ttft - 1))
        kappa.append((osl - 1) * itl / ttft)
        ttft_ape.append(abs(p_ttft / ttft - 1))
        itl_ape.append(abs(p_itl / itl - 1))
        thr_ape.append(abs(p_thr / thr - 1))
        little_ape.append(abs(little_ttft_s(conc, p_thr, osl, p_itl) / ttft - 1))
        share.append(abs(p_ttft - ttft) / (conc * osl / thr))  # the TTFT miss over the measured request time C / X
    k = np.array(kappa)
    print(f"cells with mean TTFT, mean ITL and output tokens/s at one concurrency: {len(k)}")
    print(
        f"Little's law on NIM's own figures: |TTFT from C/X − (osl−1)·ITL ÷ TTFT − 1| median "
        f"{np.median(measured_gap):.1%}, p90 {np.percentile(measured_gap, 90):.1%}"
    )
    print(
        f"... on the simulator's predictions: median {np.median(predicted_gap):.1%}, "
        f"p90 {np.percentile(predicted_gap, 90):.1%}"
    )
    print(
        f"predicted vs measured: mean ITL median APE {np.median(itl_ape):.1%}, output tokens/s "
        f"{np.median(thr_ape):.1%}, mean TTFT {np.median(ttft_ape):.1%}"
    )
    print(
        f"mean TTFT that the predicted output tokens/s and ITL leave by Little's law, against the measured: median APE "
        f"{np.median(little_ape):.1%}, p90 {np.percentile(little_ape, 90):.1%}"
    )
    print(
        f"κ = (osl−1)·ITL / TTFT: median {np.median(k):.1f}, p90 {np.percentile(k, 90):.1f}; "
        f"cells where 12% on TTFT needs ITL within 2%: {np.mean(k > GOAL / 0.02):.0%}, within 1%: "
        f"{np.mean(k > GOAL / 0.01):.0%}"
    )
    print(
        f"the simulator's TTFT miss as a share of the measured request time C / X: median {np.median(share):.2%}, "
        f"p90 {np.percentile(share, 90):.1%}"
    )
    print(f"nim_ttft_itl_sensitivity_median: {np.median(k):.1f} x")


if __name__ == "__main__":
    main()
