"""The run directory: `runs/<name>/` with the resolved config, status, metrics, checkpoints and outputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tunesmith.config import Config, dump_config
from tunesmith.errors import UserError
from tunesmith.logs import attach_run_log
from tunesmith.train.checkpoint import complete_checkpoints

CONFIG_FILE, STATUS_FILE, SUMMARY_FILE = "config.yaml", "status.json", "summary.json"


def _confined(output_dir: Path, name: str) -> Path:
    root = output_dir.resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise UserError(f"run name {name!r} would leave the output folder {output_dir}")
    return path


def new_run_dir(cfg: Config, config_path: str | None) -> Path:
    """Create a fresh run folder; refuse to overwrite a run that already has results."""
    stem = Path(config_path).stem if config_path else "run"
    name = cfg.run.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = _confined(Path(cfg.run.output_dir), name)
    if path.exists() and any(path.iterdir()):
        raise UserError(
            f"run folder {path} already exists; pass --resume to continue it or choose another "
            "run.name (--set run.name=...)"
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(dump_config(cfg))
    attach_run_log(path)
    return path


def existing_run_dir(cfg: Config, config_path: str | None) -> Path:
    """The run folder to resume: run.name if set, else the newest run made from this config file."""
    output_dir = Path(cfg.run.output_dir)
    if cfg.run.name:
        path = _confined(output_dir, cfg.run.name)
    else:
        stem = Path(config_path).stem if config_path else "run"
        candidates = (
            sorted(output_dir.glob(f"{stem}-*"), key=lambda p: p.stat().st_mtime) if output_dir.is_dir() else []
        )
        if not candidates:
            raise UserError(f"nothing to resume: no run of {config_path} in {output_dir}; set run.name")
        path = candidates[-1]
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"nothing to resume: {path} is not a tunesmith run folder")
    attach_run_log(path)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir / "checkpoints")
    return found[-1] if found else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def set_status(run_dir: Path, status: str, **extra: Any) -> None:
    write_json(run_dir / STATUS_FILE, {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})


def resolve_run(path: str | Path) -> Path:
    """A run folder given by path, or by name under ./runs."""
    candidates = [Path(path), Path("runs") / str(path)]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).is_file():
            attach_run_log(candidate)
            return candidate
    raise UserError(f"{path}: not a tunesmith run folder (no {CONFIG_FILE}); runs live in ./runs/<name>")
