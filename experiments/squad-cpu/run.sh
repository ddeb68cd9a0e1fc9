#!/usr/bin/env bash
# The CPU runs of the SQuAD report (experiments/README.md): the real all-MiniLM-L6-v2 with LoRA
# on all six projections (r 8), lora vs sphere vs stiefel with Table 5's μ/lower/upper and lr,
# the same budget and seed for each. ../shared has no train split: v1.1 trains on 2,000
# questions of 40 of dev-v1.1.json's 48 articles and evaluates on 1,000 questions of the other
# 8 (split_by_article); v2.0 the same way on the cs224n re-split's dev file (12 of its 16
# articles train; its test file has hidden labels, so it cannot score a run). One epoch, batch 8
# (about 250 steps). Needs a release build:
#
#   cargo build --release --bin squad && experiments/squad-cpu/run.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-experiments/runs/squad-cpu}
shared=${MANIFOLD_LORA_SHARED:-../shared}
mkdir -p "$out"
targets='lora.target_modules=["query","key","value","attention.output.dense","intermediate.dense","output.dense"]'
common=(--rank 8 --model "$shared/models/all-MiniLM-L6-v2" --set "$targets" --epochs 1
  --batch-size 8 --length-bucketing --output-dir "$out")

run() {
  local name=$1
  shift
  [ -f "$out/$name/results.json" ] && return 0
  # A run still in progress (another invocation of this script) holds its lock: leave it.
  if [ -f "$out/$name/.lock" ] && kill -0 "$(cat "$out/$name/.lock")" 2>/dev/null; then
    echo "$name is running (process $(cat "$out/$name/.lock"))"
    return 0
  fi
  rm -rf "${out:?}/$name" # an interrupted earlier attempt
  ./target/release/squad "$@" "${common[@]}" --run-name "$name" > "$out/$name.log" 2>&1 \
    || echo "$name: $(tail -n 1 "$out/$name.log")" >> "$out/failed.txt"
}

v11=(--version 1.1 --data-dir "$shared/data/squad/v1.1" --set squad.split_by_article=40
  --train-limit 2000 --dev-limit 1000)
v20=(--version 2.0 --data-dir "$shared/data/squad/v2.0-cs224n-split"
  --set squad.dev_file=dev-v2.0.json --set squad.split_by_article=12
  --train-limit 2000 --dev-limit 1000)
# Two runs side by side, one thread each, on the 2-core VM.
run v1.1-lora --method lora "${v11[@]}" &
run v1.1-stiefel --method stiefel "${v11[@]}" &
wait
run v1.1-sphere --method sphere "${v11[@]}" &
run v2.0-stiefel --method stiefel "${v20[@]}" &
wait
