#!/usr/bin/env bash
# The E2E CPU smoke runs of experiments/README.md — NOT the paper's setting (no pretrained GPT-2
# exists on this network): lora, sphere and stiefel adapters (rank 4 on the q and v thirds of
# c_attn, Table 4's μ/lower/upper for gpt2-medium) on the small GPT-2-shaped base that
# make_base.py trains from random weights, the same budget and seed for each; validation on
# dev.csv (67 MRs held out of ../shared's devset), beam search (10 beams, length penalty 0.9,
# no-repeat 4) on the first 100 MRs of the official test set, scored with the five metrics;
# 2,000 of the 4,014 training pairs (seeded), one epoch, lr 1e-3, 25 warm-up steps.
#
#   python3 experiments/e2e-cpu/make_base.py --shared ../shared
#   cargo build --release --bin e2e && experiments/e2e-cpu/run.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-experiments/runs/e2e-cpu}
shared=$(cd "${MANIFOLD_LORA_SHARED:-../shared}" && pwd)
for method in lora stiefel sphere; do
  name="adapter-$method"
  [ -f "$out/$name/results.json" ] && continue
  # A run still in progress (another invocation of this script) holds its lock: leave it.
  if [ -f "$out/$name/.lock" ] && kill -0 "$(cat "$out/$name/.lock")" 2>/dev/null; then
    echo "$name is running (process $(cat "$out/$name/.lock"))"
    return 0
  fi
  rm -rf "${out:?}/$name"
  ./target/release/e2e --config "experiments/e2e/gpt2-medium-$method.toml" --model "$out/base" \
    --data-dir "$out" --set e2e.train_file=train.csv --set e2e.dev_file=dev.csv \
    --set "e2e.test_file=$shared/data/e2e/tuetschek/testset_w_refs.csv" --set e2e.test_limit=100 \
    --train-limit 2000 --epochs 1 --lr 1e-3 --set warmup_steps=25 --max-len 256 --length-bucketing \
    --output-dir "$out" --run-name "$name" > "$out/$name.log" 2>&1 \
    || echo "$name: $(tail -n 1 "$out/$name.log")" >> "$out/failed.txt"
done
