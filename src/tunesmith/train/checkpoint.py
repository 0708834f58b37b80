"""Atomic checkpoints in safetensors + JSON (never pickle).

A checkpoint is staged in a hidden folder next to its target, fsynced, then renamed into place, so a crash at
any point leaves either the complete checkpoint or none. Old checkpoints are rotated only after the new one is in
place. `state.json` records the SHA-256 of every other file, so a checkpoint damaged later (a truncated copy, a
bad disk) is recognised at resume, set aside, and the newest intact one is used (`intact_checkpoint`). A write
that fails (disk full, file size limit) removes its staging folder and is one error naming the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.errors import TrainingInterrupted, UserError

_STEP_DIR = re.compile(r"^step-(\d{7})$")
WEIGHTS, OPTIMIZER, STATE, RNG = "trainable.safetensors", "optimizer.safetensors", "state.json", "rng.safetensors"
OPTIMIZER_META = "optimizer.json"
REQUIRED_FILES = (WEIGHTS, OPTIMIZER, OPTIMIZER_META, RNG)


@dataclass
class TrainState:
    """Where training is: enough to continue exactly."""

    step: int = 0
    epoch: int = 0
    micro_batch: int = 0  # micro-batches of `epoch` already consumed
    tokens_seen: int = 0
    padded_tokens_seen: int = 0  # the same micro-batches' tokens with their padding (0 in older checkpoints)
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    base_val_loss: float | None = None
    best_score: float | None = None  # train.best_metric at best_step (the val loss when that is the metric)
    # The overfitting monitor: the previous evaluation's metric and mean train loss, and how many evaluations in a
    # row the metric got worse while the train loss fell.
    last_score: float | None = None
    last_train_loss: float | None = None
    overfit_streak: int = 0
    # Train losses of the steps since the last evaluation, so a resume averages the same steps as a straight run.
    train_losses: list[float] = field(default_factory=list)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        with open(file, "rb+") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(path)


def trainable_state(model: nn.Module, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (the only ones a checkpoint needs): `names`, or all with grad on."""
    chosen = set(names) if names is not None else None
    return {
        n: p.detach().contiguous().clone()
        for n, p in model.named_parameters()
        if (n in chosen if chosen is not None else p.requires_grad)
    }


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    meta = json.loads((folder / OPTIMIZER_META).read_text())
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in load_file(folder / OPTIMIZER).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = tensor
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
    keep: int,
    names: list[str] | None = None,
) -> Path:
    """Write checkpoint `step-N` atomically under `folder`, then rotate old ones (keeping the best)."""
    target = folder / f"step-{state.step:07d}"
    if (target / STATE).is_file():
        return target  # this step is already saved (e.g. a signal arrived on a save step); never rewrite it
    staging = folder / f".staging-{target.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        _write_checkpoint(staging, model, optimizer, scheduler, state, names)
        _fsync_tree(staging)
        crash_point("before_rename", state.step)
        os.replace(staging, target)
        _fsync_dir(folder)
        crash_point("after_rename", state.step)
    except Exception as exc:  # noqa: BLE001 - OSError, and safetensors' own error for a full disk ("File too large")
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, TrainingInterrupted):  # a second signal mid-save: no debris, and still an interrupt
            raise
        raise StorageError(target, exc) from None
    _rotate(folder, keep, state.best_step)
    crash_point("after_rotate", state.step)
    return target


def _write_checkpoint(
    staging: Path, model: nn.Module, optimizer: Any, scheduler: Any, state: TrainState, names: list[str] | None
) -> None:
    save_file(trainable_state(model, names), staging / WEIGHTS)
    crash_point("weights", state.step)
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, staging / OPTIMIZER)
    (staging / OPTIMIZER_META).write_text(json.dumps(meta))
    save_file({"torch": torch.get_rng_state()}, staging / RNG)
    extra = {"scheduler": scheduler.state_dict(), "python_rng": _py_rng(), "numpy_rng": _np_rng()}
    files = {path.name: file_sha256(path) for path in sorted(staging.iterdir())}
    (staging / STATE).write_text(json.dumps({"train_state": asdict(state), **extra, "files": files}))
    crash_point("state", state.step)


