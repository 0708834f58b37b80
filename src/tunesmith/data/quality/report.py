"""What a data check found: findings with a kind, a stable code and example rows, and the report around them.

A finding's *kind* decides its severity: kinds listed in `data.check.errors` are errors (exit 1, training
stops), the others warnings. The *code* names the exact problem and never changes meaning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tunesmith.errors import UserError, did_you_mean

# Finding kinds, each with the codes it groups (schema codes come from the readers and formats).
KINDS: dict[str, str] = {
    "schema": "rows that cannot be read or do not fit the format",
    "length": "over_max_length, no_trainable_tokens",
    "duplicates": "exact_duplicate",
    "near_duplicates": "near_duplicate",
    "leakage": "leak_exact_example, leak_exact_input, leak_near_example, leak_near_input",
    "conflicts": "conflicting_labels",
    "imbalance": "label_imbalance, rare_label, unseen_label",
}
MAX_ROWS_LISTED = 1000  # per finding in the JSON report; the table shows a few


@dataclass
class Finding:
    """One kind of problem in one split (or pair of splits), with the rows it concerns."""

    kind: str
    code: str
    split: str
    count: int
    message: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    severity: str = "warning"


@dataclass
class CheckReport:
    """Everything `data check` measured; `as_dict` is the JSON report."""

    files: dict[str, dict[str, Any]]
    findings: list[Finding]
    labels: dict[str, dict[str, int]]
    lengths: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        """Findings whose kind is listed in `data.check.errors`."""
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """All other findings."""
        return [finding for finding in self.findings if finding.severity == "warning"]

    def counts(self) -> dict[str, int]:
        """Rows per code, over all splits."""
        total: Counter[str] = Counter()
        for finding in self.findings:
            total[finding.code] += finding.count
        return dict(total)

    def as_dict(self) -> dict[str, Any]:
        """The JSON report: verdict, counts per code, files, findings (rows capped), labels, lengths, settings."""
        return {
            "ok": not self.errors,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "counts": self.counts(),
            "files": self.files,
            "findings": [{**asdict(f), "rows": f.rows[:MAX_ROWS_LISTED]} for f in self.findings],
            "labels": self.labels,
            "lengths": self.lengths,
            "settings": self.settings,
            "seconds": round(self.seconds, 2),
        }


def check_kinds(kinds: list[str]) -> None:
    """Reject an unknown kind in `data.check.errors`, suggesting the nearest one."""
    for kind in kinds:
        if kind not in KINDS:
            hint = did_you_mean(kind, KINDS)
            raise UserError(f"data.check.errors: unknown finding kind {kind!r}; kinds: {', '.join(KINDS)}.{hint}")


def set_severity(findings: list[Finding], error_kinds: list[str]) -> None:
    """Mark each finding an error when its kind is listed in `error_kinds`, else a warning."""
    for finding in findings:
        finding.severity = "error" if finding.kind in error_kinds else "warning"


def plural(count: int, noun: str) -> str:
    """'1 row', '3 rows'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def agree(count: int, text: str) -> str:
    """`text` with its leading "one|many" verb resolved for `count`: agree(2, "is|are late") == "are late"."""
    verbs, _, rest = text.partition(" ")
    one, _, many = verbs.partition("|")
    return f"{one if count == 1 else many} {rest}"
