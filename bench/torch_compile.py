"""Does `torch.compile` speed up training on this CPU? Eager vs compiled decoder layers, same micro-batches.

    python bench/torch_compile.py [--batches 10] [--static]   # dynamic shapes unless --static

smollm2-135m as `tunesmith train` loads it (bf16 frozen base, fp32 LoRA r=16 all-linear, bf16 autocast), on the
quick bench's length-grouped micro-batches of 8 Alpaca rows. Each decoder layer is compiled in place
(`nn.Module.compile`, so parameter names and checkpoints are unchanged). Every micro-batch runs twice: the first
pass pays for compilation, the second is the steady state. Prints tokens/s of both passes per mode.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _quick_sft import quick_sft_model_and_data


def measure(mode: str, n_batches: int) -> None:
    import torch

    from tunesmith.data.batching import batch_plan, collate
    from tunesmith.train.numerics import token_loss_sum
    from tunesmith.train.precision import autocast

    model, data = quick_sft_model_and_data()
    if mode != "eager":
        for layer in model.get_base_model().model.layers:
            layer.compile(dynamic=mode == "dynamic")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    plan = batch_plan([len(e.input_ids) for e in data], 8, 0, 0)[:n_batches]
    batches = [collate([data[i] for i in idx], 0) for idx in plan]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    for label in ("first pass (compiles)", "second pass"):
        start = time.perf_counter()
        for batch in batches:
            with autocast(True):
                loss, n = token_loss_sum(model, batch)
            (loss / n).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
        print(f"{mode:8s} {label:22s} {seconds:6.1f} s  {tokens / seconds:6.1f} tok/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--static", action="store_true", help="compile for fixed shapes (recompiles per length)")
    args = parser.parse_args()
    if args.mode:
        return measure(args.mode, args.batches)
    # One fresh process per mode, so compiled kernels and allocator state do not carry over.
    for mode in ("eager", "static" if args.static else "dynamic", "eager"):
        cmd = [sys.executable, __file__, "--mode", mode, "--batches", str(args.batches)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
