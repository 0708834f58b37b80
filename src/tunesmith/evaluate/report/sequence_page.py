"""`tunesmith report SEQUENCE`: one self-contained page with the retention matrix, its summary, the heat map and
the per-task curves, and every stage's run."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from tunesmith.evaluate.report.markup import esc, image, note, num, page, section, signed, table
from tunesmith.evaluate.report.sequence_plots import CURVES, HEATMAP, matrix_rows, write_plots
from tunesmith.metrics import METRICS

NAV = [("matrix", "Retention matrix"), ("plots", "Plots"), ("stages", "Stages")]


def is_sequence(folder: Path) -> bool:
    return (folder / "sequence.json").is_file()


def _png(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii") if path.is_file() else None


def _score(value: float, metric: str) -> str:
    return f"{100 * value:.1f}%" if METRICS[metric].percent else num(value)


def _matrix(state: dict[str, Any]) -> str:
    metrics = [s["metric"] for s in state["base"]]
    header = ["after", *[f"{t} ({m})" for t, m in zip(state["order"]["tasks"], metrics, strict=True)]]
    rows = [
        [esc(label), *(_score(v, m) for v, m in zip(scores, metrics, strict=True))]
        for label, scores in matrix_rows(state)
    ]
    summary = state.get("summary", {})
    cards = [f"average {num(summary.get('average'))}"]
    for key in ("bwt", "fwt", "forgetting", "merged_average"):
        if summary.get(key) is not None:
            cards.append(f"{key} {signed(summary[key])}")
    text = note(
        "BWT: mean change of each earlier task's score from right after its own stage to the end (negative: "
        "forgotten). FWT: what earlier stages gave a task before its own, against the base. Forgetting: best "
        "earlier score minus the final one, per task, averaged. Rule: " + esc(state["order"]["rule"]) + "."
    )
    return table(header, rows) + "<p>" + " · ".join(esc(c) for c in cards) + "</p>" + text


def _stages(state: dict[str, Any]) -> str:
    rows = []
    for stage in state.get("stages", []):
        general = stage.get("general") or {}
        ppl = (general.get("reference_perplexity") or {}).get("tuned")
        rows.append(
            [
                esc(stage["name"]),
                esc(", ".join(stage["tasks"])),
                num(stage.get("train_seconds"), 1),
                num(ppl, 3),
                num(general.get("kl_base_tuned"), 4),
                esc(stage["run"]),
            ]
        )
    header = ["stage", "trained on", "train s", "reference ppl", "KL(base ‖ model)", "run folder"]
    return table(header, rows, text_cols=(1, 5))


def build_sequence_page(folder: Path) -> str:
    state = json.loads((folder / "sequence.json").read_text())
    if not (folder / HEATMAP).is_file():
        write_plots(folder, state)
    body = (
        section("matrix", "Retention matrix", _matrix(state))
        + section("plots", "Plots", image(_png(folder / HEATMAP), "heat map") + image(_png(folder / CURVES), "curves"))
        + section("stages", "Stages", _stages(state))
    )
    subtitle = f"{esc(folder)} · report made {time.strftime('%Y-%m-%d %H:%M')} by tunesmith"
    return page(f"tunesmith sequence report: {folder.name}", subtitle, NAV, body)


def write_sequence_page(folder: Path, out: Path | None = None) -> Path:
    path = out or folder / "report.html"
    path.write_text(build_sequence_page(folder), encoding="utf-8")
    return path
