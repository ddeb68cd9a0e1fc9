#!/usr/bin/env bash
# The CPU runs of the SQuAD report (experiments/README.md): the real all-MiniLM-L6-v2 with LoRA
# on all six projections (r 8), lora vs sphere vs stiefel with Table 5's μ/lower/upper and lr,
# the same budget and seed for each. ../shared has no train split: v1.1 trains on 1,000
# questions of 40 of dev-v1.1.json's 48 articles and evaluates on 1,000 questions of the other
# 8 (split_by_article); v2.0 trains on the cs224n re-split's dev file and evaluates on its test
# file (disjoint articles). Needs a release build:
#
#   cargo build --release --bin squad && experiments/squad-cpu/run.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-experiments/runs/squad-cpu}
shared=${MANIFOLD_LORA_SHARED:-../shared}
mkdir -p "$out"
targets='lora.target_modules=["query","key","value","attention.output.dense","intermediate.dense","output.dense"]'
common=(--rank 8 --model "$shared/models/all-MiniLM-L6-v2" --set "$targets" --epochs 1
  --batch-size 16 --length-bucketing --output-dir "$out")

run() {
  local name=$1
  shift
  [ -f "$out/$name/results.json" ] && return 0
  rm -rf "${out:?}/$name"
  ./target/release/squad "$@" "${common[@]}" --run-name "$name" > "$out/$name.log" 2>&1 \
    || echo "$name: $(tail -n 1 "$out/$name.log")" >> "$out/failed.txt"
}

for method in lora stiefel sphere; do
  run "v1.1-$method" --version 1.1 --method "$method" --data-dir "$shared/data/squad/v1.1" \
    --set squad.split_by_article=40 --train-limit 1000 --dev-limit 1000
done
run "v2.0-stiefel" --version 2.0 --method stiefel --data-dir "$shared/data/squad/v2.0-cs224n-split" \
  --set squad.train_file=dev-v2.0.json --set squad.dev_file=test-v2.0.json \
  --train-limit 1000 --dev-limit 1000
