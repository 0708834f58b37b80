"""Pieces every training recipe and task shares: dtypes, padding, tokenizer, drop reports, best weights, summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.load import summarize_rejected
from tunesmith.data.prepare import Prepared
from tunesmith.data.tokenize import ensure_chat_template
from tunesmith.errors import UserError
from tunesmith.methods import METHODS, count_parameters, parameter_report
from tunesmith.models import load_tokenizer
from tunesmith.train.checkpoint import WEIGHTS
from tunesmith.train.loop import LoopResult, steps_per_epoch
from tunesmith.train.precision import cpu_supports_bf16, use_bf16

console = Console(stderr=True)


def base_dtype(cfg: Config) -> torch.dtype:
    """bf16 storage for a frozen base where bf16 is native (halves memory, speeds matmuls); else fp32."""
    if cfg.model.dtype == "bf16":
        return torch.bfloat16
    if cfg.model.dtype == "fp32" or not METHODS[cfg.method.name].frozen_base:
        return torch.float32
    return torch.bfloat16 if use_bf16(cfg.train.precision) and cpu_supports_bf16() else torch.float32


def with_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The tokenizer, given a ChatML template (with a warning) when it ships none."""
    if ensure_chat_template(tokenizer):
        console.print("[yellow]warning:[/] the tokenizer has no chat template; using ChatML")
    return tokenizer


def load_chat_tokenizer(cfg: Config) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a ChatML template when it ships none."""
    return with_chat_template(load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code))


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise UserError("the tokenizer has neither a pad nor an eos token; cannot batch examples")
    return pid


def report_drops(prepared: Prepared) -> None:
    """Say what was left out of training, so nothing is lost silently (details in data_report.json)."""
    report = prepared.report
    if prepared.splits.rejected:
        console.print(
            f"[yellow]skipped invalid rows[/] (data.skip_invalid): {summarize_rejected(prepared.splits.rejected)}",
            markup=True,
            highlight=False,
        )
    for split in ("train", "val"):
        part = report[split]
        if part["truncated"] or part["dropped_no_trainable_tokens"]:
            console.print(
                f"[yellow]{split}[/]: {part['truncated']} rows truncated to data.max_length, "
                f"{part['dropped_no_trainable_tokens']} dropped with no trainable token left "
                f"(lines {part['dropped_lines'][:10]})",
                highlight=False,
            )


def restore_best(model: nn.Module, run_dir: Path) -> None:
    """Load the best validation weights the loop saved back into the model (nothing when none were saved)."""
    best = run_dir / "best" / WEIGHTS
    if best.is_file():
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in load_file(best).items():
                params[name].copy_(tensor)


def run_summary(
    cfg: Config,
    model: nn.Module,
    result: LoopResult,
    prepared: Prepared,
    export_dir: Path,
    wall: float,
) -> dict[str, Any]:
    """summary.json: what trained, how long, and the best validation loss (the exported weights' loss)."""
    trainable, total = count_parameters(model)
    state = result.state
    return {
        "task": cfg.task.name,
        "model": cfg.model.name,
        "method": cfg.method.name,
        "export": str(export_dir),
        "base_val_loss": state.base_val_loss,
        # The exported weights are the best ones, so their validation loss is the best one seen: no extra pass.
        "tuned_val_loss": state.best_val_loss,
        "best_step": state.best_step,
        "best_metric": cfg.train.best_metric,
        "best_score": state.best_score,
        "steps": state.step,
        "planned_steps": result.total_steps,
        "stopped_early": result.stopped_early,
        "epochs": round(state.step / max(steps_per_epoch(len(prepared.train), cfg.train), 1), 3),
        "train_tokens_seen": state.tokens_seen,
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "eval_seconds": round(result.eval_seconds, 1),
        "train_tokens_per_s": round(state.tokens_seen / max(result.train_seconds - result.eval_seconds, 1e-9), 1),
        "trainable_params": trainable,
        "total_params": total,
        "parameters": parameter_report(model),
        "train_examples": len(prepared.train),
        "val_examples": len(prepared.val),
        "data_hash": prepared.report["data_hash"],
    }


def perplexities(summary: dict[str, Any], base_val_loss: float | None) -> dict[str, Any]:
    """Perplexity before and after for language-modelling objectives; exp(cross-entropy) of a classifier is none."""
    if "val_perplexity" not in summary:
        return summary
    tuned = summary["tuned_val_loss"]
    return {
        **summary,
        "base_val_perplexity": math.exp(min(base_val_loss or 0.0, 50)),
        "tuned_val_perplexity": math.exp(min(tuned, 50)) if tuned is not None else None,
    }
