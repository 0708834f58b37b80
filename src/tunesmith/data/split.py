"""Seeded, stratified, group-aware splits: duplicate groups never straddle two splits.

Rows linked by an exact or near copy of their input or whole example form a group (`duplicate_groups`), and
whole groups are dealt to the splits. So the leakage checks of `data check` find nothing between the splits,
by construction. Within that constraint each split gets its share of every label: the largest groups are
placed first and single rows fill in last, which keeps every label within about one row of its target.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config.schema import DataCheckConfig, DataConfig
from tunesmith.data.example import Example
from tunesmith.data.quality.duplicates import duplicate_groups
from tunesmith.data.quality.labels import labels_of
from tunesmith.data.quality.near import Sketcher
from tunesmith.data.quality.rows import read_split
from tunesmith.data.quality.text import all_views
from tunesmith.errors import UserError

SPLITS = ("train", "val", "test")


def assign_groups(
    groups: Sequence[Sequence[int]], labels: Sequence[str], fractions: dict[str, float], seed: int
) -> dict[str, list[int]]:
    """Deal whole groups of row indices to "train" and the held-out splits named in `fractions`.

    A group goes to a held-out split only if no label of the group would go over the split's target for it
    (round(fraction × rows of the label)); among those it picks the split with the most room left, else train.
    Largest groups come first (ties in a shuffle seeded with `seed`), so single rows fill the targets last.
    """
    order = [list(group) for group in groups]
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)
    totals = Counter(labels)
    targets = {split: {label: round(f * n) for label, n in totals.items()} for split, f in fractions.items()}
    placed: dict[str, Counter[str]] = {split: Counter() for split in fractions}
    parts: dict[str, list[list[int]]] = {split: [] for split in ("train", *fractions)}
    for group in order:
        counts = Counter(labels[i] for i in group)
        fits = [s for s in fractions if all(placed[s][k] + n <= targets[s][k] for k, n in counts.items())]
        best = max(fits, key=lambda s: sum(targets[s][k] - placed[s][k] for k in counts), default="train")
        parts[best].append(group)
        if best != "train":
            placed[best].update(counts)
    _fill_empty(parts, fractions)
    return {split: sorted(i for group in groups_ for i in group) for split, groups_ in parts.items()}


def _fill_empty(parts: dict[str, list[list[int]]], fractions: dict[str, float]) -> None:
    """Give an empty held-out split the smallest train group, when train keeps at least one group."""
    for split, fraction in fractions.items():
        if fraction > 0 and not parts[split] and len(parts["train"]) > 1:
            smallest = min(range(len(parts["train"])), key=lambda i: len(parts["train"][i]))
            parts[split].append(parts["train"].pop(smallest))


def group_split(
    examples: Sequence[Example], format: str, fractions: dict[str, float], seed: int, settings: DataCheckConfig
) -> dict[str, list[int]]:
    """Split example indices by duplicate group, stratified by label when the examples have labels."""
    sketcher = Sketcher(settings.near_duplicate_threshold, settings.num_perm)
    groups = duplicate_groups(all_views(examples), sketcher)
    labels = labels_of(examples, format) or [""] * len(examples)
    return assign_groups(groups, labels, fractions, seed)


def holdout(examples: Sequence[Example], cfg: DataConfig, seed: int, format: str) -> tuple[list[int], list[int]]:
    """(train, val) indices for the automatic validation hold-out of `split_examples`.

    When one duplicate group holds (nearly) every row, no clean hold-out exists; rows are then split one by one
    and the pre-training check reports the copies across the split as duplicates.
    """
    parts = group_split(examples, format, {"val": cfg.val_fraction}, seed, cfg.check)
    if not parts["val"]:
        labels = labels_of(examples, format) or [""] * len(examples)
        parts = assign_groups([[i] for i in range(len(examples))], labels, {"val": cfg.val_fraction}, seed)
    return parts["train"], parts["val"]


@dataclass
class SplitResult:
    """What `split_file` wrote: a file and row indices per split, labels per split, and the rows left out."""

    files: dict[str, Path]
    rows: dict[str, int]
    labels: dict[str, Counter[str]]
    invalid: int
    format: str


def split_file(
    path: str | Path, out_dir: str | Path, val: float, test: float, seed: int, data: DataConfig
) -> SplitResult:
    """Split a data file into train/val/test JSONL files in `out_dir` (original records, invalid rows left out)."""
    if val < 0 or test < 0 or val + test >= 1:
        raise UserError(f"--val {val} and --test {test} must be >= 0 and add up to less than 1")
    split = read_split("train", path, data.format, data.system_prompt)
    if not split.examples:
        raise UserError(f"{path}: no valid row to split; see `tunesmith data check {path}`")
    fractions = {name: f for name, f in (("val", val), ("test", test)) if f > 0}
    parts = group_split(split.examples, split.format, fractions, seed, data.check)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = labels_of(split.examples, split.format)
    result = SplitResult({}, {}, {}, len(split.problems), split.format)
    for name in SPLITS:
        if name not in parts:
            continue
        target = out / f"{name}.jsonl"
        if target.resolve() == Path(path).resolve():
            raise UserError(f"{target} would overwrite the input file; choose another --out-dir")
        rows = [split.records[i] for i in parts[name]]
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        result.files[name], result.rows[name] = target, len(rows)
        if labels is not None:
            result.labels[name] = Counter(labels[i] for i in parts[name])
    return result
