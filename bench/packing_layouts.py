"""CPU seconds of one forward + backward per micro-batch layout: padded vs packed at several row capacities.

    python bench/packing_layouts.py [--batches 6]

smollm2-135m, LoRA, bf16 autocast, 1 thread, on the quick bench's length-grouped micro-batches of 8 Alpaca rows.
`time.process_time` is used so that other jobs on a shared machine distort the figures less.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_sample_2000.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from tunesmith.config import load_config
    from tunesmith.data.batching import batch_plan, collate, collate_packed
    from tunesmith.data.prepare import prepare_data
    from tunesmith.recipes.common import load_chat_tokenizer
    from tunesmith.recipes.train import load_for_training
    from tunesmith.tasks import TASKS
    from tunesmith.train.numerics import token_loss_sum
    from tunesmith.train.precision import autocast, skip_adapter_input_casts

    with tempfile.TemporaryDirectory() as tmp:
        lines = ALPACA.read_text().splitlines()
        train, val = Path(tmp) / "train.jsonl", Path(tmp) / "val.jsonl"
        train.write_text("\n".join(lines[:96]) + "\n")
        val.write_text("\n".join(lines[96:128]) + "\n")
        sets = [f"data.train={train}", f"data.val={val}", "data.format=alpaca", "method.dropout=0"]
        cfg = load_config(None, sets)
        tokenizer = load_chat_tokenizer(cfg)
        data = prepare_data(cfg.data, tokenizer, 0).train
    model = load_for_training(cfg, TASKS["sft"].steps, None, tokenizer)
    skip_adapter_input_casts(model)
    layouts = {
        "padded": lambda ex: collate(ex, 0),
        "packed, capacity = longest (shipped)": lambda ex: collate_packed(ex, 0),
        "packed, capacity 256": lambda ex: collate_packed(ex, 0, 256),
        "packed, capacity 512": lambda ex: collate_packed(ex, 0, 512),
        "packed, one row": lambda ex: collate_packed(ex, 0, 10**6),
    }
    plan = batch_plan([len(e.input_ids) for e in data], 8, 0, 0)
    for n, idx in enumerate(plan[: args.batches + 1]):
        examples = [data[i] for i in idx]
        for name, layout in layouts.items():
            batch = layout(examples)
            start = time.process_time()
            with autocast(True):
                loss, _ = token_loss_sum(model, batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
            if n:  # the first batch warms up
                shape = "×".join(map(str, batch["input_ids"].shape))
                print(f"batch {n}: {name:38s} {shape:>8s} {time.process_time() - start:6.2f} s", flush=True)


if __name__ == "__main__":
    main()
