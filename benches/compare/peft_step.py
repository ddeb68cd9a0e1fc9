#!/usr/bin/env python3
"""PyTorch + PEFT side of `cargo bench --bench compare`: the same work as benches/compare/ours.rs.

Sequence classifier (2 labels), LoRA r 8, alpha 16, dropout 0 on the query and value projections,
batch 32 x 128 of the same pseudo-random ids, forward + backward + AdamW step (trainable
parameters only, as PEFT marks them), then eval forwards under inference_mode. Prints one JSON
line; without torch/transformers/peft it prints {"skipped": reason} and exits 0.

Install: pip install torch transformers peft
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

LR = 1e-4


def ids(cls, batch, seq):
    return [[cls if j == 0 else 1000 + ((i * seq + j) * 7919) % 29000 for j in range(seq)] for i in range(batch)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["minilm", "deberta"], required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    # Automatic mixed precision: weights stay f32, autocast runs the products in half.
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared")
    args = parser.parse_args()
    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        print(json.dumps({"skipped": f"{e} (pip install torch transformers peft)"}))
        return
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    if args.model == "minilm":
        path = args.shared / "models" / "all-MiniLM-L6-v2"
        if not path.is_dir():
            print(json.dumps({"skipped": f"{path} is not available"}))
            return
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        targets, cls = ["query", "value"], 101
    else:
        path = args.shared / "models" / "deberta-v3-base.config.json"
        if not path.is_file():
            print(json.dumps({"skipped": f"{path} is not available"}))
            return
        config = transformers.DebertaV2Config.from_json_file(str(path))
        config.num_labels = 2
        model = transformers.DebertaV2ForSequenceClassification(config)
        targets, cls = ["query_proj", "value_proj"], 1
    lora = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0,
                           target_modules=targets)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skipped": "torch sees no CUDA device"}))
        return
    device = torch.device(args.device)
    model = peft.get_peft_model(model, lora).to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LR, eps=1e-8, weight_decay=0.0)

    b, s = args.batch, args.seq
    batch = {
        "input_ids": torch.tensor(ids(cls, b, s), device=device),
        "attention_mask": torch.ones(b, s, dtype=torch.long, device=device),
        "token_type_ids": torch.zeros(b, s, dtype=torch.long, device=device),
    }
    labels = torch.tensor([i % 2 for i in range(b)], device=device)

    def autocast():
        dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(args.precision)
        return torch.autocast(args.device, dtype=dtype or torch.float32, enabled=dtype is not None)

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    train = optim = 0.0
    for step in range(args.steps + 1):  # step 0 warms up
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = model(**batch, labels=labels).loss
        loss.backward()
        sync()
        before = time.perf_counter()
        optimizer.step()
        sync()
        end = time.perf_counter()
        if step > 0:
            train += end - start
            optim += end - before
    model.eval()
    evaluation = 0.0
    with torch.inference_mode():
        for step in range(args.steps + 1):
            start = time.perf_counter()
            with autocast():
                model(**batch).logits.float().sum().item()
            if step > 0:
                evaluation += time.perf_counter() - start
    n = args.steps
    print(json.dumps({
        "implementation": f"PyTorch {torch.__version__} + PEFT {peft.__version__}"
        + ("" if args.precision == "f32" else f" (autocast {args.precision})"),
        "model": args.model,
        "threads": args.threads,
        "steps": n,
        "batch": b,
        "seq": s,
        "train_s": train / n,
        "optim_s": optim / n,
        "adamw_s": None,
        "eval_s": evaluation / n,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
    }))


if __name__ == "__main__":
    sys.exit(main())
