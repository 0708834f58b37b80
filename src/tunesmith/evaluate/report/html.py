"""`tunesmith report`: one self-contained HTML file per run (plots embedded as base64 PNG, inline CSS)."""

from __future__ import annotations

import time
from pathlib import Path

from tunesmith.evaluate.report import class_section, sections
from tunesmith.evaluate.report.markup import esc, page
from tunesmith.evaluate.report.run_files import read_run
from tunesmith.train.run_folder import RunFolder

NAV = [
    ("overview", "Overview"),
    ("training", "Training"),
    ("evaluation", "Metrics & baselines"),
    ("classes", "Per class"),
    ("forgetting", "Forgetting"),
    ("bias", "Bias"),
    ("data", "Data"),
    ("config", "Config"),
]


def build_report(run_dir: Path) -> str:
    run = read_run(run_dir)
    body = "".join(
        build(run)
        for build in (
            sections.overview,
            sections.training,
            sections.evaluation,
            class_section.classes,
            sections.forgetting,
            sections.bias,
            sections.data,
            sections.config,
        )
    )
    subtitle = f"{esc(run_dir)} · report made {time.strftime('%Y-%m-%d %H:%M')} by tunesmith"
    return page(f"tunesmith run report: {run.name}", subtitle, NAV, body)


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    path = out or RunFolder(run_dir).report
    path.write_text(build_report(run_dir), encoding="utf-8")
    return path
