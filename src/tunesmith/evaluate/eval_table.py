"""`tunesmith eval` on the console: every system side by side with 95% intervals, the change against the best
baseline with its paired interval, and the per-class, confusion, calibration and collapse lines beneath."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.table import Table

from tunesmith.metrics import METRICS

MAX_CONFUSION_LABELS = 6  # larger matrices go to report.html only


def _percent(metric: str) -> bool:
    return metric != "loss" and METRICS.get(metric, METRICS["perplexity"]).percent


def _fmt(metric: str, value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "-"
    if metric == "loss":
        return f"{value:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
    if _percent(metric):
        return f"{value:.1%}" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _entry(system: dict[str, Any], how: str, headline: str) -> dict[str, Any]:
    """A system's results under one scoring; the prior baselines stand in the headline scoring's rows."""
    if how in system:
        return system[how]
    return system.get("prior", {}) if how == headline else {}


def _rows(report: dict[str, Any]) -> Iterator[tuple[str, str, str, list[tuple[float | None, list | None]]]]:
    """(label, metric, scoring, one (value, interval) per system) for every row: headline metrics first."""
    systems, scoring = report["systems"], report["scoring"]
    other = {"label_likelihood": "generation", "generation": "label_likelihood"}[scoring]
    for metric in report["metrics"]:
        if metric == "perplexity":
            continue
        for how in (scoring, other):
            cells = []
            for s in systems:
                entry = _entry(s, how, scoring)
                cells.append((entry.get("metrics", {}).get(metric), entry.get("intervals", {}).get(metric)))
            if any(v is not None for v, _ in cells):
                yield f"{metric} ({how.replace('_', ' ')})", metric, how, cells
    spans = [s.get("loss_intervals", {}) for s in systems]
    yield "val loss", "loss", "", [(s.get("loss"), span.get("loss")) for s, span in zip(systems, spans, strict=True)]
    if "perplexity" in report["metrics"]:
        cells = [(s.get("perplexity"), span.get("perplexity")) for s, span in zip(systems, spans, strict=True)]
        yield "perplexity", "perplexity", "", cells


def _change(report: dict[str, Any], metric: str, how: str, cells: list[tuple[float | None, list | None]]) -> str:
    """tuned − the best baseline, with the paired interval and its verdict when there is one."""
    systems = report["systems"]
    bases = [(v, s["name"]) for (v, _), s in zip(cells[:-1], systems[:-1], strict=True) if v is not None]
    tuned = cells[-1][0]
    if not bases or tuned is None:
        return "-"
    higher = metric != "loss" and METRICS.get(metric, METRICS["perplexity"]).higher_is_better
    best, name = max(bases) if higher else min(bases)
    delta, percent = tuned - best, _percent(metric)
    text = f"{delta * 100:+.1f} pts" if percent else f"{delta:+.3f}"
    paired = systems[-1].get("versus", {}).get(how, {}).get(name, {}).get(metric)
    if paired:
        scale = 100 if percent else 1
        text += f" [{paired['low'] * scale:+.1f}, {paired['high'] * scale:+.1f}]"
        text += "" if paired["significant"] else " not significant"
    return text + f" vs {name}" if len(bases) > 1 else text


def report_table(report: dict[str, Any]) -> Table:
    """Every system side by side (value [95% interval]); the change is tuned minus the best baseline."""
    table = Table(title=f"{report['run']} · {report['data']} · {report['rows']} rows")
    names = [s["name"] for s in report["systems"]]
    for col in ("metric", *names, "tuned − best base"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for label, metric, how, cells in _rows(report):
        table.add_row(label, *(_fmt(metric, v, ci) for v, ci in cells), _change(report, metric, how, cells))
    return table


def per_class_table(report: dict[str, Any]) -> Table | None:
    """Precision, recall, F1 and predicted share per label: the base 0-shot and the tuned model (headline)."""
    scoring, systems = report["scoring"], report["systems"]
    shown = [s for s in systems if s["name"] in {"base 0-shot", "tuned"} and "per_class" in s.get(scoring, {})]
    if not shown or shown[-1]["name"] != "tuned":
        return None
    table = Table(title=f"per class ({scoring.replace('_', ' ')})")
    table.add_column("label")
    table.add_column("gold share", justify="right")
    for s in shown:
        for col in ("predicted", "P", "R", "F1"):
            table.add_column(f"{s['name']} {col}", justify="right")
    tuned = shown[-1][scoring]
    for i, row in enumerate(tuned["per_class"]):
        cells = [row["label"], f"{tuned['gold_distribution'].get(row['label'], 0):.0%}"]
        for s in shown:
            c, shares = s[scoring]["per_class"][i], s[scoring]["predicted_distribution"]
            cells += [
                f"{shares.get(c['label'], 0):.0%}",
                f"{c['precision']:.2f}",
                f"{c['recall']:.2f}",
                f"{c['f1']:.2f}",
            ]
        table.add_row(*cells)
    return table


def confusion_table(report: dict[str, Any]) -> Table | None:
    """The tuned model's confusion matrix (gold rows, predicted columns) when the label set is small."""
    entry = report["systems"][-1].get(report["scoring"], {})
    found = entry.get("confusion")
    if not found or len(found["gold"]) > MAX_CONFUSION_LABELS:
        return None
    table = Table(title="tuned: gold (rows) × predicted (columns)")
    table.add_column("gold \\ predicted")
    for col in found["predicted"]:
        table.add_column(col, justify="right")
    for label, counts in zip(found["gold"], found["matrix"], strict=True):
        table.add_row(label, *(str(c) for c in counts))
    return table


