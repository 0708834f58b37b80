"""`data check`: every check over the given splits, gathered into one report.

Order: schema (per row), duplicates and conflicts inside each split, leakage and conflicts between splits
(val and test against train, test against val), labels, then lengths (with the tokenizer when given).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import Config, DataCheckConfig
from tunesmith.data.quality.conflicts import (
    conflict_findings,
    conflict_groups,
    cross_conflict_findings,
    cross_conflicts,
)
from tunesmith.data.quality.duplicates import duplicate_findings, within_split
from tunesmith.data.quality.labels import label_findings, labels_of
from tunesmith.data.quality.leakage import leak_findings, leaks
from tunesmith.data.quality.length import length_findings, summary, token_lengths, word_lengths
from tunesmith.data.quality.near import Sketcher
from tunesmith.data.quality.report import CheckReport, Finding, check_kinds, set_severity
from tunesmith.data.quality.rows import SplitData, read_split, schema_findings
from tunesmith.data.quality.text import all_views

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CROSS_PAIRS = (("val", "train"), ("test", "train"), ("test", "val"))  # (source, target): source copies target?


def check_files(
    paths: dict[str, str | None], cfg: Config, tokenizer: PreTrainedTokenizerBase | None = None
) -> CheckReport:
    """Check the files named by split ("train", "val", "test"; None entries are skipped) per `cfg.data`."""
    data = cfg.data
    splits = [
        read_split(name, path, data.format, data.system_prompt) for name, path in paths.items() if path is not None
    ]
    return check_splits(splits, data.check, tokenizer, data.max_length)


def check_splits(
    splits: Sequence[SplitData],
    settings: DataCheckConfig,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int = 512,
    holdout: bool = False,
) -> CheckReport:
    """Run every check; `holdout` says val was carved out of train by tunesmith (see `_holdout_kinds`)."""
    started = time.perf_counter()
    check_kinds(settings.errors)
    by_name = {split.name: split for split in splits}
    views = {split.name: all_views(split.examples) for split in splits}
    sketcher = Sketcher(settings.near_duplicate_threshold, settings.num_perm)
    findings: list[Finding] = []
    for split in splits:
        findings += schema_findings(split)
        findings += duplicate_findings(split, within_split(views[split.name], sketcher))
        findings += conflict_findings(split, conflict_groups(views[split.name]))
    for source, target in CROSS_PAIRS:
        if source in by_name and target in by_name:
            found = leaks(views[source], views[target], sketcher)
            findings += leak_findings(by_name[source], by_name[target], found)
            pairs = cross_conflicts(views[source], views[target])
            findings += cross_conflict_findings(by_name[source], by_name[target], pairs)
    labels = label_counts(splits)
    findings += label_findings(labels, settings)
    lengths, length_found = _lengths(splits, tokenizer, max_length)
    findings += length_found
    if holdout:
        _holdout_kinds(findings)
    set_severity(findings, settings.errors)
    return CheckReport(
        files={split.name: split.describe() for split in splits},
        findings=findings,
        labels={name: dict(counts.most_common()) for name, counts in labels.items()},
        lengths=lengths,
        settings={**settings.model_dump(), "max_length": max_length, "tokenizer": _name(tokenizer), "holdout": holdout},
        seconds=time.perf_counter() - started,
    )


def label_counts(splits: Sequence[SplitData]) -> dict[str, Counter[str]]:
    """Label counts per split when train (or the first split) is a labelling task; else {}."""
    if not splits:
        return {}
    first = splits[0]
    if labels_of(first.examples, first.format) is None:
        return {}
    counts = {}
    for split in splits:
        labels = [e.target.strip() for e in split.examples if e.target is not None]
        if labels:
            counts[split.name] = Counter(labels)
    return counts


def _lengths(
    splits: Sequence[SplitData], tokenizer: PreTrainedTokenizerBase | None, max_length: int
) -> tuple[dict[str, dict[str, Any]], list[Finding]]:
    """Length summaries per split, and the length findings (only with a tokenizer)."""
    lengths, findings = {}, []
    if tokenizer is None:
        words = {split.name: word_lengths(split.examples) for split in splits}
        top = max((max(counts, default=0) for counts in words.values()), default=0)
        return {name: summary(counts, "words", None, top) for name, counts in words.items()}, []
    for split in splits:
        counts, info = token_lengths(tokenizer, split.examples, max_length, split.path)
        lengths[split.name] = {
            **summary(counts, "tokens", max_length),
            "over_max_length": len(info["truncated_lines"]),
            "no_trainable_tokens": len(info["dropped_lines"]),
            "trainable_tokens": info["trainable_tokens"],
        }
        findings += length_findings(split.name, info, max_length)
    return lengths, findings


def _holdout_kinds(findings: list[Finding]) -> None:
    """In an automatic hold-out, report train→val copies under the duplicate kinds, not as leakage.

    The hold-out keeps duplicate groups whole, so a copy across it means one group of duplicates spans most of
    the data and could not be kept on one side: the cause is duplicates in the training file, and it is as
    severe as those are configured to be.
    """
    for finding in findings:
        if finding.kind == "leakage" and finding.split == "train→val":
            finding.kind = "duplicates" if "exact" in finding.code else "near_duplicates"
            finding.message += " (automatic hold-out: one duplicate group spans most of the data)"


def _name(tokenizer: PreTrainedTokenizerBase | None) -> str | None:
    return getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None
