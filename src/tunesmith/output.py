"""The terminal: results go to stdout (`out`), progress, warnings and errors to stderr (`err`).

Every layer prints through these two consoles, so a host that must stay quiet (a server, a UI, a test) silences
all of them in one place with `silenced()`. Soft wrap: long lines are not broken, so paths stay copyable and a
one-line error stays one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """One warning line on stderr (rich markup allowed in `message`)."""
    err.print(f"[yellow]warning:[/] {message}")


@contextmanager
def silenced() -> Iterator[None]:
    """Nothing printed by tunesmith inside the block (what it writes to files is unchanged)."""
    previous = out.quiet, err.quiet
    out.quiet = err.quiet = True
    try:
        yield
    finally:
        out.quiet, err.quiet = previous
