"""Training methods, registered one line each in a plain dict."""

from __future__ import annotations

from tunesmith.methods import full, lora
from tunesmith.methods.base import Method, count_parameters
from tunesmith.registry import add_unique

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method; names are unique."""
    return add_unique(METHODS, method.name, method, "method")


register(lora.METHOD)
register(full.METHOD)

__all__ = ["METHODS", "Method", "count_parameters", "register"]
