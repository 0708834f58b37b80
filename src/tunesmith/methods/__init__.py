"""Training methods, registered one line each in a plain dict."""

from __future__ import annotations

from tunesmith.methods import full, lora
from tunesmith.methods.base import Method, count_parameters

METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    """Add a method; names are unique."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method


register(lora.METHOD)
register(full.METHOD)

__all__ = ["METHODS", "Method", "count_parameters", "register"]
