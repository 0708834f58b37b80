"""Training methods, registered one line each in a plain dict."""

from __future__ import annotations

import torch

from tunesmith.config import Config
from tunesmith.config.components import register_method_config
from tunesmith.methods import (
    freeze,
    full,
    gradual_unfreeze,
    layerwise_lr,
    lora,
    prefix_tuning,
    prompt_tuning,
    qlora,
)
from tunesmith.methods.base import LoopHooks, Method, count_parameters, format_report, parameter_report
from tunesmith.methods.layers import transformer_layers
from tunesmith.registry import add_unique
from tunesmith.train.precision import cpu_supports_bf16, use_bf16

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method and its config class (so `method.name` accepts it); names are unique."""
    if method.config.model_fields["name"].default != method.name:
        raise ValueError(
            f"method {method.name!r}: its config class is named {method.config.model_fields['name'].default!r}"
        )
    register_method_config(method.config)
    return add_unique(METHODS, method.name, method, "method")


register(lora.METHOD)
register(qlora.METHOD)
register(full.METHOD)
register(freeze.METHOD)
register(gradual_unfreeze.METHOD)
register(layerwise_lr.METHOD)
register(prompt_tuning.METHOD)
register(prefix_tuning.METHOD)


def base_dtype(cfg: Config) -> torch.dtype:
    """bf16 storage for a frozen base where bf16 is native (halves memory, speeds matmuls); else fp32."""
    if cfg.model.dtype == "bf16":
        return torch.bfloat16
    if cfg.model.dtype == "fp32" or not METHODS[cfg.method.name].frozen_base:
        return torch.float32
    return torch.bfloat16 if use_bf16(cfg.train.precision) and cpu_supports_bf16() else torch.float32


__all__ = [
    "METHODS",
    "LoopHooks",
    "Method",
    "base_dtype",
    "count_parameters",
    "format_report",
    "parameter_report",
    "register",
    "transformer_layers",
]
