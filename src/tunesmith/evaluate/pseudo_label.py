"""Pseudo-labelling: a tuned classifier labels unlabeled rows, and only its confident answers are kept.

Unlabeled rows have the training format without the label/answer ({text} for text_label rows). Each row goes
through the format's own converter with a placeholder answer, so its prompt (system prompt included) is built
exactly as in training; the candidate labels are then scored by likelihood (`evaluate.label_scoring`).
Kept rows are written in the training format, tagged `"pseudo_label": true`, `"confidence"` and `"source_line"`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.formats import FORMATS, RowError
from tunesmith.data.io import read_records
from tunesmith.data.load import load_examples
from tunesmith.errors import DataError, UserError
from tunesmith.evaluate.label_scoring import label_probabilities
from tunesmith.train.precision import use_bf16

MAX_LABELS = 50  # more distinct targets than this is a generation task, not classification
_PLACEHOLDER = "?"  # stands in for the missing answer while a row's prompt is built


@dataclass(frozen=True)
class LabelSet:
    """Candidate labels as the model writes them, and the value to store for each (0 stays a number)."""

    labels: list[str]
    values: dict[str, Any]


@dataclass(frozen=True)
class UnlabeledRow:
    line: int
    record: dict[str, Any]
    prompt: tuple[dict[str, str], ...]


@dataclass
class PseudoLabelReport:
    """How many rows were kept and dropped, per predicted label."""

    rows: int
    threshold: float
    kept: dict[str, int] = field(default_factory=dict)
    below_threshold: dict[str, int] = field(default_factory=dict)
    copies: int = 0
    over_cap: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "threshold": self.threshold,
            "kept": sum(self.kept.values()),
            "kept_per_label": self.kept,
            "below_threshold_per_label": self.below_threshold,
            "copies_of_protected_rows": self.copies,
            "over_cap": self.over_cap,
            "seconds": round(self.seconds, 1),
        }


def run_label_set(cfg: Config, labels: Sequence[str] | None = None) -> tuple[LabelSet, str]:
    """The labels a run was trained on (distinct targets of its `data.train`, or `labels`) and its data format."""
    path = cfg.data.train
    if not path or not Path(path).is_file():
        if labels:  # the candidates are given; the format defaults to the classification one
            format = cfg.data.format if cfg.data.format != "auto" else "text_label"
            return LabelSet(list(labels), {label: label for label in labels}), format
        raise UserError(f"cannot read the run's training data {path!r} to find its labels; pass --labels a,b")
    loaded = load_examples(path, cfg.data.format, skip_invalid=True, system_prompt=cfg.data.system_prompt)
    values = {}
    if loaded.format == "text_label":
        values = {str(record["label"]): record["label"] for _, record in read_records(path)[0] if "label" in record}
    found = sorted({e.target for e in loaded.examples if e.target is not None})
    chosen = list(labels) if labels else found
    if not labels and len(found) > MAX_LABELS:
        raise UserError(
            f"{path}: {len(found)} distinct answers; pseudo-labelling needs a classifier (at most {MAX_LABELS} "
            "labels); pass --labels a,b to choose the candidates"
        )
    return LabelSet(chosen, {label: values.get(label, label) for label in chosen}), loaded.format


def _with_answer(record: dict[str, Any], format: str, answer: Any) -> dict[str, Any]:
    """`record` in `format` with its label/answer set to `answer` (an answer already there is replaced)."""
    if format == "text_label":
        return {**record, "label": answer}
    if format == "alpaca":
        return {**record, "output": str(answer)}
    turn = {"role": "assistant", "content": str(answer)}
    if format == "prompt_completion":
        return {**record, "completion": [turn] if isinstance(record.get("prompt"), list) else str(answer)}
    if format == "chat":
        turns = list(record.get("messages") or [])
        if turns and isinstance(turns[-1], dict) and turns[-1].get("role") == "assistant":
            turns = turns[:-1]
        return {**record, "messages": [*turns, turn]}
    raise UserError(f"pseudo-labelling needs a format with an answer to predict; {format!r} has none")


def read_unlabeled(path: str | Path, format: str, system_prompt: str | None) -> list[UnlabeledRow]:
    """Rows of an unlabeled file with their prompts, built by the format's converter; a bad row raises."""
    records, problems = read_records(path)
    if problems:
        raise problems[0]
    rows = []
    for line, record in records:
        try:
            example = FORMATS[format].to_example(_with_answer(record, format, _PLACEHOLDER), line, system_prompt)
        except RowError as exc:
            raise DataError(path, line, f"{exc.problem} (unlabeled rows in format {format})", exc.code) from None
        rows.append(UnlabeledRow(line, record, example.prompt_messages))
    return rows


