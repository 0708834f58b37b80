"""Whole models and combined adapters made from finished runs: the base the next stage of a sequence trains on
(a LoRA run folded into its weights), and several per-task adapters merged into one (PEFT's weighted merges).
Folders are written beside their final name and renamed into place, so a killed write leaves no half folder."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from tunesmith.methods.base import save_with_tokenizer
from tunesmith.methods.loading import load_run, run_config
from tunesmith.models import load_causal_lm
from tunesmith.train.run_dir import set_status
from tunesmith.train.run_folder import RunFolder


def write_atomically(out: Path, write) -> Path:
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def whole_model_folder(run_dir: Path, out: Path) -> Path:
    """A folder with the run's tuned weights as a plain model (safetensors and tokenizer): the run's own export
    for whole-model methods; for an adapter run, the adapter folded into fp32 base weights, written to `out`."""
    if RunFolder(run_dir).model.is_dir():
        return RunFolder(run_dir).model
    if out.is_dir():
        return out
    loaded = load_run(run_dir, dtype=torch.float32)
    model = loaded.model.merge_and_unload() if loaded.is_adapter else loaded.model
    return write_atomically(out, lambda folder: save_with_tokenizer(model, loaded.tokenizer, folder))


def merge_adapters(
    run_dirs: Sequence[Path],
    names: Sequence[str],
    out: Path,
    combination: str,
    weights: Sequence[float] | None = None,
    density: float = 0.5,
) -> Path:
    """The LoRA adapters of `run_dirs` (all on the same base) combined into one adapter folder at `out`, by PEFT's
    `add_weighted_adapter` (ties, dare_*, magnitude_prune: `density` of each delta kept; linear: the weighted sum;
    cat: the adapters side by side, ranks added)."""
    from peft import PeftModel

    cfg = run_config(run_dirs[0])
    base = load_causal_lm(cfg.model.name, dtype=torch.float32, trust_remote_code=cfg.model.trust_remote_code)
    adapters = [RunFolder(run).adapter for run in run_dirs]
    model = PeftModel.from_pretrained(base, str(adapters[0]), adapter_name=names[0])
    for name, folder in zip(names[1:], adapters[1:], strict=True):
        model.load_adapter(str(folder), adapter_name=name)
    prune = combination in {"ties", "dare_linear", "dare_ties", "magnitude_prune"}
    model.add_weighted_adapter(
        adapters=list(names),
        weights=list(weights or [1.0] * len(names)),
        adapter_name="merged",
        combination_type=combination,
        density=density if prune else None,
    )
    model.set_adapter("merged")
    for name in names:
        model.delete_adapter(name)
    tokenizer = load_run_tokenizer(run_dirs[0])

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, selected_adapters=["merged"])
        nested = folder / "merged"  # PEFT keeps a non-default adapter in a subfolder of its name
        if nested.is_dir():
            for item in nested.iterdir():
                item.rename(folder / item.name)
            nested.rmdir()
        tokenizer.save_pretrained(folder)

    return write_atomically(out, write)


def merged_adapter_run(
    run_dirs: Sequence[Path],
    names: Sequence[str],
    out: Path,
    combination: str,
    weights: Sequence[float] | None = None,
    density: float = 0.5,
) -> Path:
    """`merge_adapters` written as a run folder at `out` (adapter/, the first run's config.yaml with the data format
    left to detection, a status.json that says what was merged), so predict, chat, eval and audit load it like
    any finished run."""

    def write(folder: Path) -> None:
        run = RunFolder(folder)
        merge_adapters(run_dirs, names, run.adapter, combination, weights, density)
        config = yaml.safe_load(RunFolder(run_dirs[0]).config.read_text())
        # The merge serves every task: rows are read by their own format, with no one task's system prompt.
        config.setdefault("data", {}).update(format="auto", system_prompt=None)
        run.config.write_text(yaml.safe_dump(config, sort_keys=False))
        set_status(folder, "completed", merged_from=list(names), combination=combination, density=density)

    return write_atomically(out, write)


def load_run_tokenizer(run_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(RunFolder(run_dir).adapter)
