"""Read one split for checking: every row goes through `read_records` and its format's `to_example`.

Unlike `load_examples`, nothing stops at the first bad row and the original records are kept (so `data clean`
and `data split` can write them back unchanged).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.detect import detect_format
from tunesmith.data.example import Example
from tunesmith.data.formats import FORMATS, RowError
from tunesmith.data.io import read_records
from tunesmith.data.quality.report import Finding, plural
from tunesmith.errors import DataError, UserError, did_you_mean


@dataclass
class SplitData:
    """One split after the schema check: its valid examples (with their records) and its invalid rows."""

    name: str
    path: str
    format: str
    examples: list[Example]
    problems: list[DataError] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # aligned with `examples`; may be empty

    @property
    def rows(self) -> int:
        """Rows read: valid and invalid."""
        return len(self.examples) + len(self.problems)

    def describe(self) -> dict[str, Any]:
        """The file entry of the report."""
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "valid": len(self.examples),
            "invalid": len(self.problems),
        }


def read_split(name: str, path: str | Path, format: str = "auto", system_prompt: str | None = None) -> SplitData:
    """Read `path` and convert each row with its format, collecting every invalid row with its code.

    Raises `UserError` for a missing or unreadable file, an unknown format name, or fields that match no format.
    """
    if format != "auto" and format not in FORMATS:
        raise UserError(
            f"unknown data format {format!r}; choose one of: auto, {', '.join(FORMATS)}.{did_you_mean(format, FORMATS)}"
        )
    rows, problems = read_records(path)
    if not rows:
        return SplitData(name, str(path), format, [], sorted(problems, key=_line))
    fmt_name = detect_format(rows, path) if format == "auto" else format
    fmt = FORMATS[fmt_name]
    examples: list[Example] = []
    records: list[dict[str, Any]] = []
    for line, record in rows:
        try:
            examples.append(fmt.to_example(record, line, system_prompt))
        except RowError as exc:
            problems.append(DataError(path, line, exc.problem, exc.code))
            continue
        records.append(record)
    return SplitData(name, str(path), fmt_name, examples, sorted(problems, key=_line), records)


def _line(error: DataError) -> int:
    return error.line or 0


def schema_findings(split: SplitData) -> list[Finding]:
    """One schema finding per error code, listing each bad row's line and problem."""
    by_code: dict[str, list[DataError]] = {}
    for problem in split.problems:
        by_code.setdefault(problem.code, []).append(problem)
    findings = []
    for code, count in Counter(p.code for p in split.problems).most_common():
        rows = [{"line": p.line, "problem": p.problem} for p in by_code[code]]
        message = f"{plural(count, 'row')} rejected: {by_code[code][0].problem}" + (" (first)" if count > 1 else "")
        findings.append(Finding("schema", code, split.name, count, message, rows))
    return findings
