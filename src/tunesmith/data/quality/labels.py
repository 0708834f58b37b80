"""Labels: their distribution per split, imbalance, rare labels, and labels never seen in training.

A split has labels when its format is `text_label`, or when its outputs look like labels: short (at most
LABEL_MAX_CHARS for 95% of rows) and few (at most MAX_LABELS distinct values, and at most half as many as
rows). The label is the output as written (stripped), so "Positive" and "positive" count as two labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tunesmith.config.schema import DataCheckConfig
from tunesmith.data.example import Example
from tunesmith.data.quality.report import Finding, agree, plural

LABEL_MAX_CHARS = 40
MAX_LABELS = 50


def labels_of(examples: Sequence[Example], format: str) -> list[str] | None:
    """Each example's label, or None when these examples are not a labelling task."""
    targets = [example.target for example in examples]
    if not targets or any(target is None for target in targets):
        return None
    labels = [target.strip() for target in targets if target is not None]
    if format == "text_label":
        return labels
    short = sum(len(label) <= LABEL_MAX_CHARS for label in labels)
    distinct = len(set(labels))
    if short >= 0.95 * len(labels) and distinct <= min(MAX_LABELS, len(labels) // 2):
        return labels
    return None


def label_findings(counts: dict[str, Counter[str]], settings: DataCheckConfig) -> list[Finding]:
    """Imbalance and rare labels in train; labels of other splits that train never has."""
    train = counts.get("train")
    if not train:
        return []
    findings = []
    most, least = max(train.values()), min(train.values())
    ratio = most / least
    if len(train) > 1 and ratio > settings.max_imbalance_ratio:
        top, bottom = train.most_common()[0][0], train.most_common()[-1][0]
        message = (
            f"the most common label ({top!r}, {most:,} rows) is {ratio:.1f}× the rarest ({bottom!r}, {least:,}); "
            f"over data.check.max_imbalance_ratio={settings.max_imbalance_ratio:g}"
        )
        rows = [{"label": label, "rows": n} for label, n in train.most_common()]
        findings.append(Finding("imbalance", "label_imbalance", "train", len(train), message, rows))
    rare = [(label, n) for label, n in sorted(train.items()) if n < settings.rare_label_min]
    if rare:
        limit = settings.rare_label_min
        message = f"{plural(len(rare), 'label')} with fewer than {limit} rows (data.check.rare_label_min)"
        rows = [{"label": label, "rows": n} for label, n in rare]
        findings.append(Finding("imbalance", "rare_label", "train", len(rare), message, rows))
    for split, split_counts in counts.items():
        unseen = sorted(set(split_counts) - set(train))
        if split != "train" and unseen:
            rows = [{"label": label, "rows": split_counts[label]} for label in unseen]
            message = f"{plural(len(unseen), 'label')} of {split} {agree(len(unseen), 'is|are')} never in train"
            findings.append(Finding("imbalance", "unseen_label", split, len(unseen), message, rows))
    return findings
