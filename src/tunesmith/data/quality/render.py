"""Show a check report: rich tables for the terminal, and a length histogram as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunesmith.data.quality.report import KINDS, CheckReport, Finding

SHOWN_ROWS = 3
SHOWN_CHARS = 40
MIN_WIDTH = 120  # when stdout is not a terminal (a pipe or a file), rich would assume 80 columns
BAR_WIDTH = 30


def print_report(report: CheckReport, console: Console) -> None:
    """Files, findings, labels and lengths as tables, then a one-line verdict."""
    for name, info in report.files.items():
        console.print(
            f"[bold]{name}[/]: {escape(info['path'])} · format {info['format']} · {info['rows']:,} rows "
            f"({info['valid']:,} valid, {info['invalid']:,} invalid)"
        )
    table = findings_table(report.findings)
    if not console.is_terminal:
        table.width = max(console.width, MIN_WIDTH)
    console.print(table)
    if report.labels:
        console.print(labels_table(report.labels))
    for name, lengths in report.lengths.items():
        console.print(lengths_table(name, lengths))
    verdict = "[bold red]FAILED[/]" if report.errors else "[bold green]OK[/]"
    console.print(
        f"{verdict}: {len(report.errors)} error finding(s), {len(report.warnings)} warning finding(s) "
        f"in {report.seconds:.1f}s; errors are the kinds in data.check.errors: {report.settings['errors']}"
    )


def _order(finding: Finding) -> tuple[int, int, str]:
    return (finding.severity != "error", list(KINDS).index(finding.kind), finding.split)


def findings_table(findings: list[Finding]) -> Table:
    """One line per finding: level, kind and code, split, rows, then the message and the first few rows."""
    table = Table(title="findings" if findings else "findings: none", show_lines=True)
    table.add_column("level", no_wrap=True)
    table.add_column("kind / code", no_wrap=True)
    table.add_column("split", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("detail", ratio=1, min_width=30)
    for finding in sorted(findings, key=_order):
        level = "[red]error[/]" if finding.severity == "error" else "[yellow]warning[/]"
        detail = escape(finding.message)
        shown = "; ".join(_row_text(row) for row in finding.rows[:SHOWN_ROWS])
        if shown:
            detail += f"\n[dim]{escape(shown)}{' …' if len(finding.rows) > SHOWN_ROWS else ''}[/]"
        code = f"{finding.kind}\n[bold]{finding.code}[/]"
        table.add_row(level, code, finding.split, f"{finding.count:,}", detail)
    return table


def _row_text(row: dict[str, Any]) -> str:
    """A compact `key=value` rendering of one listed row (long texts cut)."""
    parts = []
    for key, value in row.items():
        text = str(value)
        parts.append(f"{key}={text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + '…'}")
    return " ".join(parts)


def labels_table(labels: dict[str, dict[str, int]]) -> Table:
    """Rows and share per label, one column per split."""
    table = Table(title="labels")
    table.add_column("label")
    for split in labels:
        table.add_column(split, justify="right")
    reference = labels.get("train") or next(iter(labels.values()))
    names = sorted({label for counts in labels.values() for label in counts}, key=lambda x: (-reference.get(x, 0), x))
    totals = {split: sum(counts.values()) for split, counts in labels.items()}
    for label in names:
        cells = []
        for split, counts in labels.items():
            n = counts.get(label, 0)
            cells.append(f"{n:,} ({100 * n / totals[split]:.1f}%)" if totals[split] else "0")
        table.add_row(escape(label), *cells)
    return table


def lengths_table(split: str, lengths: dict[str, Any]) -> Table:
    """The length histogram of one split as text bars."""
    unit = lengths["unit"]
    title = (
        f"{split}: {unit} per row · mean {lengths['mean']} · median {lengths['median']} · p95 {lengths['p95']} · "
        f"max {lengths['max']}"
    )
    table = Table(title=title)
    table.add_column(unit)
    table.add_column("rows", justify="right")
    table.add_column("")
    top = max((bucket["rows"] for bucket in lengths["histogram"]), default=0) or 1
    for bucket in lengths["histogram"]:
        bar = "█" * round(BAR_WIDTH * bucket["rows"] / top)
        table.add_row(bucket["range"], f"{bucket['rows']:,}", bar)
    return table


def plot_lengths(lengths: dict[str, dict[str, Any]], path: Path) -> Path:
    """Save the length histograms of every split as one PNG (bars per bucket, one colour per split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    splits = list(lengths)
    width = 0.8 / max(len(splits), 1)
    for offset, split in enumerate(splits):
        buckets = lengths[split]["histogram"]
        positions = [i + offset * width for i in range(len(buckets))]
        total = sum(b["rows"] for b in buckets) or 1
        axis.bar(positions, [100 * b["rows"] / total for b in buckets], width=width, label=split)
    first = lengths[splits[0]]["histogram"] if splits else []
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(first))], [b["range"] for b in first], rotation=30)
    unit = lengths[splits[0]]["unit"] if splits else "tokens"
    axis.set_xlabel(f"{unit} per row")
    axis.set_ylabel("% of rows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
