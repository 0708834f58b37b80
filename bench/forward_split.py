"""Long micro-batches three ways: one forward pass, activation checkpointing, or split into smaller passes.

    python bench/forward_split.py            # every layout, one fresh process each (peak memory is per process)

smollm2-135m LoRA as `tunesmith train` loads it, the full speed bench's 400 Alpaca rows in length-grouped
micro-batches of 8; the 4 longest micro-batches and 4 from the middle make 8 optimizer steps. Prints tokens/s
and the process's peak RSS. `train.max_forward_tokens` splits a micro-batch into passes of at most that many
padded tokens (`data.batching.split_by_tokens`); the step and its token-normalised loss are the same.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

LAYOUTS = ["one pass", "checkpointing", "split 512", "split 1024", "split 2048"]


def measure(layout: str) -> None:
    import torch
    from _quick_sft import quick_sft_model_and_data

    from tunesmith.data.batching import batch_plan, collate, split_by_tokens
    from tunesmith.train.memory import ActivationCheckpointing
    from tunesmith.train.numerics import accumulate_step
    from tunesmith.train.precision import autocast

    model, data = quick_sft_model_and_data(400)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    lengths = [len(e.input_ids) for e in data]
    plan = sorted(batch_plan(lengths, 8, 0, 0), key=lambda idx: -max(lengths[i] for i in idx))
    ActivationCheckpointing(model, "on" if layout == "checkpointing" else "off")
    budget = int(layout.split()[1]) if layout.startswith("split") else None
    steps = [
        [collate([data[i] for i in part], 0) for part in split_by_tokens(idx, lengths, budget)]
        for idx in plan[:4] + plan[20:24]
    ]
    tokens = sum(int(b["attention_mask"].sum()) for step in steps for b in step)
    start = time.perf_counter()
    for micro in steps:
        accumulate_step(model, micro, autocast(True))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{layout:14s} {tokens / seconds:6.1f} tok/s  peak RSS {peak:,} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layout:
        return measure(args.layout)
    for layout in LAYOUTS:
        subprocess.run([sys.executable, __file__, "--layout", layout], check=True)


if __name__ == "__main__":
    main()
