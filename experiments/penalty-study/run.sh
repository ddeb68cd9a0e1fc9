#!/usr/bin/env bash
# The penalty-reading study of experiments/README.md: real MiniLM on five real GLUE tasks, lora
# against stiefel and sphere under each reading of the penalty step, Table 6's μ/lower/upper (r8),
# the same budget and seed for every cell. Needs ../shared and a release build:
#
#   cargo build --release --bin glue && experiments/penalty-study/run.sh [OUT_DIR] [JOBS]
#
# Cells whose reading rejects the task's μ (after_step + unscaled + quarter needs μ < 1) are
# skipped with the reason. Then `python3 experiments/penalty-study/summarize.py OUT_DIR`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-experiments/runs/penalty-study}
jobs=${2:-2}
shared=${MANIFOLD_LORA_SHARED:-../shared}
mkdir -p "$out"

# Short-sequence tasks first: they give every reading a result before the long RTE/MRPC cells.
short=(sst2 cola stsb)
long=(mrpc rte)
readings=(after_full after_unscaled_quarter after_quarter)

flags_of() {
  case $1 in
    base) ;;
    in_gradient) echo "--set optimizer.penalty_placement=in_gradient" ;;
    after_full) echo "--set optimizer.penalty_placement=after_step --set optimizer.penalty_convention=full" ;;
    after_unscaled_quarter) echo "--set optimizer.penalty_placement=after_step --set optimizer.penalty_scaling=unscaled --set optimizer.penalty_convention=quarter" ;;
    after_quarter) echo "--set optimizer.penalty_placement=after_step --set optimizer.penalty_convention=quarter" ;;
  esac
}

cells=()
for task in "${short[@]}" "${long[@]}"; do cells+=("$task lora base"); done
for task in "${short[@]}" "${long[@]}"; do
  for method in stiefel sphere; do cells+=("$task $method in_gradient"); done
done
for group in short long; do
  declare -n tasks=$group
  for task in "${tasks[@]}"; do
    for reading in "${readings[@]}"; do
      for method in stiefel sphere; do cells+=("$task $method $reading"); done
    done
  done
done

run_cell() {
  local task=$1 method=$2 reading=$3
  local run="$task-$method-$reading"
  [ -f "$out/$run/results.json" ] && return 0
  # A run still in progress (another invocation of this script) holds its lock: leave it.
  if [ -f "$out/$run/.lock" ] && kill -0 "$(cat "$out/$run/.lock")" 2>/dev/null; then
    echo "$run is running (process $(cat "$out/$run/.lock"))"
    return 0
  fi
  rm -rf "${out:?}/$run" # an interrupted earlier attempt
  # shellcheck disable=SC2046
  ./target/release/glue --task "$task" --method "$method" --rank 8 \
    --model "$shared/models/all-MiniLM-L6-v2" --data-dir "$shared/data/glue" \
    --set 'lora.target_modules=["query","value"]' --train-limit 1000 --epochs 3 --lr 1e-3 \
    --max-len 128 --length-bucketing --output-dir "$out" --run-name "$run" $(flags_of "$reading") \
    > "$out/$run.log" 2>&1 || echo "$run: $(tail -n 1 "$out/$run.log")" >> "$out/skipped.txt"
}
export -f run_cell flags_of
export out shared
printf '%s\n' "${cells[@]}" | xargs -P "$jobs" -L 1 bash -c 'run_cell "$0" "$1" "$2"'
