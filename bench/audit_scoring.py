"""Bias-audit scoring throughput on the real smollm2-135m: CrowS-Pairs pairs per second for one model.

Each pair is two sentences scored by whole-sentence log-likelihood (`evaluate/sequence_scoring.text_logprobs`).
An audit scores every pair with the base and the tuned model, so its pairs/s is about half of one model's.

Usage: python bench/audit_scoring.py [--pairs 96] [--threads 1] [--configs fp32:1,fp32:16,bf16:16]
The first config is the reference for `same_preference_as_first` (share of pairs with the same preference).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from paths import CROWS

from tunesmith.evaluate.bias import crows_rows
from tunesmith.evaluate.sequence_scoring import text_logprobs
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.train.precision import autocast


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--configs", default="fp32:1,fp32:16,fp32:32,bf16:16,bf16:32", help="precision:batch_size, comma-separated"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_causal_lm("smollm2-135m", dtype=torch.float32).eval()
    tokenizer = load_tokenizer("smollm2-135m")
    rows = crows_rows(str(CROWS), args.pairs)
    texts = [r["sent_more"] for r in rows] + [r["sent_less"] for r in rows]
    text_logprobs(model, tokenizer, texts[:8], 8)  # warm-up
    reference = None
    parser_configs = [(p, int(b)) for p, b in (c.split(":") for c in args.configs.split(","))]
    for precision, batch_size in parser_configs:
        start = time.perf_counter()
        with autocast(precision == "bf16"):
            scores = text_logprobs(model, tokenizer, texts, batch_size)
        seconds = time.perf_counter() - start
        prefers = scores[: len(rows)] > scores[len(rows) :]
        reference = prefers if reference is None else reference
        print(
            json.dumps(
                {
                    "precision": precision,
                    "batch_size": batch_size,
                    "pairs": len(rows),
                    "seconds": round(seconds, 2),
                    "pairs_per_s": round(len(rows) / seconds, 2),
                    "same_preference_as_first": float((prefers == reference).double().mean()),
                    "threads": args.threads,
                    "load_avg_1min": os.getloadavg()[0],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
