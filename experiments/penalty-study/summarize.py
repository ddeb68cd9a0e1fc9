#!/usr/bin/env python3
"""Table of the penalty-reading study from its run directories (see run.sh).

    python3 experiments/penalty-study/summarize.py OUT_DIR > experiments/penalty-study/results.md

Per cell: best dev metric (the paper reports the best epoch), the final distance of B to its own
manifold (mean and max over adapters: ‖BᵀB − I‖_F for Stiefel, ‖diag(BᵀB) − 1‖ for the sphere),
the largest per-step mean ‖BᵀB − I‖_F during training (Stiefel only: that is its constraint), the
final train loss, and the first step at which the train loss (mean of the last 16 steps) reaches
the lora run's final one (the paper's "faster convergence" claim).
"""

import json
import os
import sys

TASKS = ["sst2", "cola", "mrpc", "rte", "stsb"]
CELLS = [("lora", "base")] + [(m, r) for r in ["in_gradient", "after_full", "after_unscaled_quarter", "after_quarter"]
                               for m in ["stiefel", "sphere"]]
READING = {
    "base": "AdamW",
    "in_gradient": "in_gradient",
    "after_full": "after_step, step_size, full",
    "after_unscaled_quarter": "after_step, unscaled, quarter",
    "after_quarter": "after_step, step_size, quarter",
}
WINDOW = 16


def load(out, run):
    d = os.path.join(out, run)
    path = os.path.join(d, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    steps = []
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            if m.get("split") == "train":
                steps.append(m)
    return results, steps


def smoothed(steps):
    losses = [s["loss"] for s in steps]
    return [sum(losses[max(0, i + 1 - WINDOW):i + 1]) / min(WINDOW, i + 1) for i in range(len(losses))]


def skipped_reason(out, run):
    path = os.path.join(out, "skipped.txt")
    if os.path.exists(path):
        for line in open(path):
            if line.startswith(run + ":"):
                return line.split(":", 1)[1].strip()
    return "not run"


def main():
    out = sys.argv[1]
    print("| task | method | penalty reading | dev (best epoch) | distance, final mean / max | "
          "max ‖BᵀB − I‖_F in training | final train loss | steps to lora's final loss | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in TASKS:
        base = load(out, f"{task}-lora-base")
        target = smoothed(base[1])[-1] if base else None
        for method, reading in CELLS:
            run = f"{task}-{method}-{reading}"
            loaded = load(out, run)
            if loaded is None:
                reason = skipped_reason(out, run)
                if reason != "not run":
                    print(f"| {task} | {method} | {READING[reading]} | rejected: {reason} | | | | | |")
                continue
            r, steps = loaded
            ma = smoothed(steps)
            reach = next((i + 1 for i, v in enumerate(ma) if target is not None and v <= target), None)
            dist = ("–" if r["manifold_distance_mean"] is None
                    else f"{r['manifold_distance_mean']:.4f} / {r['manifold_distance_max']:.4f}")
            btb = max(s["BtB-I"] for s in steps) if method == "stiefel" else None
            metric = r["primary_metric"].replace("matthews_correlation", "mcc")
            print(f"| {task} | {method} | {READING[reading]} | {metric} {r['best_dev']:.4f} ({r['best_epoch']}) | "
                  f"{dist} | {'–' if btb is None else f'{btb:.4f}'} | {ma[-1]:.4f} | "
                  f"{'never' if reach is None else f'{reach} of {len(steps)}'} | {r['wall_time_s']:.0f} s |")


if __name__ == "__main__":
    main()
