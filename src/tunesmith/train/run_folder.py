"""The one place that names the files of a run folder (`runs/<name>/`); every reader and writer goes through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.quality.gate import REPORT_FILE as DATA_CHECK_FILE
from tunesmith.logs import RUN_LOG
from tunesmith.train.checkpoint import WEIGHTS

CONFIG_FILE, STATUS_FILE, SUMMARY_FILE = "config.yaml", "status.json", "summary.json"
ADAPTER_DIR, MODEL_DIR = "adapter", "model"  # the export: a PEFT adapter, or the whole model


@dataclass(frozen=True)
class RunFolder:
    """A run folder and the path of each thing in it.

    Written by training: config.yaml (the config that runs from here on), status.json, log.txt, data_report.json,
    data_check.json, metrics.jsonl, checkpoints/, best/, the export (adapter/ or model/), loss.png, summary.json,
    resumes.json. Written by later commands: eval.json, audit.json, predictions.jsonl, report.html."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def status(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def log(self) -> Path:
        return self.path / RUN_LOG

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def data_report(self) -> Path:
        return self.path / "data_report.json"

    @property
    def data_check(self) -> Path:
        return self.path / DATA_CHECK_FILE

    @property
    def resumes(self) -> Path:
        return self.path / "resumes.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best_weights(self) -> Path:
        """The trainable weights of the best evaluation so far (restored into the model before export)."""
        return self.path / "best" / WEIGHTS

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def model(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def eval(self) -> Path:
        return self.path / "eval.json"

    @property
    def audit(self) -> Path:
        return self.path / "audit.json"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.jsonl"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def is_run(self) -> bool:
        return self.config.is_file()
