"""Causal self-attention forward + backward on CPU: torch's fused SDPA kernel vs tunesmith's batched matmuls.

    python bench/attention_kernels.py

SmolLM2-135M's attention shape (9 query heads, 3 key/value heads, head dim 64) in bf16, for micro-batches of
1,024 tokens cut into rows of 64-512 tokens (the forward-pass budget `train.max_forward_tokens`). Prints the
milliseconds per layer for each kernel, their ratio, and each one's relative error against float64.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from tunesmith.compat.attention import matmul_causal_attention

HEADS, KV_HEADS, DIM, SCALE = 9, 3, 64, 0.125
SHAPES = [(16, 64), (8, 128), (4, 256), (2, 512)]  # (rows, tokens per row)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=SCALE, enable_gqa=True)


def matmuls(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return matmul_causal_attention(q, k, v, SCALE)


def forward_backward_ms(kernel, tensors, grad: torch.Tensor, repeats: int = 20) -> float:
    def once() -> None:
        kernel(*tensors).backward(grad)
        for t in tensors:
            t.grad = None

    for _ in range(3):
        once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats * 1e3


def relative_error(kernel, tensors, grad: torch.Tensor) -> float:
    """Of the output and the three input gradients together, against the same kernel in float64."""

    def outputs(fn, inputs):
        out = fn(*inputs)
        out.backward(grad.to(out.dtype))
        return torch.cat([t.detach().double().flatten() for t in (out, *(x.grad for x in inputs))])

    exact_inputs = [t.detach().double().requires_grad_() for t in tensors]
    exact = outputs(sdpa, exact_inputs)
    ours = outputs(kernel, tensors)
    for t in tensors:
        t.grad = None
    return float((ours - exact).norm() / exact.norm())


def main() -> None:
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, bf16, ms per layer (forward + backward)")
    print("| rows × tokens | SDPA ms | matmuls ms | speed-up | SDPA error | matmuls error |\n|---|---|---|---|---|---|")
    for rows, length in SHAPES:
        q = (torch.randn(rows, HEADS, length, DIM) * 2).bfloat16().requires_grad_()
        k, v = ((torch.randn(rows, KV_HEADS, length, DIM) * 2).bfloat16().requires_grad_() for _ in range(2))
        grad = torch.randn(rows, HEADS, length, DIM).bfloat16()
        fused, ours = (forward_backward_ms(fn, (q, k, v), grad) for fn in (sdpa, matmuls))
        errors = [relative_error(fn, (q, k, v), grad) for fn in (sdpa, matmuls)]
        print(
            f"| {rows} × {length} | {fused:.1f} | {ours:.1f} | {fused / ours:.1f}× | "
            f"{errors[0]:.1e} | {errors[1]:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
