"""Everything a report reads from a run folder; each file is optional (a run may not have been evaluated)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.train.run_folder import RunFolder


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or half-written: the report shows the section as not available
    return data if isinstance(data, dict) else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: skip it, keep the rest
            if isinstance(row, dict):
                rows.append(row)
    return rows


@dataclass
class RunFiles:
    path: Path
    config_text: str
    summary: dict[str, Any] | None
    status: dict[str, Any] | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    data_report: dict[str, Any] | None = None
    data_check: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.resolve().name


def read_run(run_dir: Path) -> RunFiles:
    folder = RunFolder(run_dir)
    return RunFiles(
        path=run_dir,
        config_text=folder.config.read_text(encoding="utf-8") if folder.config.is_file() else "",
        summary=_json(folder.summary),
        status=_json(folder.status),
        metrics=_jsonl(folder.metrics),
        eval=_json(folder.eval),
        audit=_json(folder.audit),
        data_report=_json(folder.data_report),
        data_check=_json(folder.data_check),
    )
