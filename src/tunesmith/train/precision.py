"""Mixed precision: bf16 autocast where the hardware runs it fast, fp32 otherwise."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AVX512-BF16 or AMX), where bf16 autocast is a speed-up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    """Resolve a `train.precision` setting (auto, bf16, fp32) to whether bf16 autocast is on."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported() or cpu_supports_bf16()


def autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device in use, or a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _bf16_linear_weights(model: nn.Module) -> Iterator[None]:
    """Every plain fp32 `nn.Linear` computes with a bf16 copy of its weight until the block ends.

    Under bf16 autocast a linear casts its fp32 weight to bf16 on every forward (18% of a label-scoring pass on
    smollm2-135m); casting once gives bit-identical results, since autocast multiplies the same bf16 values. The
    copy is a separate tensor, so a weight tied to the input embedding keeps the embedding in fp32. Cost: half
    the linear weights' size in memory, for the duration of the block.
    """
    swapped = []
    for module in model.modules():
        weight = module._parameters.get("weight") if type(module) is nn.Linear else None
        if weight is not None and weight.dtype == torch.float32:
            swapped.append((module, weight))
            module._parameters["weight"] = nn.Parameter(weight.detach().to(torch.bfloat16), requires_grad=False)
    try:
        yield
    finally:
        for module, weight in swapped:
            module._parameters["weight"] = weight


def _canonical_strides(_module: nn.Module, args: tuple) -> tuple | None:
    """Give the output layer's input the strides its shape implies. `hidden[:, -1:, :]` (what `logits_to_keep=1`
    hands it) keeps the stride of the whole sequence; torch 2.13's bf16 linear then takes a batched-matmul path
    that copies the whole weight for every call. smollm2-135m's 49152x576 output layer: 100 ms instead of 4.5 ms
    for one row (2.9x the rest of a 47-token prefill). One row is re-strided as a view. Several rows are not
    contiguous: autocast's cast of fp32 activations already copies them densely, but bf16 activations would go
    to the slow path as they are (16 rows: 2.3 s against 24 ms), so they are copied (a few KB)."""
    x = args[0]
    if not isinstance(x, torch.Tensor):
        return None
    if not x.is_contiguous():
        return (x.contiguous(), *args[1:])
    strides, step = [], 1
    for size in reversed(x.shape):
        strides.append(step)
        step *= size
    canonical = tuple(reversed(strides))
    return None if x.stride() == canonical else (x.as_strided(x.shape, canonical), *args[1:])


@contextlib.contextmanager
def _output_layer_strides(model: nn.Module) -> Iterator[None]:
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    handle = output.register_forward_pre_hook(_canonical_strides) if isinstance(output, nn.Module) else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


@contextlib.contextmanager
def inference(model: nn.Module, bf16: bool) -> Iterator[None]:
    """Forward passes only: eval mode, `torch.inference_mode`, unmasked causal attention as batched matmuls
    (`compat.attention`), and under bf16 autocast (when `bf16`) linears on bf16 weights cast once. The training
    mode, the attention function and the fp32 weights are back when the block ends."""
    from tunesmith.compat.attention import matmul_attention  # imports transformers: not for `validate`

    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            autocast(bf16),
            matmul_attention(model),
            _bf16_linear_weights(model) if bf16 else contextlib.nullcontext(),
            _output_layer_strides(model) if bf16 else contextlib.nullcontext(),
        ):
            yield
    finally:
        model.train(was_training)
