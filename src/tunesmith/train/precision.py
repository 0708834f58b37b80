"""Mixed precision: bf16 autocast where the hardware runs it fast, fp32 otherwise."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch


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
