"""`tunesmith data augment`: read a training file, add augmented variants of its rows, write JSONL.

Only the input fields change (`fields.input_paths`); labels and outputs are copied as they are. Each variant
records its source line and method in `augmented_from` and `augment_method`; the format readers ignore both.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.augment.augmenters import AUGMENTERS
from tunesmith.augment.base import AugmentConfig, Augmenter
from tunesmith.augment.fields import FieldPath, get_text, input_paths, with_texts
from tunesmith.augment.leak import assert_no_val_leak
from tunesmith.data.formats import FORMATS
from tunesmith.data.io import read_records, write_jsonl
from tunesmith.data.load import load_examples
from tunesmith.errors import UserError, did_you_mean

SOURCE_FIELD, METHOD_FIELD = "augmented_from", "augment_method"
Row = tuple[int, dict[str, Any]]


@dataclass
class AugmentReport:
    """What one augmentation run wrote; per method: variants written, rows it could not change, duplicates."""

    source: str
    out: str
    format: str
    rows_in: int
    originals_written: int
    written: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows_out(self) -> int:
        return self.originals_written + sum(self.written.values())


def resolve_methods(names: Sequence[str], table: dict[str, Augmenter] = AUGMENTERS) -> list[Augmenter]:
    """The registered methods named, in order; an unknown or repeated name is a `UserError`."""
    if not names:
        raise UserError(f"no augmentation method given; choose from: {', '.join(table)}")
    unknown = [name for name in names if name not in table]
    if unknown:
        raise UserError(
            f"unknown augmentation method {unknown[0]!r}; choose from: {', '.join(table)}."
            f"{did_you_mean(unknown[0], table)}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"augmentation method listed twice in {','.join(names)}")
    return [table[name] for name in names]


def _key(texts: Sequence[str]) -> tuple[str, ...]:
    """Input texts compared without case or spacing differences."""
    return tuple(re.sub(r"\s+", " ", text).strip().lower() for text in texts)


def _one_variant_each(
    rows: Sequence[Row],
    paths: Sequence[list[FieldPath]],
    method: Augmenter,
    apply: Any,
    variant: int,
    cfg: AugmentConfig,
) -> list[list[str] | None]:
    """Run one method over every row's input texts at once (one call, so a model can batch); per row the new
    texts, or None when the method changed nothing."""
    texts: list[str] = []
    rngs: list[random.Random] = []
    for (line, record), row_paths in zip(rows, paths, strict=True):
        rng = random.Random(f"{cfg.seed}/{method.name}/{line}/{variant}")
        texts += [get_text(record, path) for path in row_paths]
        rngs += [rng] * len(row_paths)
    outputs = apply(texts, rngs, variant)
    result: list[list[str] | None] = []
    start = 0
    for row_paths in paths:
        old, new = texts[start : start + len(row_paths)], outputs[start : start + len(row_paths)]
        start += len(row_paths)
        merged = [n if n is not None else o for n, o in zip(new, old, strict=True)]
        result.append(merged if merged != old else None)
    return result


def augment_rows(
    rows: Sequence[Row], format: str, methods: Sequence[Augmenter], cfg: AugmentConfig, report: AugmentReport
) -> list[list[dict[str, Any]]]:
    """Per source row, its augmented variants (provenance fields added), counting outcomes in `report`."""
    paths = [input_paths(record, format) for _, record in rows]
    # Per row, the inputs already written (the original first): a variant equal to one of them is dropped.
    seen = [{_key([get_text(rec, p) for p in row_paths])} for (_, rec), row_paths in zip(rows, paths, strict=True)]
    variants: list[list[dict[str, Any]]] = [[] for _ in rows]
    for method in methods:
        apply = method.build(cfg)
        for name in ("written", "unchanged", "duplicates"):
            getattr(report, name)[method.name] = 0
        for k in range(cfg.per_row):
            for r, new in enumerate(_one_variant_each(rows, paths, method, apply, k, cfg)):
                if new is None:
                    report.unchanged[method.name] += 1
                    continue
                key = _key(new)
                if key in seen[r]:
                    report.duplicates[method.name] += 1
                    continue
                seen[r].add(key)
                line, record = rows[r]
                variants[r].append({**with_texts(record, paths[r], new), SOURCE_FIELD: line, METHOD_FIELD: method.name})
                report.written[method.name] += 1
    return variants


def augment_file(
    path: str | Path,
    out: str | Path,
    method_names: Sequence[str],
    cfg: AugmentConfig | None = None,
    val: str | Path | None = None,
    originals: bool = True,
) -> AugmentReport:
    """Augment the training file `path` into `out` (JSONL); with `val`, refuse variants equal to a val input."""
    started = time.perf_counter()
    cfg = cfg or AugmentConfig()
    methods = resolve_methods(method_names)
    if cfg.per_row < 1:
        raise UserError(f"--per-row must be at least 1, got {cfg.per_row}")
    if Path(out).suffix.lower() not in {".jsonl", ".ndjson"}:
        raise UserError(f"{out}: augmented rows are written as JSON Lines; give an --out file ending in .jsonl")
    if Path(out).resolve() == Path(path).resolve():
        raise UserError(f"{out}: --out must not be the input file")
    loaded = load_examples(path)  # checks every row first: a bad row stops here, with its line
    good = {example.line for example in loaded.examples}
    rows = [(line, record) for line, record in read_records(path)[0] if line in good]
    report = AugmentReport(str(path), str(out), loaded.format, len(rows), len(rows) if originals else 0)
    variants = augment_rows(rows, loaded.format, methods, cfg, report)
    if val is not None:
        fmt = FORMATS[loaded.format]
        augmented = [fmt.to_example(v, v[SOURCE_FIELD]) for row_variants in variants for v in row_variants]
        assert_no_val_leak(augmented, load_examples(val).examples, str(val))
    # Each source row is followed by its variants, so a variant sits next to the row it came from.
    grouped = (([record] if originals else []) + extra for (_, record), extra in zip(rows, variants, strict=True))
    write_jsonl(out, (row for group in grouped for row in group))
    report.seconds = time.perf_counter() - started
    return report
