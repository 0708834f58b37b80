"""Everything a registered version records about where it came from, read from its run folder.

The config (and its hash), the data files with their SHA-256 and row counts, the data check's verdict, the
validation, evaluation and audit numbers, the library versions and git commit the run trained with. Missing
parts (a run never evaluated or audited) are recorded as missing, not guessed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunesmith.config.load import read_yaml
from tunesmith.errors import UserError
from tunesmith.train.checkpoint import file_sha256
from tunesmith.train.run_folder import RunFolder


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def data_file(path: str | None) -> dict[str, Any] | None:
    """A data file's SHA-256 and row count (non-empty lines; a JSON array counts its items)."""
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        return {"path": path, "missing": True}
    text = file.read_text(errors="replace")
    rows = sum(1 for line in text.splitlines() if line.strip())
    if file.suffix == ".json" and text.lstrip().startswith("["):
        rows = len(json.loads(text))
    return {"path": str(file.resolve()), "sha256": file_sha256(file), "rows": rows}


def _eval_numbers(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Each system's headline metrics and intervals, and the collapse warning."""
    if not report:
        return None
    scoring = report.get("scoring", "")
    return {
        "rows": report.get("rows"),
        "scoring": scoring,
        "collapse_warning": report.get("collapse_warning"),
        "systems": {
            s.get("name"): {
                "metrics": s.get("metrics", {}),
                "intervals": (s.get(scoring) or s.get("prior") or {}).get("intervals", {}),
            }
            for s in report.get("systems", [])
        },
    }


def _audit_numbers(audit: dict[str, Any] | None) -> dict[str, Any] | None:
    if not audit:
        return None
    bias = audit.get("bias") or {}
    return {"forgetting": audit.get("forgetting"), "bias_amplification": bias.get("amplification")}


def export_folder(run_dir: Path) -> Path:
    folder = RunFolder(run_dir)
    for candidate in (folder.adapter, folder.model):
        if candidate.is_dir():
            return candidate
    raise UserError(f"{run_dir}: no exported weights (adapter/ or model/); has the run finished?")


def lineage(run_dir: Path) -> dict[str, Any]:
    """What the registry stores about a run; a UserError when the folder is not a finished run."""
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    summary = _json(folder.summary)
    if summary is None:
        raise UserError(f"{run_dir}: no summary.json; register a run after training finished")
    config = read_yaml(folder.config)
    data = config.get("data") or {}
    check = _json(folder.data_check) or {}
    return {
        "config": config,
        "config_hash": config_hash(config),
        "task": summary.get("task"),
        "base_model": summary.get("model"),
        "method": summary.get("method"),
        "data": {split: data_file(data.get(split)) for split in ("train", "val", "test")},
        "data_check": {k: check.get(k) for k in ("ok", "errors", "warnings", "counts") if k in check} or None,
        "validation": {
            "base_val_loss": summary.get("base_val_loss"),
            "tuned_val_loss": summary.get("tuned_val_loss"),
            "metrics": summary.get("val_metrics"),
            "collapse_warning": summary.get("collapse_warning"),
        },
        "eval": _eval_numbers(_json(folder.eval)),
        "audit": _audit_numbers(_json(folder.audit)),
        "environment": summary.get("environment"),
        "export": export_folder(run_dir).name,
    }
