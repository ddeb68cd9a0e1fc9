#!/usr/bin/env python3
"""Table of the SQuAD CPU runs from their run directories (see run.sh).

    python3 experiments/squad-cpu/summarize.py OUT_DIR

Per run: EM and F1 of the best epoch on the held-out questions (percent, from the official
scripts' numbers in eval.json), v2.0's HasAns/NoAns split, the trivial baseline on the same
questions, the distance of B to its manifold at the end (mean / max over adapters), the train
loss (mean of the first and of the last 25 steps) and the wall time.
"""

import json
import os
import sys

RUNS = ["v1.1-lora", "v1.1-sphere", "v1.1-stiefel", "v2.0-stiefel"]
WINDOW = 25


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "experiments/runs/squad-cpu"
    print("| run | EM | F1 | HasAns EM / F1 | NoAns EM | trivial baseline EM / F1 | distance mean / max "
          "| train loss, first → last 25 steps | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in RUNS:
        d = os.path.join(out, run)
        if not os.path.exists(os.path.join(d, "results.json")):
            print(f"| {run} | not run | | | | | | | |")
            continue
        results = json.load(open(os.path.join(d, "results.json")))
        official = json.load(open(os.path.join(d, "eval.json")))
        losses = [json.loads(l)["loss"] for l in open(os.path.join(d, "metrics.jsonl"))
                  if json.loads(l).get("split") == "train"]
        first = sum(losses[:WINDOW]) / min(WINDOW, len(losses))
        last = sum(losses[-WINDOW:]) / min(WINDOW, len(losses))
        baseline = results["data"]["baseline"]
        has = (f"{official['HasAns_exact']:.1f} / {official['HasAns_f1']:.1f}"
               if "HasAns_exact" in official else "–")
        no = f"{official['NoAns_exact']:.1f}" if "NoAns_exact" in official else "–"
        dist = ("–" if results.get("manifold_distance_mean") is None else
                f"{results['manifold_distance_mean']:.4f} / {results['manifold_distance_max']:.4f}")
        exact = official.get("exact", official.get("exact_match"))
        print(f"| {run} | {exact:.1f} | {official['f1']:.1f} | {has} | {no} "
              f"| {100 * baseline['exact_match']:.1f} / {100 * baseline['f1']:.1f} | {dist} "
              f"| {first:.2f} → {last:.2f} | {results['wall_time_s']:.0f} s |")


if __name__ == "__main__":
    main()