class StorageError(UserError):
    """A checkpoint or weights file could not be written (disk full, size limit, permissions); nothing partial
    is left, and earlier checkpoints are untouched."""

    def __init__(self, path: Path, exc: BaseException):
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        super().__init__(
            f"could not write {path}: {reason}. Earlier checkpoints are intact; free disk space (or raise the file "
            "size limit) and continue with --resume"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damage(path: Path) -> str | None:
    """Why a complete checkpoint cannot be trusted (unreadable state, a missing file, a checksum mismatch), or
    None when it is intact. Checkpoints from before checksums are checked for readable state only."""
    try:
        meta = json.loads((path / STATE).read_text())
        files = meta.get("files", {})
        if not isinstance(meta.get("train_state"), dict) or not isinstance(files, dict):
            return f"{STATE} has no train state"
    except (OSError, ValueError) as exc:
        return f"{STATE} unreadable ({type(exc).__name__})"
    for name in REQUIRED_FILES:
        if name not in files and not (path / name).is_file():  # checked here for checkpoints without checksums
            return f"{name} is missing"
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file_sha256(file) != expected:
            return f"{name} does not match its checksum"
    return None


def intact_checkpoint(folder: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint, and one line per damaged newer one. When an intact one is found, the damaged
    newer ones are moved to `damaged-step-N-<time>` (kept for inspection), so no later save or resume takes them
    for complete; when none is, nothing is moved."""
    damaged: list[tuple[Path, str]] = []
    for path in reversed(complete_checkpoints(folder)):
        why = damage(path)
        if why is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            lines = []
            for bad, reason in damaged:
                aside = bad.with_name(f"damaged-{bad.name}-{stamp}")
                os.replace(bad, aside)
                lines.append(f"{bad.name}: {reason}; moved to {aside.name}")
            return path, lines
        damaged.append((path, why))
    return None, [f"{bad.name}: {reason}" for bad, reason in damaged]


CRASH_POINTS = ("weights", "state", "before_rename", "after_rename", "mid_rotate", "after_rotate")


def crash_point(name: str, step: int) -> None:
    """Fault injection for the kill -9 tests: TUNESMITH_CRASH_AT=<point>@<step> SIGKILLs the process here."""
    if os.environ.get("TUNESMITH_CRASH_AT") == f"{name}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _rotate(folder: Path, keep: int, best_step: int | None) -> None:
    steps = complete_checkpoints(folder)
    for path in steps[:-keep]:
        if best_step is None or path.name != f"step-{best_step:07d}":
            _remove_atomically(path, checkpoint_step(steps[-1]))


def _remove_atomically(path: Path, step: int) -> None:
    """Rename first, then delete: a kill inside the delete must not leave a `step-N` folder that still has its
    state.json but has lost its weights (it would look complete). The hidden leftover is cleaned at the next start."""
    trash = path.with_name(f".removing-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    crash_point("mid_rotate", step)
    shutil.rmtree(trash, ignore_errors=True)


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (staging folders are never complete)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).is_file()]
    return sorted(found, key=lambda p: p.name)


def checkpoint_step(checkpoint: Path | None) -> int:
    """The step of a `step-N` checkpoint folder (0 for none)."""
    return int(checkpoint.name.split("-")[-1]) if checkpoint is not None else 0


def clean_staging(folder: Path) -> None:
    """Remove debris of a save or a rotation that was killed midway."""
    if folder.is_dir():
        for p in [*folder.glob(".staging-*"), *folder.glob(".removing-*")]:
            shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> TrainState:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint folder; return the train state."""
    weights = load_file(path / WEIGHTS)
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise UserError(f"{path}: checkpoint does not match the model (unknown parameter {missing[0]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    _load_optimizer(optimizer, path)
    meta = json.loads((path / STATE).read_text())
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(load_file(path / RNG)["torch"])
    random.setstate(_tuplify(meta["python_rng"]))
    np.random.set_state(
        tuple(meta["numpy_rng"][:1]) + (np.array(meta["numpy_rng"][1], dtype=np.uint32),) + tuple(meta["numpy_rng"][2:])
    )
    return TrainState(**meta["train_state"])


def _py_rng() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _tuplify(state: list[Any]) -> tuple[Any, ...]:
    return (state[0], tuple(state[1]), state[2])


def _np_rng() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def save_weights_atomically(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write one safetensors file via a temporary name and rename; a failed write leaves nothing behind."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(weights, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - as in save_checkpoint
        tmp.unlink(missing_ok=True)
        if isinstance(exc, TrainingInterrupted):
            raise
        raise StorageError(path, exc) from None
