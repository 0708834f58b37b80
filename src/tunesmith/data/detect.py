"""Tell a data file's format from the field names of its rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.data.formats import FORMATS
from tunesmith.data.formats.base import show_name
from tunesmith.errors import UserError

SAMPLE_ROWS = 50
MAX_FIELDS_SHOWN = 12


def detect_format(records: Sequence[tuple[int, dict[str, Any]]] | Sequence[dict[str, Any]], path: str | Path) -> str:
    """Return the name of the first format (in `FORMATS` order) whose required fields are in most sampled rows.

    `records` are the good rows from `read_records` (`(line, dict)` pairs) or plain dicts; the first 50 are
    sampled and a field counts when at least half of them have it (a null value does not count).
    Raises `UserError` naming the fields found and the accepted formats when nothing matches.
    """
    sample = [row[1] if isinstance(row, tuple) else row for row in records[:SAMPLE_ROWS]]
    counts = Counter(key for row in sample for key, value in row.items() if value is not None)
    present = {key for key, count in counts.items() if count * 2 >= len(sample)}
    for name, fmt in FORMATS.items():
        if set(fmt.fields) <= present:
            return name
    found = [show_name(key) for key, _ in counts.most_common(MAX_FIELDS_SHOWN)]
    more = len(counts) - len(found)
    fields = ", ".join(found) + (f", and {more} more" if more > 0 else "") if found else "none"
    accepted = ", ".join(fmt.describe() for fmt in FORMATS.values())
    raise UserError(
        f"{path}: cannot tell the data format from the fields found ({fields}); "
        f"accepted formats: {accepted}; set data.format to choose one"
    )
