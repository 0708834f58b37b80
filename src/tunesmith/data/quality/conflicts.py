"""Conflicting labels: the same input (normalised) with different outputs, in one split or across two.

Only examples with an output take part (not raw text), and an empty input is not compared.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.data.quality.report import Finding, agree, plural
from tunesmith.data.quality.rows import SplitData
from tunesmith.data.quality.text import Views

SHOWN_CHARS = 80


def _by_input(views: Sequence[Views]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, view in enumerate(views):
        if view.output is not None and view.input:
            groups.setdefault(view.input, []).append(index)
    return groups


def conflict_groups(views: Sequence[Views]) -> list[list[int]]:
    """Groups of indices that share an input but not a single output."""
    return [rows for rows in _by_input(views).values() if len({views[i].output for i in rows}) > 1]


def cross_conflicts(source: Sequence[Views], target: Sequence[Views]) -> dict[int, int]:
    """Source index -> first target index with the same input and a different output."""
    target_groups = _by_input(target)
    found = {}
    for index, view in enumerate(source):
        for other in target_groups.get(view.input, []) if view.output is not None else []:
            if target[other].output != view.output:
                found[index] = other
                break
    return found


def _shown(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def conflict_findings(split: SplitData, groups: list[list[int]]) -> list[Finding]:
    """The within-split conflict finding: one listed entry per conflicting input."""
    if not groups:
        return []
    examples = split.examples
    rows = [
        {
            "input": _shown(" ".join(t["content"] for t in examples[g[0]].prompt_messages if t["role"] != "system")),
            "lines": [examples[i].line for i in g],
            "outputs": sorted({_shown(examples[i].target) for i in g}),
        }
        for g in groups
    ]
    involved = sum(len(g) for g in groups)
    what = agree(len(groups), "appears|appear with different outputs")
    message = f"{plural(len(groups), 'input')} {what} ({plural(involved, 'row')})"
    return [Finding("conflicts", "conflicting_labels", split.name, involved, message, rows)]


def cross_conflict_findings(source: SplitData, target: SplitData, pairs: dict[int, int]) -> list[Finding]:
    """The cross-split conflict finding: source rows whose input has another output in `target`."""
    if not pairs:
        return []
    rows = [
        {
            "line": source.examples[i].line,
            f"{target.name}_line": target.examples[j].line,
            "output": _shown(source.examples[i].target),
            f"{target.name}_output": _shown(target.examples[j].target),
        }
        for i, j in sorted(pairs.items())
    ]
    what = agree(len(pairs), f"has|have the input of a {target.name} row but another output")
    message = f"{plural(len(pairs), f'{source.name} row')} {what}"
    return [Finding("conflicts", "conflicting_labels", f"{target.name}→{source.name}", len(pairs), message, rows)]
