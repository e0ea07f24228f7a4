"""Accuracy and latency of the gateway's complexity classifier on the shipped labelled prompts.

The shipped weights (src/tokenomy/gateway/data/classifier.json) are fitted on the training split
only; the held-out split (30%, chosen by prompt id) measures them. 5-fold cross-validation over
all prompts gives a second, less split-dependent estimate. `--write` refits and stores the weights.

    .venv/bin/python benchmarks/gateway_classifier.py [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np

from tokenomy.gateway.classifier import (
    FEATURES,
    WEIGHTS_FILE,
    Classifier,
    default_classifier,
    features,
    fit_logistic,
    is_held_out,
    load_prompts,
)

L2 = 1.0


def cross_validated_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(len(y))
    correct = 0
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        w, b = fit_logistic(x[train], y[train], L2)
        correct += int((((x[test] @ w + b) >= 0) == y[test]).sum())
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="refit on the training split and store the weights")
    args = parser.parse_args()

    prompts = load_prompts()
    x = np.array([features(p) for p in prompts])
    y = np.array([p["label"] == "complex" for p in prompts])
    held_out = np.array([is_held_out(p["id"]) for p in prompts])
    if args.write:
        w, b = fit_logistic(x[~held_out], y[~held_out], L2)
        WEIGHTS_FILE.write_text(
            json.dumps(
                {
                    "features": list(FEATURES),
                    "weights": [round(float(v), 6) for v in w],
                    "bias": round(b, 6),
                    "l2": L2,
                    "fitted_on": f"prompts.jsonl training split: {int((~held_out).sum())} of {len(prompts)} prompts",
                },
                indent=1,
            )
            + "\n"
        )
        default_classifier.cache_clear()
        print(f"weights written to {WEIGHTS_FILE}")

    clf: Classifier = default_classifier()
    predicted = np.array([clf.classify(p)[0] == "complex" for p in prompts])
    right = predicted == y
    per_task: dict[str, list[bool]] = defaultdict(list)
    for p, ok, ho in zip(prompts, right, held_out, strict=True):
        if ho:
            per_task[p["task"]].append(bool(ok))
    print(
        f"prompts: {len(prompts)} ({int(y.sum())} complex, {int((~y).sum())} simple); held out: {int(held_out.sum())}"
    )
    print(f"training-split accuracy (in-sample): {right[~held_out].mean():.3f}")
    print(f"5-fold cross-validated accuracy (all prompts): {cross_validated_accuracy(x, y):.3f}")
    tp = int((predicted & y & held_out).sum())
    fp = int((predicted & ~y & held_out).sum())
    fn = int((~predicted & y & held_out).sum())
    print(f"held-out: complex sent to a simple tier {fn}, simple sent to a complex tier {fp}, complex caught {tp}")
    print(
        "held-out accuracy by task: "
        + ", ".join(f"{t} {np.mean(v):.2f} (n={len(v)})" for t, v in sorted(per_task.items()))
    )

    bodies = [{"model": "auto", "messages": p["messages"]} for p in prompts]
    clf.classify(bodies[0])
    repeats = 20
    times = []
    for _ in range(repeats):
        for body in bodies:
            t0 = time.perf_counter()
            clf.classify(body)
            times.append(time.perf_counter() - t0)
    lat = np.array(times) * 1e6
    print(
        f"latency per request: p50 {np.percentile(lat, 50):.1f} µs, p99 {np.percentile(lat, 99):.1f} µs, "
        f"mean {lat.mean():.1f} µs over {len(lat)} calls"
    )
    print(f"classifier_accuracy: {right[held_out].mean():.3f} held-out fraction")


if __name__ == "__main__":
    main()
