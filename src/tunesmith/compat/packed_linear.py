"""fp32 linears on weights pre-packed for MKL's sgemm, for steps of a fixed number of rows (`serve`'s decoding).

A decode step multiplies each weight by a handful of rows (one per request in the batch). For such small
products MKL spends much of its time re-packing the weight into its panel layout on every call; packed once,
a 16-row decode step of smollm2-135m took 93.5 ms against 113.6 ms (median of 5 alternating rounds of 10 steps,
one process, 2-core CPU). The op is `torch.ops.mkl._mkl_reorder_linear_weight`, the one torch's inductor uses
when it freezes a model for CPU. The packed product runs only when a call has exactly the rows it was packed
for, so smaller calls (down to half of them) are padded with zero rows; other calls (a long prompt chunk, a
step of a few rows) take `F.linear` unchanged.

The op is private to torch: where it is missing or gives another result than `F.linear` on a probe, nothing is
patched, and the calls that take the packed product are counted (`packed_calls`). Cost: a packed copy of every
fp32 linear weight while the block lasts (smollm2-135m: 0.5 GB); where that copy would take more than half of the
memory available, nothing is packed (a 3B fp32 model would otherwise double its 12 GB).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from tunesmith.compat.patches import Checked

log = logging.getLogger(__name__)
CHECKED_ON = (Checked("torch", ">=2.13,<2.14"),)
_calls = {"packed": 0}


def packed_calls() -> int:
    """Linear calls so far that took the packed product (all engines of this process)."""
    return _calls["packed"]


def available() -> bool:
    """MKL's packed sgemm is in this torch build and gives `F.linear`'s numbers on a probe."""
    if not torch.backends.mkl.is_available() or not hasattr(torch.ops.mkl, "_mkl_linear"):
        return False
    try:
        weight = torch.linspace(-1, 1, 24 * 40).reshape(24, 40)
        x = torch.linspace(1, -1, 4 * 40).reshape(4, 40)
        out = torch.ops.mkl._mkl_linear(x, torch.ops.mkl._mkl_reorder_linear_weight(weight, 4), weight, None, 4)
        return bool(torch.allclose(out, F.linear(x, weight), atol=1e-5))
    except RuntimeError as error:
        log.info("MKL packed linear unavailable: %s", error)
        return False


def available_bytes() -> int | None:
    """Memory the system can still give (Linux's MemAvailable); None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _packable(model: nn.Module) -> list[nn.Linear]:
    found = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if type(module) is nn.Linear and isinstance(weight, torch.Tensor) and weight.dtype == torch.float32:
            if weight.device.type == "cpu":
                found.append(module)
    return found


def _packed_forward(module: nn.Linear, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
    weight, bias, fewest = module.weight, module.bias, max(1, rows // 2)
    packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), rows)

    def forward(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        count = flat.shape[0]
        if not fewest <= count <= rows or x.dtype != torch.float32:
            return F.linear(x, weight, bias)
        if count < rows:
            flat = torch.cat([flat, flat.new_zeros(rows - count, flat.shape[1])])
        out = torch.ops.mkl._mkl_linear(flat, packed, weight, bias, rows)
        _calls["packed"] += 1
        return out[:count].reshape(*x.shape[:-1], out.shape[-1])

    return forward


@contextlib.contextmanager
def packed_linears(model: nn.Module, rows: int) -> Iterator[int]:
    """While the block lasts, every fp32 `nn.Linear` of `model` on CPU multiplies `rows // 2 .. rows` rows on its
    packed weight. Yields how many linears were packed (0 where the op is unavailable)."""
    patched: list[tuple[nn.Linear, Callable]] = []
    linears = _packable(model) if rows >= 2 and available() else []
    needed, free = sum(m.weight.numel() * 4 for m in linears), available_bytes()
    if free is not None and needed > free // 2:
        log.info("not packing linear weights: %.1f GB needed, %.1f GB available", needed / 1e9, free / 1e9)
        linears = []
    for module in linears:
        module.forward = _packed_forward(module, rows)  # an instance attribute: removed below
        patched.append((module, module.forward))
    try:
        yield len(patched)
    finally:
        for module, forward in patched:
            if vars(module).get("forward") is forward:  # only what is still ours
                del module.forward
