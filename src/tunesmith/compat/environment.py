"""Shims for third-party library behaviour, each with its reason (STYLE: one place, tested).

Import-light on purpose: `tunesmith/__init__` runs `quiet_optional_kernel_notice` before anything imports peft.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from tunesmith.compat.versions import Checked

if TYPE_CHECKING:
    from torch import nn

# bitsandbytes' CPU notices and 4-bit repack flag, transformers' USE_HUB_KERNELS: checked on these.
CHECKED_ON = (Checked("bitsandbytes", ">=0.50,<0.51"), Checked("transformers", ">=5.24,<5.26"))

# bitsandbytes 0.50 logs at import, on CPUs with AVX512-BF16, that it could not fetch an optional kernel from
# the Hugging Face Hub ("pip install kernels"); peft imports bitsandbytes whenever it is installed. We never fetch
# kernels at run time, so the line is noise on every command (and breaks our one-line errors).
_BNB_CPU_KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"


def quiet_optional_kernel_notice() -> None:
    """Hide bitsandbytes' import-time notice about the optional Hub kernel (real errors still show)."""
    logging.getLogger(_BNB_CPU_KERNEL_LOGGER).setLevel(logging.ERROR)


def no_hub_kernels_by_default() -> None:
    """Keep transformers from fetching and running compiled kernels from the Hugging Face Hub (USE_HUB_KERNELS=NO),
    unless the user set the variable.

    transformers 5.25 loads every model with `use_kernels=True` when the `kernels` package is installed (5.25
    requires it). That downloads binaries from the Hub at run time (code we did not review, and a network call on
    offline machines), and its `model.train()`/`model.eval()` re-kernelize the model, which deletes per-instance
    `forward` attributes such as our fused ops' (issue 14; `compat/fused.py` survives it, but the fusion would be
    lost after the first evaluation). Earlier releases ignore the variable.
    """
    os.environ.setdefault("USE_HUB_KERNELS", "NO")


ONEDNN_KERNEL_CACHE = 64


def limit_onednn_kernel_cache() -> None:
    """Cap oneDNN's cache of compiled matmul kernels at 64 (its default: 1,024), unless the user set it.

    oneDNN compiles and caches a kernel per matmul shape. Training shapes change with every batch's length, so
    the default cache grows for a whole run (about 0.5 MB a kernel) with little reuse: on the anchor bench it cost
    ~580 MB of peak memory for no measurable speed (docs/performance.md). 64 holds the ~30 shapes of a forward and
    backward pass. oneDNN reads the variable when it builds its first kernel: this must run before torch's
    first matmul.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))


def quiet_int8_cast_notice() -> None:
    """Hide bitsandbytes' per-call notice that 8-bit matmul inputs are cast to float16 (it logs every forward).

    The cast is how LLM.int8() works (documented in docs/methods.md); repeating it per layer per step buries the
    progress output.
    """
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def keep_4bit_trainable_on_cpu(model: nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights into its CPU inference layout; returns layers changed.

    bitsandbytes 0.50 repacks a Linear4bit's weight the first time it runs in eval mode under no_grad on an
    AVX512-BF16 CPU (our validation pass), and the repacked weight then feeds an op without a backward: every
    gradient through the frozen base silently becomes zero (measured: all LoRA B gradients 0.0 after one eval
    pass). The flag only exists on versions with that CPU path.
    """
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed
