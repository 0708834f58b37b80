"""The SFT recipe: setup → train → save, top to bottom.

`tunesmith train` calls `run_sft`. User mistakes (config, data, model name) surface before the run folder is
created, so a failed start never leaves a run that looks real.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.load import summarize_rejected
from tunesmith.data.prepare import Prepared, prepare_data
from tunesmith.data.quality.gate import check_before_training
from tunesmith.data.tokenize import ensure_chat_template
from tunesmith.errors import TrainingInterrupted, UserError
from tunesmith.methods import METHODS, count_parameters, format_report, parameter_report
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.train import run_dir as runs
from tunesmith.train.checkpoint import WEIGHTS
from tunesmith.train.loop import LoopResult, LoopSetup, StepHook, run_training, steps_per_epoch
from tunesmith.train.memory import ActivationCheckpointing
from tunesmith.train.metrics_log import plot_losses
from tunesmith.train.packing import resolve_packing
from tunesmith.train.precision import cpu_supports_bf16, skip_adapter_input_casts, threads, use_bf16
from tunesmith.train.regularization import add_neftune, causal_lm_objective, set_dropout

console = Console(stderr=True)


def base_dtype(cfg: Config) -> torch.dtype:
    """bf16 storage for a frozen base where bf16 is native (halves memory, speeds matmuls); else fp32."""
    if cfg.model.dtype == "bf16":
        return torch.bfloat16
    if cfg.model.dtype == "fp32" or not METHODS[cfg.method.name].frozen_base:
        return torch.float32
    return torch.bfloat16 if use_bf16(cfg.train.precision) and cpu_supports_bf16() else torch.float32


def load_chat_tokenizer(cfg: Config) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a ChatML template when it ships none."""
    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
    if ensure_chat_template(tokenizer):
        console.print("[yellow]warning:[/] the tokenizer has no chat template; using ChatML")
    return tokenizer


def load_for_training(cfg: Config) -> nn.Module:
    """The base model with the configured method applied (only the method's parameters train)."""
    torch.manual_seed(cfg.run.seed)
    model = load_causal_lm(cfg.model.name, dtype=base_dtype(cfg), trust_remote_code=cfg.model.trust_remote_code)
    model.config.use_cache = False
    for param in model.parameters():
        param.requires_grad_(False)
    if cfg.regularization.dropout is not None and not set_dropout(model, cfg.regularization.dropout):
        console.print("[yellow]warning:[/] regularization.dropout: this model has no dropout setting to override")
    return METHODS[cfg.method.name].apply(model, cfg.method)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise UserError("the tokenizer has neither a pad nor an eos token; cannot batch examples")
    return pid


def _report_drops(prepared: Prepared) -> None:
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


def _restore_best(model: nn.Module, run_dir: Path) -> None:
    best = run_dir / "best" / WEIGHTS
    if best.is_file():
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in load_file(best).items():
                params[name].copy_(tensor)


def _summary(
    cfg: Config,
    model: nn.Module,
    result: LoopResult,
    prepared: Prepared,
    export_dir: Path,
    wall: float,
) -> dict[str, Any]:
    trainable, total = count_parameters(model)
    state = result.state
    return {
        "model": cfg.model.name,
        "method": cfg.method.name,
        "export": str(export_dir),
        "base_val_loss": state.base_val_loss,
        # The exported weights are the best ones, so their validation loss is the best one seen: no extra pass.
        "tuned_val_loss": state.best_val_loss,
        "tuned_val_perplexity": math.exp(min(state.best_val_loss, 50)),
        "best_step": state.best_step,
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


def run_sft(
    cfg: Config, config_path: str | None = None, resume: bool = False, hooks: list[StepHook] | None = None
) -> Path:
    """Fine-tune per `cfg`; returns the run folder (with summary.json on success)."""
    started = time.perf_counter()
    if resume:
        run_path = runs.existing_run_dir(cfg, config_path)
        checkpoint = runs.latest_checkpoint(run_path)
        console.print(f"resuming {run_path} from {checkpoint.name if checkpoint else 'the start (no checkpoint)'}")
    tokenizer = load_chat_tokenizer(cfg)
    prepared = prepare_data(cfg.data, tokenizer, cfg.run.seed)
    data_check = check_before_training(cfg, tokenizer, splits=prepared.splits)  # stops on error findings
    _report_drops(prepared)
    model = load_for_training(cfg)
    if not resume:
        run_path, checkpoint = runs.new_run_dir(cfg, config_path), None
    runs.write_json(run_path / "data_report.json", prepared.report)
    if data_check is not None:
        runs.write_json(run_path / "data_check.json", data_check)
    runs.set_status(run_path, "running")
    bf16 = use_bf16(cfg.train.precision)
    if bf16:
        skip_adapter_input_casts(model)
    method_hooks = METHODS[cfg.method.name].loop_hooks(model, cfg.method)
    for line in format_report(parameter_report(model)):
        console.print(line, highlight=False)
    alpha = cfg.regularization.neftune_alpha
    neftune = add_neftune(model, alpha) if alpha else None
    setup = LoopSetup(
        model,
        prepared.train,
        prepared.val,
        pad_id(tokenizer),
        cfg.train,
        run_path,
        cfg.run.seed,
        bf16,
        cfg.eval.batch_size,
        hooks or [],
        before_step=method_hooks.before_step,
        objective=causal_lm_objective(cfg.regularization.label_smoothing),
        param_groups=method_hooks.param_groups,
        checkpointing=ActivationCheckpointing(model, cfg.train.activation_checkpointing),
        packing=resolve_packing(cfg.train.packing, model, bf16),
    )
    try:
        with threads(cfg.train.threads):
            result = run_training(setup, resume_from=checkpoint)
            _restore_best(model, run_path)
    except TrainingInterrupted as stop:
        runs.set_status(run_path, "interrupted", step=stop.step, checkpoint=stop.checkpoint)
        raise
    except BaseException as exc:
        runs.set_status(run_path, "failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    if neftune is not None:
        neftune.remove()  # training noise only: the exported and evaluated model sees clean embeddings
    export_dir = METHODS[cfg.method.name].export(model, tokenizer, run_path)
    plot_losses(run_path / "metrics.jsonl", run_path / "loss.png", f"{cfg.model.name} · {cfg.method.name}")
    summary = _summary(cfg, model, result, prepared, export_dir, time.perf_counter() - started)
    runs.write_json(run_path / runs.SUMMARY_FILE, summary)
    runs.set_status(run_path, "completed")
    return run_path
