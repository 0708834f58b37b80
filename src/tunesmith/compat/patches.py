"""What every runtime patch of a third-party library shares: undo, call counting, and the versions it was checked on.

A patch replaces an attribute (a module's `forward`, a class method, a flag) for the duration of a block. Three
rules keep a library upgrade from losing a run or passing silently:
- **undo is safe**: only what is still ours is put back (compared by identity), in reverse order, and a failure
  is a line in the report, never an exception;
- **calls are counted**: a replacement counts the training calls that took it, so a patch the model no longer
  calls (the library moved the code) is reported as not running, not as used;
- **versions are stated**: each patch names the library versions it was checked on (`CHECKED_ON`), and
  `unchecked_versions` says which installed ones fall outside them (`tunesmith doctor`, the run's warnings).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.compat.versions import Checked, unchecked_versions

__all__ = ["Checked", "Patches", "grad_only", "one_line", "reference_pass", "unchecked_versions"]

_MISSING = object()


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def describe(owner: Any) -> str:
    return getattr(owner, "__qualname__", None) or getattr(owner, "__name__", None) or type(owner).__name__


@dataclass
class _Patch:
    owner: Any
    name: str
    value: Any  # ours: restore only while it is still there
    old: Any  # _MISSING when the owner had no attribute of its own


class Patches:
    """Attribute replacements that can all be undone, in reverse order, without ever raising.

    A library may change an attribute under us while we train: transformers 5.25 with `kernels` re-kernelizes the
    model on every `train()`/`eval()` and deletes per-instance `forward` attributes. Undo puts back only what is
    still ours (compared by identity) and reports the rest as one line each."""

    def __init__(self) -> None:
        self._undo: list[_Patch] = []
        self.calls: Counter[str] = Counter()
        self.op = ""  # the patch being installed: its replacements count their calls under this name

    def grad_only(self, fast: Callable, original: Callable) -> Callable:
        return grad_only(fast, original, self.calls, self.op)

    def set(self, owner: Any, name: str, value: Any) -> None:
        old = vars(owner).get(name, _MISSING)
        setattr(owner, name, value)
        self._undo.append(_Patch(owner, name, value, old))

    def restore(self) -> list[str]:
        problems = []
        while self._undo:
            patch = self._undo.pop()
            try:
                problem = _undo(patch)
            except Exception as exc:  # noqa: BLE001 - a failed undo is reported, never allowed to lose a run
                problem = f"{describe(patch.owner)}.{patch.name}: could not be restored ({one_line(exc)})"
            if problem:
                problems.append(problem)
        return problems


def _undo(patch: _Patch) -> str | None:
    current = vars(patch.owner).get(patch.name, _MISSING)
    if current is not patch.value and current is not _MISSING:
        return f"{describe(patch.owner)}.{patch.name} was replaced by another library while training; left as it is"
    if patch.old is not _MISSING:
        setattr(patch.owner, patch.name, patch.old)
    elif current is not _MISSING:
        delattr(patch.owner, patch.name)
    return None


_reference = threading.local()  # set while a check computes the model's own result


@contextlib.contextmanager
def reference_pass() -> Iterator[None]:
    """Within the block, every `grad_only` replacement runs the model's own code (to check a patch against it)."""
    _reference.on = True
    try:
        yield
    finally:
        _reference.on = False


def grad_only(fast: Callable, original: Callable, calls: Counter | None = None, name: str = "") -> Callable:
    """Training calls take `fast` (counted in `calls[name]`); no-grad calls (validation, generation) the model's own
    code."""

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled() and not getattr(_reference, "on", False):
            if calls is not None:
                calls[name] += 1
            return fast(*args, **kwargs)
        return original(*args, **kwargs)

    return call
