"""One tunesmith SFT run for bench/sft_speed.py, with TRL's baseline hyperparameters; prints one JSON line.

Usage: python bench/_sft_speed_worker.py TRAIN.jsonl EVAL.jsonl N_EVAL OUT_DIR [--set-style overrides...]
"""

from __future__ import annotations

import json
import os
import resource
import sys

from tunesmith.config import load_config
from tunesmith.data.prepare import prepare_data
from tunesmith.data.tokenize import load_chat_tokenizer
from tunesmith.recipes.train import run_train

# TRL SFTConfig/PEFT defaults used by the anchor: linear decay, no warmup, no weight decay, clip 1.0, LoRA dropout 0.
ANCHOR = [
    "method.name=lora",
    "method.r=16",
    "method.alpha=32",
    "method.dropout=0.0",
    "method.target_modules=all-linear",
    "train.epochs=1",
    "train.batch_size=8",
    "train.lr=2e-4",
    "train.schedule=linear",
    "train.warmup_ratio=0",
    "train.max_grad_norm=1.0",
    "train.eval_every=100000",
    "train.save_every=100000",
    "data.max_length=512",
    "data.format=alpaca",
    "model.name=smollm2-135m",
    "run.name=bench",
]


def main() -> None:
    train, evald, n_eval, out, *extra = sys.argv[1:]
    cfg = load_config(
        None,
        [
            *ANCHOR,
            f"data.train={train}",
            f"data.val={evald}",
            f"data.max_val_rows={n_eval}",
            f"run.output_dir={out}",
            *extra,
        ],
    )
    run_dir = run_train(cfg).path
    # Per-example lengths for the attention FLOPs of the MFU (a token-cache hit, outside the timed run).
    lengths = [len(e.input_ids) for e in prepare_data(cfg.data, load_chat_tokenizer(cfg), cfg.run.seed).train]
    summary = json.loads((run_dir / "summary.json").read_text())
    report = json.loads((run_dir / "data_report.json").read_text())["train"]
    train_s = summary["train_seconds"] - summary["eval_seconds"]
    fused_s = summary["fused_ops"]["setup_seconds"]  # compiled and checked before the training clock starts
    print(
        json.dumps(
            {
                "system": "tunesmith",
                "n_train": report["encoded"],
                "train_tokens": report["tokens"],
                "supervised_tokens": report["trainable_tokens"],
                "sum_sq_len": sum(n * n for n in lengths),
                "trainable_params": summary["trainable_params"],
                "train_s": round(train_s, 1),
                "train_tokens_per_s": round(report["tokens"] / train_s, 1),
                "fused_ops": summary["fused_ops"]["used"],
                "fused_setup_s": fused_s,
                "train_tokens_per_s_with_setup": round(report["tokens"] / (train_s + fused_s), 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "eval_loss": round(summary["tuned_val_loss"], 4),
                "overrides": extra,
                "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "system",
            }
        )
    )


if __name__ == "__main__":
    main()
