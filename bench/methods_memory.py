"""Memory and step time of the training methods on the real model, one fresh process per method.

    python bench/methods_memory.py [--steps 5] [--methods lora qlora-4bit ...] [--set key=value ...]

Each method runs the real training recipe (`run_train`, task sft) for `--steps` optimizer steps, batch 4,
sequences cut at 128 tokens, on the shared Alpaca sample. Prints one JSON line per method: peak RSS of the
process (loading, the base validation pass and training included), the bytes of the model's weights, and the
median step time of steps 2..N.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from paths import ALPACA

METHODS = {
    "lora": ["method.name=lora"],
    "qlora-4bit": ["method.name=qlora", "method.bits=4"],
    "qlora-8bit": ["method.name=qlora", "method.bits=8"],
    "dora": ["method.name=lora", "method.use_dora=true"],
    "full": ["method.name=full"],
    "freeze": ["method.name=freeze", "method.freeze_layers=20"],
    "gradual_unfreeze": ["method.name=gradual_unfreeze", "method.every_steps=2", "method.lr_decay=0.9"],
    "layerwise_lr_decay": ["method.name=layerwise_lr_decay"],
    "prompt_tuning": ["method.name=prompt_tuning", "method.init_text=Answer the instruction."],
    "prefix_tuning": ["method.name=prefix_tuning", "method.init_text=Answer the instruction."],
}
DEFAULT = ["lora", "qlora-4bit", "qlora-8bit"]


def _current_rss_mb() -> int:
    """Resident memory now (Linux), as opposed to the peak so far."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)


def _worker(out: str, sets: list[str]) -> None:
    from tunesmith.config import load_config
    from tunesmith.recipes import train as recipe
    from tunesmith.train.loop import peak_rss_mb

    captured = {}
    real_load = recipe.load_for_training

    def load_and_measure(*args):
        model = real_load(*args)
        gc.collect()
        captured["rss_after_load_mb"] = _current_rss_mb()
        captured["peak_after_load_mb"] = peak_rss_mb()
        tensors = list(model.parameters()) + list(model.buffers())
        captured["weights_mb"] = round(sum(t.numel() * t.element_size() for t in tensors) / 2**20)
        return model

    recipe.load_for_training = load_and_measure
    run = recipe.run_train(load_config(None, sets)).path
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train_loss" in r]
    summary = json.loads((run / "summary.json").read_text())
    seconds = [r["tokens"] / r["tokens_per_s"] for r in steps[1:]]
    print(
        json.dumps(
            {
                "peak_rss_mb": max(r["peak_rss_mb"] for r in steps),
                "weights_mb": captured["weights_mb"],
                "rss_after_load_mb": captured["rss_after_load_mb"],
                "peak_after_load_mb": captured["peak_after_load_mb"],
                "rss_after_train_mb": _current_rss_mb(),
                "step_s": round(statistics.median(seconds), 2),
                "base_val_loss": round(summary["base_val_loss"], 4),
                "final_train_loss": round(steps[-1]["train_loss"], 4),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=DEFAULT, choices=list(METHODS))
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.worker, args.sets)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods:
            sets = [
                *METHODS[name],
                f"data.train={ALPACA}",
                "data.max_train_rows=64",
                "data.max_val_rows=8",
                "data.max_length=128",
                f"run.output_dir={tmp}",
                f"run.name={name}",
                f"train.max_steps={args.steps}",
                "train.batch_size=4",
                "train.eval_every=100000",
                "train.save_every=100000",
                "eval.batch_size=8",
                *args.sets,
            ]
            cmd = [sys.executable, __file__, "--worker", tmp] + [f"--set={s}" for s in sets]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr.strip()[-400:]
            print(
                json.dumps({"method": name, "settings": args.sets, **json.loads(line)})
                if done.returncode == 0
                else f"{name}: failed: {line}",
                flush=True,
            )


if __name__ == "__main__":
    main()
