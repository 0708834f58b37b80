"""The run directory: `runs/<name>/` with the resolved config, status, metrics, checkpoints and outputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tunesmith.config import Config, dump_config
from tunesmith.errors import UserError, did_you_mean
from tunesmith.logs import attach_run_log
from tunesmith.train.checkpoint import complete_checkpoints, intact_checkpoint
from tunesmith.train.run_folder import CONFIG_FILE, STATUS_FILE, RunFolder


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
    found = complete_checkpoints(RunFolder(run_dir).checkpoints)
    return found[-1] if found else None


def resume_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint to resume from, and one line per damaged newer one (set aside). None when
    the run has no checkpoint yet (it starts over); a UserError when every checkpoint is damaged."""
    checkpoint, damaged = intact_checkpoint(RunFolder(run_dir).checkpoints)
    if checkpoint is None and damaged:
        raise UserError(
            f"nothing to resume in {run_dir}: every checkpoint is damaged ({'; '.join(damaged)}); start a new run"
        )
    return checkpoint, damaged


# Keys that may differ on resume: they change when or how long the run goes on, or how fast, not what a step
# computes. Everything else (data, model, method, lr, batch size, ...) would make the resumed run a different run.
SAFE_ON_RESUME = (
    "run.name",
    "run.output_dir",
    "train.max_steps",
    "train.epochs",
    "train.eval_every",
    "train.save_every",
    "train.keep_checkpoints",
    "train.early_stopping_patience",
    "train.overfit_patience",
    "train.threads",
    "train.trim_memory_every",
    "train.max_forward_tokens",
    "train.attention",
    "train.fused_ops",
    "eval.",
)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _safe_on_resume(key: str) -> bool:
    return any(key == safe or (safe.endswith(".") and key.startswith(safe)) for safe in SAFE_ON_RESUME)


def check_resume_config(run_dir: Path, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """The safe keys that differ from the run's config.yaml (applied, and recorded in config.yaml and
    resumes.json); a UserError listing every other changed key, before anything loads."""
    from tunesmith.config import load_config

    saved = _flat(load_config(run_dir / CONFIG_FILE).model_dump())
    new = _flat(cfg.model_dump())
    changed = {k: (saved.get(k), new.get(k)) for k in sorted(saved.keys() | new.keys()) if saved.get(k) != new.get(k)}
    unsafe = {k: v for k, v in changed.items() if not _safe_on_resume(k)}
    if unsafe:
        shown = ", ".join(f"{k} {old!r} -> {value!r}" for k, (old, value) in list(unsafe.items())[:5])
        more = f" (and {len(unsafe) - 5} more)" if len(unsafe) > 5 else ""
        raise UserError(
            f"cannot resume {run_dir} with a changed config: {shown}{more}. Resume with the run's own config "
            f"(`tunesmith resume {run_dir}`), or start a new run (another run.name). Keys that may change on "
            f"resume: {', '.join(k.rstrip('.') for k in SAFE_ON_RESUME[2:])}"
        )
    return {k: v for k, v in changed.items() if not k.startswith("run.")}


def record_resume(run_dir: Path, cfg: Config, step: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Keep config.yaml the config that runs from here on, and list each resume with what it changed."""
    if changes:
        tmp = run_dir / f".{CONFIG_FILE}.tmp-{os.getpid()}"
        tmp.write_text(dump_config(cfg))
        os.replace(tmp, run_dir / CONFIG_FILE)
    log_path = RunFolder(run_dir).resumes
    log = json.loads(log_path.read_text())["resumes"] if log_path.is_file() else []
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "from_step": step}
    log.append({**entry, "changed": {k: {"from": old, "to": new} for k, (old, new) in changes.items()}})
    write_json(log_path, {"resumes": log})


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def set_status(run_dir: Path, status: str, **extra: Any) -> None:
    write_json(run_dir / STATUS_FILE, {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})


def find_run(name: str | Path) -> Path | None:
    """The run folder `name` means (a path, or a run name under ./runs), or None when it names no run."""
    return next((p for p in (Path(name), Path("runs") / str(name)) if RunFolder(p).is_run()), None)


def resolve_run(path: str | Path) -> Path:
    """A run folder given by path, or by name under ./runs."""
    run = find_run(path)
    if run is None:
        raise UserError(f"{path}: not a tunesmith run folder (no {CONFIG_FILE}); runs live in ./runs/<name>")
    attach_run_log(run)
    return run


def stage_run(sequence: str | Path, adapter: str) -> Path:
    """The run folder of the stage of a `tunesmith sequence` folder that trained task `adapter` (its own adapter
    with `adapters: per_task`; the model right after that stage with shared training), or of the merged adapter
    (`merged`)."""
    state = Path(sequence) / "sequence.json"
    if not state.is_file():
        raise UserError(f"{sequence}: --adapter picks a task of a sequence folder, and this is not one")
    recorded = json.loads(state.read_text())
    stages = recorded.get("stages", [])
    for stage in stages:
        if stage.get("tasks") == [adapter] and RunFolder(Path(stage["run"])).is_run():
            return Path(stage["run"])
    merged = recorded.get("merged", {}).get("run")
    if adapter == "merged" and merged and RunFolder(Path(merged)).is_run():
        return Path(merged)
    trained = [name for stage in stages for name in stage.get("tasks", []) if len(stage.get("tasks", [])) == 1]
    trained += ["merged"] if merged else []
    hint = did_you_mean(adapter, trained)
    raise UserError(f"{sequence}: no finished stage trained {adapter!r}.{hint} Trained: {', '.join(trained) or 'none'}")
