"""`data clean`: write the rows worth training on, and every other row with the reason it was dropped.

A row is dropped, for the first reason that applies: it is invalid (schema code), an exact duplicate of an
earlier row, a member of a near-duplicate cluster other than its first row, a copy of a row of the given
validation file (any leakage code), or left with no trainable token (only with a tokenizer). Every input row
lands in exactly one of the two output files; kept rows are the original records, unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import Config
from tunesmith.data.quality.duplicates import Verdict, within_split
from tunesmith.data.quality.leakage import leaks
from tunesmith.data.quality.length import token_lengths
from tunesmith.data.quality.near import Sketcher
from tunesmith.data.quality.rows import SplitData, read_split
from tunesmith.data.quality.text import all_views
from tunesmith.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

LINE_FILES = {".jsonl", ".ndjson"}  # formats where a row's line is one file line (the raw text goes to rejects)


@dataclass
class CleanResult:
    """Counts of what `clean_file` wrote: rows read, kept, and dropped per code."""

    rows: int
    kept: int
    dropped: Counter[str] = field(default_factory=Counter)


def clean_file(
    path: str | Path,
    out: str | Path,
    rejects: str | Path,
    cfg: Config,
    val: str | Path | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> CleanResult:
    """Write the kept rows of `path` to `out` and the dropped ones, with their reasons, to `rejects` (JSONL)."""
    _check_paths(path, out, rejects, val)
    data = cfg.data
    split = read_split("train", path, data.format, data.system_prompt)
    reasons = _reasons(split, cfg, val, tokenizer)
    raw = _raw_lines(Path(path))
    dropped = [
        {"line": p.line, "code": p.code, "message": p.problem, "record": raw.get(p.line or 0)} for p in split.problems
    ]
    kept = []
    for index, (example, record) in enumerate(zip(split.examples, split.records, strict=True)):
        if index in reasons:
            code, message = reasons[index]
            dropped.append({"line": example.line, "code": code, "message": message, "record": record})
        else:
            kept.append(record)
    dropped.sort(key=lambda row: row["line"] or 0)
    _write_jsonl(Path(out), kept)
    _write_jsonl(Path(rejects), dropped)
    return CleanResult(split.rows, len(kept), Counter(row["code"] for row in dropped))


def _reasons(
    split: SplitData, cfg: Config, val: str | Path | None, tokenizer: PreTrainedTokenizerBase | None
) -> dict[int, tuple[str, str]]:
    """Index of each valid row to drop -> (code, message); the first reason found wins."""
    settings = cfg.data.check
    sketcher = Sketcher(settings.near_duplicate_threshold, settings.num_perm)
    views = all_views(split.examples)
    lines = [example.line for example in split.examples]
    reasons = {i: (v.code, _copy_text(v, lines)) for i, v in sorted(within_split(views, sketcher).items())}
    if val is not None:
        val_split = read_split("val", val, cfg.data.format, cfg.data.system_prompt)
        val_lines = [example.line for example in val_split.examples]
        for index, verdict in leaks(views, all_views(val_split.examples), sketcher).items():
            message = f"copies {val} line {val_lines[verdict.of]} (similarity {verdict.similarity})"
            reasons.setdefault(index, (verdict.code, message))
    if tokenizer is not None:
        _, info = token_lengths(tokenizer, split.examples, cfg.data.max_length, split.path)
        no_tokens = set(info["dropped_lines"])
        message = f"no trainable token left after truncation to data.max_length={cfg.data.max_length}"
        for index, line in enumerate(lines):
            if line in no_tokens:
                reasons.setdefault(index, ("no_trainable_tokens", message))
    return reasons


def _copy_text(verdict: Verdict, lines: list[int]) -> str:
    if verdict.code == "exact_duplicate":
        return f"exact duplicate of line {lines[verdict.of]} (after folding case, whitespace and punctuation)"
    return f"near duplicate of line {lines[verdict.of]}, the first of its cluster (similarity {verdict.similarity})"


def _check_paths(path: str | Path, out: str | Path, rejects: str | Path, val: str | Path | None) -> None:
    """Refuse to overwrite an input file, or to write both outputs to one file."""
    inputs = {Path(p).resolve() for p in (path, val) if p is not None}
    if Path(out).resolve() == Path(rejects).resolve():
        raise UserError(f"--out and --rejects are the same file ({out}); give two paths")
    for target in (out, rejects):
        if Path(target).resolve() in inputs:
            raise UserError(f"{target} is an input file; write the output elsewhere")


def _raw_lines(path: Path) -> dict[int, str]:
    """Line number -> the line's text, for line-based files (so rejects keep even unreadable rows)."""
    if path.suffix.lower() not in LINE_FILES:
        return {}
    data = path.read_bytes()
    return {n: raw.decode("utf-8", errors="replace").rstrip("\r") for n, raw in enumerate(data.split(b"\n"), start=1)}


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
