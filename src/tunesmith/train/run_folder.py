"""The one place that names the files of a run folder (`runs/<name>/`); every reader and writer goes through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.quality.gate import REPORT_FILE as DATA_CHECK_FILE
from tunesmith.logs import RUN_LOG
from tunesmith.train.checkpoint import WEIGHTS

CONFIG_FILE, STATUS_FILE, SUMMARY_FILE = "config.yaml", "status.json", "summary.json"
ADAPTER_DIR, MODEL_DIR = "adapter", "model"  # the export: a PEFT adapter, or the whole model


def _entry(*parts: str) -> property:
    """A path inside the run folder, as a read-only attribute."""
    return property(lambda folder: folder.path.joinpath(*parts))


@dataclass(frozen=True)
class RunFolder:
    """A run folder and the path of each thing in it.

    Written by training: config.yaml (the config that runs from here on), status.json, log.txt, data_report.json,
    data_check.json, metrics.jsonl, checkpoints/, best/, the export (adapter/ or model/), loss.png, summary.json,
    resumes.json. Written by later commands: eval.json, audit.json, predictions.jsonl, report.html."""

    path: Path

    config = _entry(CONFIG_FILE)  # the config that runs from here on
    status = _entry(STATUS_FILE)
    summary = _entry(SUMMARY_FILE)
    log = _entry(RUN_LOG)
    metrics = _entry("metrics.jsonl")
    loss_plot = _entry("loss.png")
    data_report = _entry("data_report.json")
    data_check = _entry(DATA_CHECK_FILE)
    resumes = _entry("resumes.json")
    checkpoints = _entry("checkpoints")
    best_weights = _entry("best", WEIGHTS)  # the best evaluation's trainable weights, restored before export
    adapter = _entry(ADAPTER_DIR)
    model = _entry(MODEL_DIR)
    eval = _entry("eval.json")
    audit = _entry("audit.json")
    predictions = _entry("predictions.jsonl")
    report = _entry("report.html")

    def is_run(self) -> bool:
        return self.config.is_file()
