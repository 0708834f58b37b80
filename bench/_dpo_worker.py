"""One tunesmith DPO run for bench/dpo.py; prints one JSON line.

Usage: python bench/_dpo_worker.py TRAIN.jsonl VAL.jsonl OUT_DIR SETTINGS_JSON
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from tunesmith.config import load_config
from tunesmith.recipes.train import run_train


def main() -> None:
    train, val, out, settings = sys.argv[1:5]
    s = json.loads(settings)
    cfg = load_config(
        str(Path(__file__).resolve().parents[1] / "configs" / "dpo-lora.yaml"),
        [
            f"data.train={train}",
            f"data.val={val}",
            f"run.output_dir={out}",
            "run.name=dpo",
            f"train.lr={s['lr']}",
            f"train.batch_size={s['batch_size']}",
            f"train.epochs={s['epochs']}",
            f"train.warmup_ratio={s['warmup_ratio']}",
            f"task.beta={s['beta']}",
            f"data.max_length={s['max_length']}",
            "data.max_train_rows=null",
            "train.eval_every=100000",  # TRL's anchor does not evaluate during training either
            "train.save_every=100000",
            "data.check.errors=[schema]",
        ],
    )
    run_dir = run_train(cfg).path
    summary = json.loads((run_dir / "summary.json").read_text())
    report = json.loads((run_dir / "data_report.json").read_text())
    reference_s = report["reference_seconds"]["train"]
    train_s = summary["train_seconds"] - summary["eval_seconds"] + reference_s
    tokens = report["train"]["tokens"]
    print(
        json.dumps(
            {
                "system": "tunesmith",
                "n_train": report["train"]["encoded"],
                "train_tokens": tokens,
                "train_s": round(train_s, 1),
                "reference_s": reference_s,
                "train_tokens_per_s": round(tokens / train_s, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "val_loss": round(summary["tuned_val_loss"], 4),
                "val_reward_accuracy": summary.get("val_reward_accuracy"),
                "adapter": str(run_dir / "adapter"),
                "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "system",
            }
        )
    )


if __name__ == "__main__":
    main()
