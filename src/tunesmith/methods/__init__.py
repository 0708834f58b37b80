"""Training methods, registered one line each in a plain dict."""

from __future__ import annotations

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

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method; names are unique."""
    return add_unique(METHODS, method.name, method, "method")


register(lora.METHOD)
register(qlora.METHOD)
register(full.METHOD)
register(freeze.METHOD)
register(gradual_unfreeze.METHOD)
register(layerwise_lr.METHOD)
register(prompt_tuning.METHOD)
register(prefix_tuning.METHOD)

__all__ = [
    "METHODS",
    "LoopHooks",
    "Method",
    "count_parameters",
    "format_report",
    "parameter_report",
    "register",
    "transformer_layers",
]
