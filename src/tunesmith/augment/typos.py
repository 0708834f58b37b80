"""Character typos: a neighbouring key hit instead, a letter dropped, doubled, or swapped with the next one."""

from __future__ import annotations

import random

from tunesmith.augment.base import Augment, AugmentConfig, Augmenter, n_edits, per_text

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbour_keys() -> dict[str, str]:
    """Keys next to each letter on a QWERTY keyboard: left and right, and the same column one row up and down."""
    keys: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for c, char in enumerate(row):
            near = [row[c - 1] if c else "", row[c + 1] if c + 1 < len(row) else ""]
            near += [_ROWS[rr][c] for rr in (r - 1, r + 1) if 0 <= rr < len(_ROWS) and c < len(_ROWS[rr])]
            keys[char] = "".join(near)
    return keys


NEIGHBOURS = _neighbour_keys()
OPERATIONS = ("neighbour", "drop", "duplicate", "transpose")


def _edit(chars: list[str], i: int, operation: str, rng: random.Random) -> None:
    """Apply one typo at position `i` in place (the letter's case is kept)."""
    char = chars[i]
    if operation == "neighbour" and char.lower() in NEIGHBOURS:
        new = rng.choice(NEIGHBOURS[char.lower()])
        chars[i] = new.upper() if char.isupper() else new
    elif operation == "drop":
        chars[i] = ""
    elif operation == "duplicate":
        chars[i] = char * 2
    elif operation == "transpose" and i + 1 < len(chars) and chars[i + 1].isalpha():
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    else:  # a non-QWERTY letter, or nothing to transpose with: double it instead
        chars[i] = char * 2


def add_typos(text: str, rng: random.Random, rate: float) -> str | None:
    """`text` with about `rate` of its letters mistyped (at least one); None when it has no letters."""
    letters = [i for i, char in enumerate(text) if char.isalpha()]
    if not letters:
        return None
    chars = list(text)
    # Edit from the right so each edit leaves the positions still to edit where they were.
    for i in sorted(rng.sample(letters, n_edits(rate, len(letters))), reverse=True):
        _edit(chars, i, rng.choice(OPERATIONS), rng)
    result = "".join(chars)
    return result if result != text else None


def build(cfg: AugmentConfig) -> Augment:
    return per_text(lambda text, rng: add_typos(text, rng, cfg.typo_rate))


TYPOS = Augmenter("typos", "character typos: neighbouring key, dropped, doubled or swapped letters", build)
