"""Mixed precision: bf16 autocast where the hardware runs it fast, fp32 otherwise."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
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


# tokens x hidden -> MLP width of a small decoder: the matmuls training and scoring spend their time in
_PROBE_SHAPE = (2048, 576, 1536)


def _matmul_rate(dtype: torch.dtype, seconds: float = 0.15, trials: int = 3) -> float:
    """Best GFLOP/s of `trials` runs of the probe matmul in `dtype` at torch's current thread count."""
    m, k, n = _PROBE_SHAPE
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b  # first call: kernel selection, page faults
    best = 0.0
    for _ in range(trials):
        runs, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            a @ b
            runs += 1
        best = max(best, 2 * m * k * n * runs / elapsed / 1e9)
    return best


def _probe_file() -> Path:
    """Where the measured speed-up of this CPU, torch build and thread count is kept."""
    from tunesmith.models.cache import cache_dir

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line for line in cpu.splitlines() if line.startswith("model name")), "")
    flags = next((line for line in cpu.splitlines() if line.startswith("flags")), "")
    key = hashlib.sha256(f"{cpu.count('processor')}|{model}|{flags}|{torch.__version__}".encode()).hexdigest()[:16]
    return cache_dir() / "cpu" / f"bf16-{key}-t{torch.get_num_threads()}.json"


@functools.cache
def bf16_matmul_speedup() -> float:
    """bf16 ÷ fp32 matmul throughput on this CPU, measured once (about a second) and kept in the cache.

    Having AVX512-BF16 is not enough: on some hosts bf16 matmuls run at half the fp32 rate (measured on
    2026-12-07: 143 vs 257 GFLOP/s on 2 cores with the flag), on others several times faster (400-2,200).
    The kept value makes every run on one machine choose the same precision (a resume never switches).
    """
    path = _probe_file()
    with contextlib.suppress(OSError, ValueError, KeyError):
        return float(json.loads(path.read_text())["speedup"])
    bf16, fp32 = _matmul_rate(torch.bfloat16), _matmul_rate(torch.float32)
    speedup = bf16 / fp32 if fp32 else 0.0
    with contextlib.suppress(OSError):  # an unwritable cache: measured again by the next process
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"speedup": speedup, "bf16_gflops": bf16, "fp32_gflops": fp32}))
        partial.replace(path)
    return speedup


def use_bf16(precision: str) -> bool:
    """Resolve a `train.precision` setting (auto, bf16, fp32) to whether bf16 autocast is on. auto: on a GPU
    that supports it, or on a CPU with native bf16 where bf16 matmuls measure faster than fp32 ones."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16() and bf16_matmul_speedup() > 1.0


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
