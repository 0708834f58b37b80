"""Duplicates inside one split, and the duplicate groups that `data split` keeps together.

Exact duplicates compare the normalised whole example (case, whitespace and punctuation folded). Near
duplicates are clusters of confirmed near-copies (`near.merge_near`); the first row of a cluster is kept and
the others are reported, so removing the reported rows leaves one row per cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy.cluster.hierarchy import DisjointSet

from tunesmith.data.quality.near import Sketcher, jaccard, merge_near
from tunesmith.data.quality.report import Finding, agree, plural
from tunesmith.data.quality.rows import SplitData
from tunesmith.data.quality.text import Views


@dataclass(frozen=True)
class Verdict:
    """Why a row is a copy: `code`, the index of the row it copies (`of`), and their similarity."""

    code: str
    of: int
    similarity: float = 1.0


def first_by_key(keys: Sequence[str]) -> tuple[dict[str, int], dict[int, int]]:
    """(first index of each key, index -> first index for every later repeat). Empty keys are ignored."""
    first: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for index, key in enumerate(keys):
        if not key:
            continue
        earlier = first.setdefault(key, index)
        if earlier != index:
            repeats[index] = earlier
    return first, repeats


def within_split(views: Sequence[Views], sketcher: Sketcher) -> dict[int, Verdict]:
    """Rows that copy an earlier row of the same split: exact copies, then near-duplicate cluster members."""
    first, repeats = first_by_key([v.whole for v in views])
    verdicts = {index: Verdict("exact_duplicate", of) for index, of in repeats.items()}
    representatives = [(index, key) for key, index in first.items()]
    groups = DisjointSet(index for index, _ in representatives)
    merge_near(representatives, sketcher, groups)
    for cluster in groups.subsets():
        if len(cluster) > 1:
            keep = min(cluster)
            for index in sorted(cluster - {keep}):
                similarity = jaccard(views[index].whole, views[keep].whole)
                verdicts[index] = Verdict("near_duplicate", keep, round(similarity, 3))
    return verdicts


def duplicate_findings(split: SplitData, verdicts: dict[int, Verdict]) -> list[Finding]:
    """The exact and near duplicate findings of one split."""
    lines = [example.line for example in split.examples]
    findings = []
    for code, kind, what in (
        (
            "exact_duplicate",
            "duplicates",
            "repeats|repeat an earlier row (after folding case, whitespace and punctuation)",
        ),
        ("near_duplicate", "near_duplicates", "is|are in a near-duplicate cluster with an earlier row"),
    ):
        hits = [(index, v) for index, v in sorted(verdicts.items()) if v.code == code]
        if hits:
            rows = [{"line": lines[i], "of_line": lines[v.of], "similarity": v.similarity} for i, v in hits]
            message = f"{plural(len(hits), 'row')} {agree(len(hits), what)}"
            findings.append(Finding(kind, code, split.name, len(hits), message, rows))
    return findings


def duplicate_groups(views: Sequence[Views], sketcher: Sketcher) -> list[list[int]]:
    """Indices linked by an exact or near copy of their input or of the whole example, closed transitively.

    Keeping each group in one split makes every leakage check of `data check` find nothing by construction:
    they test exactly these relations.
    """
    groups = DisjointSet(range(len(views)))
    separate_input = any(v.input != v.whole for v in views)
    for keys in ([v.whole for v in views], [v.input for v in views] if separate_input else None):
        if keys is None:
            continue
        first, repeats = first_by_key(keys)
        for index, of in repeats.items():
            groups.merge(index, of)
        merge_near([(index, key) for key, index in first.items()], sketcher, groups)
    return sorted(sorted(cluster) for cluster in groups.subsets())
