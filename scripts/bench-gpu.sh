#!/usr/bin/env bash
# One-command GPU check: a GLUE training step of DeBERTa-v3-base shapes (config-initialised from
# ../shared/models/deberta-v3-base.config.json, LoRA r 8 on query_proj/value_proj, batch 32 × 256)
# on CUDA, ours (fusion + autotune) against PyTorch + PEFT on the same GPU, printing both and the
# ratio. Needs an NVIDIA GPU with its driver and CUDA toolkit, and `pip install torch
# transformers peft` for the PyTorch side (skipped with a message without them).
#
#   scripts/bench-gpu.sh                 # DeBERTa, 5 timed steps
#   scripts/bench-gpu.sh --models minilm,deberta --steps 10
set -euo pipefail
cd "$(dirname "$0")/.."
export MANIFOLD_LORA_SHARED="${MANIFOLD_LORA_SHARED:-$(pwd)/../shared}"
backend="${BACKEND:-cuda}"
exec cargo bench --features "$backend" --bench compare -- \
  --backends "$backend" --models deberta --threads 1 --batch 32 --seq 256 --steps 5 --precision f32,bf16 "$@"