def calibration_note(report: dict[str, Any]) -> str:
    """Expected calibration error of each label-likelihood system (lower: probabilities closer to accuracy)."""
    parts = [
        f"{s['name']} {s['label_likelihood']['calibration']['ece']:.3f}"
        for s in report["systems"]
        if "calibration" in s.get("label_likelihood", {})
    ]
    return "expected calibration error (10 bins, label likelihood) · " + " | ".join(parts) if parts else ""


def significance_note(report: dict[str, Any]) -> str:
    """McNemar's exact test of tuned against the base 0-shot, on the headline accuracy."""
    found = report["systems"][-1].get("versus", {}).get(report["scoring"], {}).get("base 0-shot", {}).get("accuracy")
    if not found or "mcnemar" not in found:
        return ""
    m = found["mcnemar"]
    return (
        f"tuned vs base 0-shot accuracy: McNemar exact p = {m['p_value']:.3g} ({m['only_this_right']} rows only "
        f"tuned gets right, {m['only_reference_right']} only the base); intervals: 95% bootstrap, "
        f"{report.get('bootstrap', {}).get('samples', '?')} resamples"
    )


def scoring_note(report: dict[str, Any]) -> str:
    """One line saying how the headline numbers were scored."""
    if report["scoring"] == "label_likelihood":
        return (
            f"classification ({len(report['labels'])} labels): headline = label likelihood (argmax of log p(label | "
            f"prompt) over {report['labels'][:6]}), all {report['rows']} rows; generation = greedy answer mapped to a "
            f"label, first {report['generation_rows']} rows"
        )
    return f"scored by generation: greedy answers of the first {report['generation_rows']} rows"


def throughput_note(report: dict[str, Any]) -> str:
    """Rows per second of each scoring, per system."""
    parts = []
    for system in report["systems"]:
        speeds = [
            f"{how.replace('_', ' ')} {system[how]['rows_per_s']:.1f}"
            + (
                " (decoding only: the prompt ran once, for both)"
                if system[how].get("continued_from_label_scoring")
                else ""
            )
            for how in ("label_likelihood", "generation")
            if how in system
        ]
        if speeds:
            cached = " (cached; when scored)" if system.get("cached") else ""
            parts.append(f"{system['name']}{cached}: " + ", ".join(speeds))
    return "rows/s · " + " | ".join(parts) if parts else ""
