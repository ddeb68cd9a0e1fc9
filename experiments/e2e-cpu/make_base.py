#!/usr/bin/env python3
"""The base model of the E2E CPU smoke runs (experiments/README.md), which are NOT the paper's
setting: no pretrained GPT-2 exists on this network, and adapters on a random base learn nothing.

    python3 experiments/e2e-cpu/make_base.py [--shared ../shared] [--out experiments/runs/e2e-cpu]

1. Splits ../shared's E2E devset.csv by meaning representation: the first 480 distinct MRs (all
   their references) train, the other 67 validate (files train.csv and dev.csv; the test file is
   ../shared's testset_w_refs.csv, unchanged).
2. Builds a small GPT-2-shaped model (4 layers, 128 wide, 4 heads, 256 positions, GPT-2's
   tokenizer and vocabulary) from random weights (seed 0) and trains every weight for 2 epochs on
   the "MR <|endoftext|> reference <|endoftext|>" sequences of train.csv (loss on the reference,
   the same format as tasks::e2e::data), AdamW lr 1e-3, batch 16, with PyTorch on one thread.
   Saved in the Hugging Face layout to OUT/base/, which the adapter runs load as --model.
"""

import argparse
import csv
import os
import random
import shutil

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

RENAME = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly"}


def split_punctuation(text):
    # The LoRA repo's stardard_tokenize (gpt2_decode.py), as tasks::e2e::data::split_punctuation.
    out = []
    for ch in text:
        if not (ch.isalnum() or ch.isspace() or ch == "_"):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def linearise(mr):
    slots = []
    for part in mr.split("],"):
        part = part.strip().rstrip("]")
        name, value = part.split("[", 1)
        name = RENAME.get(name.strip(), name.strip())
        slots.append(f"{name} : {split_punctuation(value.strip())}")
    return " | ".join(slots)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="experiments/runs/e2e-cpu")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(args.shared, "data/e2e/tuetschek/devset.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    mrs = list(dict.fromkeys(r["mr"] for r in rows))
    train_mrs = set(mrs[:480])
    for name, keep in [("train.csv", lambda r: r["mr"] in train_mrs), ("dev.csv", lambda r: r["mr"] not in train_mrs)]:
        with open(os.path.join(args.out, name), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)
            w.writerow(["mr", "ref"])
            for r in rows:
                if keep(r):
                    w.writerow([r["mr"], r["ref"]])

    tok = GPT2TokenizerFast(tokenizer_file=os.path.join(args.shared, "models/gpt2-tokenizer/tokenizer.json"))
    eos = 50256
    seqs = []
    for r in rows:
        if r["mr"] not in train_mrs:
            continue
        prompt = tok.encode(linearise(r["mr"])) + [eos]
        completion = tok.encode(" " + r["ref"].strip()) + [eos]
        seqs.append((prompt + completion, len(prompt)))

    config = GPT2Config(n_embd=128, n_layer=4, n_head=4, n_positions=256, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    for epoch in range(args.epochs):
        random.shuffle(seqs)
        total, count = 0.0, 0
        for i in range(0, len(seqs), 16):
            batch = seqs[i:i + 16]
            width = max(len(s) for s, _ in batch)
            ids = torch.full((len(batch), width), eos)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, (s, p) in enumerate(batch):
                ids[b, :len(s)] = torch.tensor(s)
                mask[b, :len(s)] = 1
                labels[b, p:len(s)] = torch.tensor(s[p:])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item(), count + 1
        print(f"epoch {epoch + 1}: mean completion loss {total / count:.4f}", flush=True)
    base = os.path.join(args.out, "base")
    model.save_pretrained(base, safe_serialization=True)
    shutil.copy(os.path.join(args.shared, "models/gpt2-tokenizer/tokenizer.json"), base)
    print(f"wrote {base}")


if __name__ == "__main__":
    main()
