"""The report's look under the headline accuracy: the collapse warning, per-class results, the tuned model's
confusion matrix and a reliability diagram (from eval.json's statistics, `evaluate/uncertainty.py`)."""

from __future__ import annotations

from typing import Any

from tunesmith.evaluate.report import plots
from tunesmith.evaluate.report.markup import esc, image, note, num, section, table
from tunesmith.evaluate.report.run_files import RunFiles

TITLE = "Per class, confusion and calibration"


def _headline(report: dict[str, Any], name: str) -> dict[str, Any]:
    system = next((s for s in report.get("systems", []) if s.get("name") == name), {})
    return system.get(report.get("scoring", ""), {}) or {}


def _per_class_rows(report: dict[str, Any]) -> list[list[str]]:
    base, tuned = _headline(report, "base 0-shot"), _headline(report, "tuned")
    rows = []
    for i, c in enumerate(tuned.get("per_class", [])):
        b = (base.get("per_class") or [{}] * (i + 1))[i]
        rows.append(
            [
                esc(c["label"]),
                num(c["support"]),
                f"{base.get('predicted_distribution', {}).get(c['label'], 0):.0%}",
                f"{tuned.get('predicted_distribution', {}).get(c['label'], 0):.0%}",
                *(f"{num(b.get(k), 3)} → {num(c[k], 3)}" for k in ("precision", "recall", "f1")),
            ]
        )
    return rows


def classes(run: RunFiles) -> str:
    report = run.eval or {}
    tuned = _headline(report, "tuned")
    if not tuned.get("per_class"):
        return section(
            "classes", TITLE, note("No label-scored evaluation in eval.json (or one from before 2026-12-07).")
        )
    body = ""
    if report.get("collapse_warning"):
        body += f'<p class="flag"><b>Warning:</b> {esc(report["collapse_warning"])}</p>'
    headers = ["label", "gold rows", "predicted share: base", "tuned", "precision base → tuned", "recall", "F1"]
    body += table(headers, _per_class_rows(report))
    found = tuned.get("confusion")
    if found:
        body += image(plots.confusion_heatmap(found["gold"], found["predicted"], found["matrix"], "tuned"), "confusion")
    curves = {
        s["name"]: s["label_likelihood"]["calibration"]["bins"]
        for s in report.get("systems", [])
        if s.get("name") in {"base 0-shot", "tuned"} and "calibration" in s.get("label_likelihood", {})
    }
    ece = ", ".join(
        f"{name} {s['label_likelihood']['calibration']['ece']:.3f}"
        for s in report.get("systems", [])
        if (name := s.get("name")) in curves
    )
    body += image(plots.reliability(curves), "reliability diagram")
    if ece:
        body += note(f"Expected calibration error (10 equal-width bins of the predicted label's probability): {ece}.")
    return section("classes", TITLE, body)
