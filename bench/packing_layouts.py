"""CPU seconds of one forward + backward per micro-batch layout: padded vs packed at several row capacities.

    python bench/packing_layouts.py [--batches 6]

smollm2-135m, LoRA, bf16 autocast, 1 thread, on the quick bench's length-grouped micro-batches of 8 Alpaca rows.
`time.process_time` is used so that other jobs on a shared machine distort the figures less.
"""

from __future__ import annotations

import argparse
import time

import torch
from _quick_sft import quick_sft_model_and_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from tunesmith.data.batching import batch_plan, collate, collate_packed
    from tunesmith.train.numerics import token_loss_sum
    from tunesmith.train.precision import autocast

    model, data = quick_sft_model_and_data()
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
