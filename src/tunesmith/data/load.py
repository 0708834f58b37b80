"""Load a data file as training examples: read rows, pick the format, convert, and account for every bad row."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.detect import detect_format
from tunesmith.data.example import Example
from tunesmith.data.formats import FORMATS, RowError
from tunesmith.data.io import read_records
from tunesmith.errors import DataError, UserError, did_you_mean


@dataclass
class LoadedData:
    """The examples from one file and every row that was dropped, with its line and reason."""

    path: str
    format: str
    examples: list[Example]
    rejected: list[DataError] = field(default_factory=list)


def load_examples(
    path: str | Path,
    format: str = "auto",
    skip_invalid: bool = False,
    system_prompt: str | None = None,
    max_rows: int | None = None,
) -> LoadedData:
    """Read `path` and turn its rows into `Example`s.

    Args:
        path: a .jsonl/.ndjson, .json, .csv, .tsv or .parquet file.
        format: a name in `FORMATS`, or "auto" to tell it from the field names.
        skip_invalid: collect bad rows in `rejected` instead of raising the first one as a `DataError`.
        system_prompt: added as a first system turn to chat-like examples that have no system turn.
        max_rows: keep only the first N valid examples (rows are still all checked and counted).

    With `skip_invalid`, every non-blank row ends up in exactly one of `examples` and `rejected` (before the
    `max_rows` cut). A file where no row is valid raises `UserError` either way.
    """
    _check_format_name(format)
    if max_rows is not None and max_rows < 1:
        raise UserError(f"max_rows must be at least 1, got {max_rows}")
    rows, problems = read_records(path)
    if not rows:
        _raise_all_invalid(path, problems, skip_invalid)
    name = detect_format(rows, path) if format == "auto" else format
    fmt = FORMATS[name]
    examples: list[Example] = []
    row_problems: list[DataError] = []
    first_read_problem = problems[0] if problems else None
    for line, record in rows:
        if not skip_invalid and first_read_problem is not None and line > (first_read_problem.line or 0):
            raise first_read_problem
        try:
            examples.append(fmt.to_example(record, line, system_prompt))
        except RowError as exc:
            error = DataError(path, line, f"{exc.problem} (format {name})", exc.code)
            if not skip_invalid:
                raise error from None
            row_problems.append(error)
    if not skip_invalid and first_read_problem is not None:
        raise first_read_problem
    rejected = sorted(problems + row_problems, key=lambda error: error.line or 0)
    if not examples:
        _raise_all_invalid(path, rejected, skip_invalid)
    if max_rows is not None:
        examples = examples[:max_rows]
    return LoadedData(path=str(path), format=name, examples=examples, rejected=rejected)


def _check_format_name(format: str) -> None:
    """Reject a format name that is neither "auto" nor registered."""
    if format != "auto" and format not in FORMATS:
        names = ", ".join(["auto", *FORMATS])
        raise UserError(f"unknown data format {format!r}; choose one of: {names}.{did_you_mean(format, FORMATS)}")


def _raise_all_invalid(path: str | Path, problems: list[DataError], skip_invalid: bool) -> None:
    """Raise for a file with no valid row: its first problem, or (when skipping) a summary naming it."""
    if not skip_invalid:
        raise problems[0]
    first = problems[0]
    raise UserError(
        f"{path}: all {len(problems)} rows are invalid; the first: line {first.line}: {first.problem} [{first.code}]"
    )


def summarize_rejected(rejected: list[DataError], limit: int = 10) -> str:
    """A short report of dropped rows: the count per code, then the first `limit` as `file:line: problem [code]`."""
    if not rejected:
        return "no rows rejected"
    counts = Counter(error.code for error in rejected)
    per_code = ", ".join(f"{code} {count}" for code, count in counts.most_common())
    noun = "row" if len(rejected) == 1 else "rows"
    lines = [f"{len(rejected)} {noun} rejected ({per_code}):"]
    lines += [f"  {error}" for error in rejected[:limit]]
    if len(rejected) > limit:
        lines.append(f"  ... and {len(rejected) - limit} more")
    return "\n".join(lines)
