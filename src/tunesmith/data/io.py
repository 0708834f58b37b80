"""Read data files into plain rows: `(line, dict)` pairs plus the problems found along the way.

Supported: JSON Lines (.jsonl, .ndjson), a JSON array of objects (.json), CSV (.csv), TSV (.tsv) and Parquet
(.parquet). A problem confined to one row (bad JSON, bad bytes, a value that is not an object) is returned as a
`DataError` so the caller can skip the row; a problem that makes the whole file unreadable is raised.

Line numbers are 1-based. JSONL, CSV and TSV give the file line where the row starts (the CSV header is line 1);
a JSON array and Parquet give the row's 1-based index.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tunesmith.data.formats.base import show_name, type_name
from tunesmith.errors import DataError, UserError

Row = tuple[int, dict[str, Any]]
ReadResult = tuple[list[Row], list[DataError]]

_JSON_SPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_MAX_CSV_FIELD = 2**31 - 1


def read_records(path: str | Path) -> ReadResult:
    """Read a data file into `(good rows as (line, dict), problems)`, both in file order.

    Raises `UserError` when the file is missing, has an unsupported extension, has no rows, or cannot be read
    at all (a `DataError` in that last case).
    """
    file = Path(path)
    if not file.exists():
        raise UserError(f"{file}: file not found")
    if not file.is_file():
        raise UserError(f"{file}: not a file")
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        supported = ", ".join(sorted(READERS))
        hint = '; for plain text, write JSONL rows like {"text": "..."}' if file.suffix.lower() == ".txt" else ""
        raise UserError(
            f"{file}: unsupported file type {file.suffix or '(no extension)'!r}; supported: {supported}{hint}"
        )
    rows, problems = reader(file)
    if not rows and not problems:
        raise UserError(f"{file}: no rows found (the file is empty or holds only blank lines or a header)")
    return rows, problems


def _read_bytes(file: Path) -> bytes:
    """The file's bytes, with an OS error turned into a `UserError`."""
    try:
        return file.read_bytes()
    except OSError as exc:
        raise UserError(f"{file}: cannot read the file ({exc.strerror or exc})") from None


def _parse_json(text: str | bytes) -> Any:
    """`json.loads`, with every way it can fail (syntax, huge numbers, deep nesting) raised as ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_problem(exc: ValueError) -> str:
    """A one-line description of a JSON parse failure."""
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    return f"invalid JSON: {exc}"


def read_jsonl(file: Path) -> ReadResult:
    """Read JSON Lines: one object per line; lines holding only spaces, tabs or CR are skipped."""
    rows: list[Row] = []
    problems: list[DataError] = []
    data = _read_bytes(file).removeprefix(_BOM)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip(_JSON_SPACE):
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line"
            problems.append(DataError(file, number, problem, "invalid_encoding"))
            continue
        try:
            value = _parse_json(text)
        except ValueError as exc:
            problems.append(DataError(file, number, _json_problem(exc), "invalid_json"))
            continue
        if isinstance(value, dict):
            rows.append((number, value))
        else:
            problems.append(DataError(file, number, _not_an_object(value), "not_an_object"))
    return rows, problems


def _not_an_object(value: object) -> str:
    """Problem text for a JSON value that should have been an object."""
    return f"expected a JSON object {{...}}, got {type_name(value)}"


def read_json(file: Path) -> ReadResult:
    """Read a JSON file holding one array of objects; a row's line is its 1-based index in the array."""
    data = _read_bytes(file).removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(file, line, f"invalid UTF-8 byte 0x{data[exc.start]:02x}", "invalid_encoding") from None
    if not text.strip():
        return [], []
    try:
        value = _parse_json(text)
    except ValueError as exc:
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else None
        raise DataError(file, line, _json_problem(exc), "invalid_json") from None
    if not isinstance(value, list):
        hint = ""
        if isinstance(value, dict):
            keys = ", ".join(show_name(key) for key in list(value)[:8])
            hint = f" (an object with keys: {keys}); put the rows in a top-level array, or use JSONL"
        problem = f"a .json file must hold an array of objects, got {type_name(value)}{hint}"
        raise DataError(file, 1, problem, "not_an_array")
    rows: list[Row] = []
    problems: list[DataError] = []
    for index, item in enumerate(value, start=1):
        if isinstance(item, dict):
            rows.append((index, item))
        else:
            problems.append(DataError(file, index, _not_an_object(item), "not_an_object"))
    return rows, problems


def read_csv(file: Path, delimiter: str = ",") -> ReadResult:
    """Read CSV with a header row; each row's line is the file line where it starts (quoted fields may span lines).

    Bytes that are not UTF-8 make their row an `invalid_encoding` problem; a row whose field count differs from
    the header is a `wrong_field_count` problem. Empty lines are skipped, and so are columns with an empty name.
    """
    text = _read_bytes(file).removeprefix(_BOM).decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    old_limit = csv.field_size_limit(_MAX_CSV_FIELD)
    try:
        return _csv_rows(file, reader)
    except csv.Error as exc:
        raise DataError(file, reader.line_num or 1, f"cannot parse the file: {exc}", "invalid_csv") from None
    finally:
        csv.field_size_limit(old_limit)


def _csv_rows(file: Path, reader: Any) -> ReadResult:
    """Turn csv.reader rows into `(line, dict)` rows keyed by the header."""
    rows: list[Row] = []
    problems: list[DataError] = []
    header: list[str] | None = None
    start = 1
    for fields in reader:
        line, start = start, reader.line_num + 1
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if _has_bad_bytes(fields):
            if header is None:
                raise DataError(file, line, "the header is not valid UTF-8", "invalid_encoding")
            problems.append(DataError(file, line, "the row is not valid UTF-8", "invalid_encoding"))
        elif header is None:
            header = _check_header(file, line, fields)
        elif len(fields) != len(header):
            problem = f"the row has {len(fields)} fields but the header has {len(header)}"
            problems.append(DataError(file, line, problem, "wrong_field_count"))
        else:
            rows.append((line, {name: value for name, value in zip(header, fields, strict=True) if name}))
    return rows, problems


def _has_bad_bytes(fields: list[str]) -> bool:
    """True when undecodable bytes (kept as surrogate escapes) are in any field."""
    return any(any("\udc80" <= char <= "\udcff" for char in value) for value in fields if not value.isascii())


def _check_header(file: Path, line: int, fields: list[str]) -> list[str]:
    """Strip the column names and reject duplicates among the named columns."""
    names = [name.strip() for name in fields]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataError(file, line, f"duplicate column name {name!r} in the header", "invalid_header")
        seen.add(name)
    return names


def read_tsv(file: Path) -> ReadResult:
    """Read tab-separated values; quoting works as in CSV (`"` quotes a field)."""
    return read_csv(file, delimiter="\t")


def read_parquet(file: Path) -> ReadResult:
    """Read a Parquet file batch by batch; a row's line is its 1-based row index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[Row] = []
    try:
        for batch in pq.ParquetFile(file).iter_batches():
            rows.extend(enumerate(batch.to_pylist(), start=len(rows) + 1))
    except (pa.ArrowException, OSError) as exc:
        problem = f"cannot read the Parquet file: {' '.join(str(exc).split())}"
        raise DataError(file, None, problem, "invalid_parquet") from None
    return rows, []


READERS: dict[str, Callable[[Path], ReadResult]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_json,
    ".csv": read_csv,
    ".tsv": read_tsv,
    ".parquet": read_parquet,
}


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSON Lines via a temporary file and a rename (no half-written file); returns the count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, target)
    return count
