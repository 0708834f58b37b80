"""Tokens/s of training steps on the quick bench's micro-batches, under one runtime setting per process.

    python bench/step_speed.py                          # every setting below, one fresh process each
    python bench/step_speed.py --setting threads=1      # one of them

smollm2-135m as `tunesmith train` loads it (bf16 base, fp32 LoRA, bf16 autocast, attention as batched matmuls,
right-padded batches without a mask), the first 10 length-grouped micro-batches of 8 Alpaca rows; each runs once
to warm up, then the second pass is timed. Settings: torch intra-op threads (1, all cores, twice the cores; the
thread count is set through OMP_NUM_THREADS before torch starts), OpenMP threads bound to cores, torch's fused
SDPA kernel instead of the matmul attention (`train.attention=model`), SDPA's math kernel, and the padding mask
kept (SDPA with a mask).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "threads=1": {"OMP_NUM_THREADS": "1"},
    f"threads={2 * (os.cpu_count() or 1)}": {"OMP_NUM_THREADS": str(2 * (os.cpu_count() or 1))},
    "threads bound to cores": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "attention=sdpa": {},
    "sdpa=math": {},
    "attention mask kept": {},
}


def measure(setting: str, n_batches: int) -> None:
    import torch
    from _quick_sft import quick_sft_model_and_data
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import tunesmith.train.numerics as numerics
    from tunesmith.compat.attention import matmul_attention
    from tunesmith.data.batching import batch_plan, collate
    from tunesmith.train.numerics import token_loss_sum
    from tunesmith.train.precision import autocast

    model, data = quick_sft_model_and_data()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    plan = batch_plan([len(e.input_ids) for e in data], 8, 0, 0)[:n_batches]
    batches = [collate([data[i] for i in idx], 0) for idx in plan]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    if setting == "attention mask kept":
        numerics.is_right_padded = lambda mask: False
    kernel = (lambda: sdpa_kernel(SDPBackend.MATH)) if setting == "sdpa=math" else contextlib.nullcontext
    use_matmul = setting not in ("attention=sdpa", "sdpa=math")  # a kept mask goes to SDPA anyway
    for timed in (False, True):
        start = time.perf_counter()
        for batch in batches:
            with autocast(True), kernel(), matmul_attention(model, use_matmul):
                loss, n = token_loss_sum(model, batch)
            (loss / n).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if timed:
            seconds = time.perf_counter() - start
            print(f"{setting:24s} {torch.get_num_threads()} threads  {tokens / seconds:6.1f} tok/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=list(SETTINGS), help="one setting (default: all, one process each)")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure(args.setting, args.batches)
    for setting in [args.setting] if args.setting else list(SETTINGS):
        env = {**os.environ, **SETTINGS[setting]}
        cmd = [sys.executable, __file__, "--child", "--setting", setting, "--batches", str(args.batches)]
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
