"""Leakage between splits: rows of one split (val, test) that copy a row of another (train).

Each source row gets at most one verdict, the strongest that applies, in this order:
leak_exact_example (whole example, normalised), leak_exact_input (same input, any output),
leak_near_example, leak_near_input. Inputs are only compared separately when they differ from the whole
example (not for raw text).
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.data.quality.duplicates import Verdict, first_by_key
from tunesmith.data.quality.near import Sketcher, first_matches
from tunesmith.data.quality.report import Finding, agree, plural
from tunesmith.data.quality.rows import SplitData
from tunesmith.data.quality.text import Views

LEAK_TEXT = {
    "leak_exact_example": "is|are an exact copy of a {target} row",
    "leak_exact_input": "has|have the input of a {target} row (exact)",
    "leak_near_example": "is|are a near copy of a {target} row",
    "leak_near_input": "has|have a near copy of the input of a {target} row",
}


def leaks(source: Sequence[Views], target: Sequence[Views], sketcher: Sketcher) -> dict[int, Verdict]:
    """For each source index that copies a target row: the verdict, with `of` = the target index."""
    attrs = ["whole", "input"] if any(v.input != v.whole for v in (*source, *target)) else ["whole"]
    firsts = {attr: first_by_key([getattr(v, attr) for v in target])[0] for attr in attrs}
    verdicts: dict[int, Verdict] = {}
    for attr in attrs:
        code = "leak_exact_example" if attr == "whole" else "leak_exact_input"
        for index, view in enumerate(source):
            key = getattr(view, attr)
            if index not in verdicts and key in firsts[attr]:
                verdicts[index] = Verdict(code, firsts[attr][key])
    for attr in attrs:
        code = "leak_near_example" if attr == "whole" else "leak_near_input"
        verdicts.update(_near(source, firsts[attr], attr, code, verdicts, sketcher))
    return verdicts


def _near(
    source: Sequence[Views],
    target_first: dict[str, int],
    attr: str,
    code: str,
    found: dict[int, Verdict],
    sketcher: Sketcher,
) -> dict[int, Verdict]:
    """Near-copy verdicts for the source rows without an exact one (only where one is found)."""
    targets = [(i, key) for key, i in target_first.items()]
    queries = [(i, getattr(view, attr)) for i, view in enumerate(source) if i not in found]
    matches = first_matches(queries, targets, sketcher)
    return {i: Verdict(code, of, round(similarity, 3)) for i, (of, similarity) in matches.items()}


def leak_findings(source: SplitData, target: SplitData, verdicts: dict[int, Verdict]) -> list[Finding]:
    """One leakage finding per code for `source` rows copying `target` rows (split shown as target→source)."""
    findings = []
    for code, text in LEAK_TEXT.items():
        hits = sorted((i, v) for i, v in verdicts.items() if v.code == code)
        if not hits:
            continue
        rows = [
            {
                "line": source.examples[i].line,
                f"{target.name}_line": target.examples[v.of].line,
                "similarity": v.similarity,
            }
            for i, v in hits
        ]
        message = f"{plural(len(hits), f'{source.name} row')} {agree(len(hits), text.format(target=target.name))}"
        findings.append(Finding("leakage", code, f"{target.name}→{source.name}", len(hits), message, rows))
    return findings
