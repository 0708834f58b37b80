"""One decoder layer's training step with and without each fused op (`train.fused_ops`).

    python bench/fused_ops.py                  # 8 × 128 tokens
    python bench/fused_ops.py --shape 2x512 --shape 16x64

smollm2-135m as `tunesmith train` loads it (bf16 frozen base, fp32 LoRA r=16 on all linears, bf16 autocast,
the batched-matmul attention), forward + backward of layer 5 on random activations. The settings alternate in
rounds of a few steps, so drift of the machine's speed hits them alike; the table gives each one's median and
its median ratio to the model's own code over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _quick_sft import quick_sft_model_and_data

from tunesmith.compat.attention import matmul_attention
from tunesmith.compat.fused import FUSED_OPS, fused_training_ops
from tunesmith.train.precision import autocast

SETTINGS = {"model code": [], **{name: [name] for name in FUSED_OPS}, "all": list(FUSED_OPS)}


def layer_step(model: torch.nn.Module, rows: int, tokens: int) -> Callable[[], None]:
    inner = model.base_model.model.model
    layer = inner.layers[5]
    hidden = torch.randn(rows, tokens, inner.config.hidden_size, generator=torch.Generator().manual_seed(0))
    hidden = hidden.to(torch.bfloat16)
    angles = inner.rotary_emb(hidden, torch.arange(tokens)[None])

    def step() -> None:
        x = hidden.clone().requires_grad_(True)
        with autocast(True):
            out = layer(x, position_embeddings=angles)
        out.float().sum().backward()

    return step


def measure(model: torch.nn.Module, rows: int, tokens: int, rounds: int, steps: int) -> dict[str, list[float]]:
    step, times = layer_step(model, rows, tokens), {name: [] for name in SETTINGS}
    for round_ in range(rounds):
        order = list(SETTINGS) if round_ % 2 == 0 else list(SETTINGS)[::-1]
        for name in order:
            with fused_training_ops(model, bool(SETTINGS[name]), True, SETTINGS[name]) as report:
                assert report.kernels == SETTINGS[name], report
                step()  # warm
                started = time.perf_counter()
                for _ in range(steps):
                    step()
                times[name].append((time.perf_counter() - started) / steps * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", help="ROWSxTOKENS (default 8x128)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    model, _ = quick_sft_model_and_data(16)
    model.train()
    with matmul_attention(model, True):
        for shape in args.shape or ["8x128"]:
            rows, tokens = (int(n) for n in shape.split("x"))
            times = measure(model, rows, tokens, args.rounds, args.steps)
            base = times["model code"]
            print(f"\n{rows} rows × {tokens} tokens, one layer forward + backward, {args.rounds} rounds")
            print("| setting | ms (median) | vs model code |\n|---|---|---|")
            for name, ms in times.items():
                ratio = statistics.median(t / b for t, b in zip(ms, base, strict=True))
                print(f"| {name} | {statistics.median(ms):.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