@dataclass(frozen=True)
class Protected:
    """Rows that pseudo-labels must not copy (validation and evaluation rows): a kept row whose input or whole
    example is an exact or near copy of one of these is dropped, as the training data check would flag it."""

    examples: Sequence[Example]
    near_threshold: float = 0.8
    num_perm: int = 128


def _copies(rows: Sequence[UnlabeledRow], labels: Sequence[str], protected: Protected) -> set[int]:
    """Indices of the rows (with their predicted labels) that copy a protected row, by the data check's rules."""
    from tunesmith.data.quality.leakage import leaks
    from tunesmith.data.quality.near import Sketcher
    from tunesmith.data.quality.text import all_views

    candidates = [
        Example(line=r.line, messages=(*r.prompt, {"role": "assistant", "content": label}))
        for r, label in zip(rows, labels, strict=True)
    ]
    sketcher = Sketcher(protected.near_threshold, protected.num_perm)
    return set(leaks(all_views(candidates), all_views(protected.examples), sketcher))


def pseudo_label(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[UnlabeledRow],
    label_set: LabelSet,
    format: str,
    threshold: float,
    max_rows: int | None = None,
    batch_size: int = 16,
    bf16: bool = False,
    protected: Protected | None = None,
) -> tuple[list[dict[str, Any]], PseudoLabelReport]:
    """Label `rows`, keep those whose top probability is >= `threshold`, drop copies of `protected` rows, keep
    the `max_rows` most confident at most, and return them as training rows in file order with a report."""
    started = time.perf_counter()
    labels = label_set.labels
    probs = label_probabilities(model, tokenizer, [r.prompt for r in rows], labels, batch_size, bf16=bf16)
    confidence, choice = probs.max(-1)
    predicted = [labels[int(c)] for c in choice]
    report = PseudoLabelReport(len(rows), threshold, dict.fromkeys(labels, 0), dict.fromkeys(labels, 0))
    passed = []
    for i in range(len(rows)):
        if float(confidence[i]) >= threshold:
            passed.append(i)
        else:
            report.below_threshold[predicted[i]] += 1
    if protected is not None and passed and protected.examples:
        copies = _copies([rows[i] for i in passed], [predicted[i] for i in passed], protected)
        report.copies = len(copies)
        passed = [i for k, i in enumerate(passed) if k not in copies]
    if max_rows is not None and len(passed) > max_rows:
        ranked = sorted(passed, key=lambda i: -float(confidence[i]))  # stable: ties keep file order
        report.over_cap = len(passed) - max_rows
        passed = sorted(ranked[:max_rows])
    out = []
    for i in passed:
        report.kept[predicted[i]] += 1
        row = _with_answer(rows[i].record, format, label_set.values[predicted[i]])
        tags = {"pseudo_label": True, "confidence": round(float(confidence[i]), 4), "source_line": rows[i].line}
        out.append({**row, **tags})
    report.seconds = time.perf_counter() - started
    return out, report


def label_counts_line(report: PseudoLabelReport) -> str:
    """One line per label: kept and dropped counts, for the CLI and logs."""
    parts = [f"{label}: kept {report.kept[label]}, dropped {report.below_threshold[label]}" for label in report.kept]
    copies = f"; {report.copies} copies of validation/evaluation rows dropped" if report.copies else ""
    cap = f"; {report.over_cap} over the cap" if report.over_cap else ""
    return "; ".join(parts) + copies + cap


def pseudo_label_file(
    model: str,
    unlabeled: str | Path,
    threshold: float,
    out: str | Path,
    labels: Sequence[str] | None = None,
    max_rows: int | None = None,
    batch_size: int = 16,
) -> PseudoLabelReport:
    """`tunesmith data pseudo-label`: label `unlabeled` with a run (or, given `labels`, a base model as text_label)
    and write the kept rows to `out` as JSONL."""
    from tunesmith.data.io import write_jsonl
    from tunesmith.methods.loading import load_any, merged_for_inference

    if not 0 < threshold <= 1:
        raise UserError(f"--threshold must be in (0, 1], got {threshold}")
    loaded = load_any(model)
    if loaded.config is not None:
        label_set, format = run_label_set(loaded.config, labels)
        system_prompt, bf16 = loaded.config.data.system_prompt, use_bf16(loaded.config.train.precision)
    elif labels:
        label_set, format, system_prompt, bf16 = (
            LabelSet(list(labels), {x: x for x in labels}),
            "text_label",
            None,
            False,
        )
    else:
        raise UserError(f"{model} is not a tunesmith run, so its labels are unknown; pass --labels a,b")
    rows = read_unlabeled(unlabeled, format, system_prompt)
    with merged_for_inference(loaded.model) as scorer:
        kept, report = pseudo_label(
            scorer, loaded.tokenizer, rows, label_set, format, threshold, max_rows, batch_size, bf16
        )
    write_jsonl(out, kept)
    return report
