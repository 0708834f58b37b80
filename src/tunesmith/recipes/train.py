"""`tunesmith train` for every task (sft, classify, ner, pretrain), top to bottom: tokenizer → data → data check
→ model → method → run folder → loop → best weights → export → summary.

A task supplies only its steps (`tasks.base.TaskSteps`: prepare, build_model, objective, evaluator); the loop,
methods, checkpoints and run folder are shared. User mistakes surface before the run folder exists.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape
from torch import nn

from tunesmith.compat.attention import CHECKED_ON as ATTENTION_CHECKED_ON
from tunesmith.compat.attention import AttentionSwitch, matmul_attention
from tunesmith.compat.fused import CHECKED_ON as FUSED_CHECKED_ON
from tunesmith.compat.fused import FusedOps, fused_training_ops
from tunesmith.compat.patches import unchecked_versions
from tunesmith.compat.peft_casts import input_casts_still_happen, skip_adapter_input_casts
from tunesmith.config import Config
from tunesmith.data.quality.gate import check_before_training
from tunesmith.data.tokenize import pad_id
from tunesmith.errors import TrainingInterrupted
from tunesmith.forgetting import add_mitigations
from tunesmith.methods import METHODS, format_report, parameter_report
from tunesmith.models import load_tokenizer
from tunesmith.output import err, warn
from tunesmith.recipes.common import report_drops, restore_best
from tunesmith.recipes.summary import RunSummary, TrainedRun, summarise
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import TaskData, TaskSteps
from tunesmith.tasks.heads import HEAD_NAMES, head_of, with_head_lr, write_task_file
from tunesmith.train import run_dir as runs
from tunesmith.train.checkpoint import checkpoint_step, complete_checkpoints
from tunesmith.train.loop import (
    EvalHook,
    InterruptAtOnce,
    LoopResult,
    LoopSetup,
    StepHook,
    default_param_groups,
    run_training,
)
from tunesmith.train.memory import ActivationCheckpointing
from tunesmith.train.metrics_log import plot_losses
from tunesmith.train.objective import Objective
from tunesmith.train.packing import resolve_packing
from tunesmith.train.precision import threads, use_bf16
from tunesmith.train.regularization import add_neftune, set_dropout
from tunesmith.train.run_folder import RunFolder


def run_train(
    cfg: Config,
    config_path: str | None = None,
    resume: bool = False,
    hooks: list[StepHook] | None = None,
    on_evaluate: list[EvalHook] | None = None,
) -> TrainedRun:
    """Train per `cfg.task`; returns the run folder and its summary (also in summary.json). `on_evaluate` hooks
    see every validation pass and may stop training there (hyperparameter search prunes this way)."""
    return run_task(TASKS[cfg.task.name].steps, cfg, config_path, resume, hooks, on_evaluate)


def load_for_training(cfg: Config, steps: TaskSteps, data: TaskData, tokenizer: Any) -> nn.Module:
    """The task's model (base plus any new head), seeded, with the configured method applied."""
    torch.manual_seed(cfg.run.seed)  # the new head's and the adapters' initialisation
    return apply_method(cfg, steps.build_model(cfg, data, tokenizer))


def apply_method(cfg: Config, model: nn.Module) -> nn.Module:
    """Freeze the base, override dropout if asked, then let the method choose what trains."""
    model.config.use_cache = False
    for param in model.parameters():
        param.requires_grad_(False)
    if cfg.regularization.dropout is not None and not set_dropout(model, cfg.regularization.dropout):
        err.print("[yellow]warning:[/] regularization.dropout: this model has no dropout setting to override")
    model = METHODS[cfg.method.name].apply(model, cfg.method)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    has_head = any(hasattr(base, name) for name in HEAD_NAMES)
    if has_head and not any(p.requires_grad for p in head_of(model).parameters()):
        err.print(
            f"[yellow]warning:[/] method {cfg.method.name} leaves the new {cfg.task.name} head frozen, so it stays "
            "random; use a method that trains it (full, lora, freeze)"
        )
    return model


def _train(setup: LoopSetup, cfg: Config, run_path: Path, checkpoint: Path | None) -> tuple[LoopResult, FusedOps]:
    """The loop, with the run's status kept current; leaves the best weights in the model. The runtime patches
    (attention, fused ops) never fail the run: their problems are warnings."""
    problems: list[str] = []
    try:
        use_matmul, fuse = cfg.train.attention == "auto", cfg.train.fused_ops == "auto"
        with (
            threads(cfg.train.threads),
            matmul_attention(setup.model, use_matmul, problems) as attention,
            fused_training_ops(setup.model, fuse, setup.bf16) as fused,
        ):
            _report_fused(fused)
            result = run_training(setup, resume_from=checkpoint)
            restore_best(setup.model, run_path)
    except TrainingInterrupted as stop:
        runs.set_status(run_path, "interrupted", step=stop.step, checkpoint=stop.checkpoint)
        raise
    except BaseException as exc:
        runs.set_status(run_path, "failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    _report_runtime_patches(attention, fused, problems, trained=result.steps_run > 0)
    return result, fused


def _report_fused(fused: FusedOps) -> None:
    if fused.kernels:
        err.print(f"fused ops: {', '.join(fused.kernels)} (built and checked in {fused.seconds:.1f} s)")
    for name, why in fused.failed.items():
        err.print(f"[yellow]warning:[/] fused op {name} not used ({why}); the model's own code runs instead")


def _report_runtime_patches(attention: AttentionSwitch, fused: FusedOps, problems: list[str], trained: bool) -> None:
    """One warning line per patch that stopped running, could not be undone, or runs on library versions it was
    not checked on; the run itself is complete."""
    idle = [name for name in fused.kernels if trained and fused.calls.get(name, 0) == 0]
    if idle:
        problems.append(f"fused ops {', '.join(idle)} never ran in training (a library replaced them)")
    if attention and trained and attention.calls == 0:
        problems.append("train.attention: the model never called the CPU attention (transformers moved its dispatch)")
    for name, checked in (
        ("fused ops", FUSED_CHECKED_ON if fused.kernels else ()),
        ("train.attention", ATTENTION_CHECKED_ON if attention else ()),
    ):
        if lines := unchecked_versions(checked):
            problems.append(f"{name} ran on library versions it was not checked on: {', '.join(lines)}")
    for line in [*problems, *fused.restore_problems]:
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


def _prepare(steps: TaskSteps, cfg: Config) -> tuple[Any, TaskData, dict[str, Any] | None]:
    """Tokenizer, encoded data and the data check: everything that can fail on user input before any weights."""
    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
    data = steps.prepare(cfg, tokenizer)
    check = None
    if data.check_data:  # stops on error findings
        check = check_before_training(cfg, data.check_tokenizer, splits=data.prepared.splits)
    report_drops(data.prepared)
    return tokenizer, data, check


def _loop_setup(
    cfg: Config,
    steps: TaskSteps,
    data: TaskData,
    tokenizer: Any,
    model: nn.Module,
    run_path: Path,
    hooks: list[StepHook],
    objective: Objective,
    packing: bool,
    on_evaluate: list[EvalHook],
) -> LoopSetup:
    """Everything the loop needs: data, the task's objective and validation pass, the method's hooks."""
    bf16 = use_bf16(cfg.train.precision)
    if bf16 and skip_adapter_input_casts(model) and (problem := input_casts_still_happen(model)):
        warn(problem)
    method_hooks = METHODS[cfg.method.name].loop_hooks(model, cfg.method)
    param_groups = method_hooks.param_groups
    if steps.new_head:  # classify, ner: the new head trains at its own rate (measured: docs/tasks.md)
        param_groups = with_head_lr(param_groups or default_param_groups, cfg.task.head_lr)
    for line in format_report(parameter_report(model)):
        err.print(line, highlight=False)
    return LoopSetup(
        model,
        data.prepared.train,
        data.prepared.val,
        pad_id(tokenizer),
        cfg.train,
        run_path,
        cfg.run.seed,
        bf16,
        cfg.eval.batch_size,
        hooks,
        before_step=method_hooks.before_step,
        objective=objective,
        param_groups=param_groups,
        checkpointing=ActivationCheckpointing(
            model, cfg.train.activation_checkpointing, cfg.train.checkpointing_min_tokens
        ),
        evaluate=steps.evaluator(cfg, data, tokenizer),
        packing=packing,
        on_evaluate=on_evaluate,
    )


def _export_and_summarise(
    cfg: Config,
    steps: TaskSteps,
    model: nn.Module,
    tokenizer: Any,
    data: TaskData,
    trained: tuple[LoopResult, FusedOps],
    run_path: Path,
    wall: float,
) -> RunSummary:
    """The export (plus the label map), the loss plot and summary.json."""
    result, fused = trained
    export_dir = METHODS[cfg.method.name].export(model, tokenizer, run_path)
    labels = data.labels if steps.new_head else None
    if labels is not None:
        write_task_file(export_dir, cfg.task.name, labels)
    title = f"{cfg.model.name} · {cfg.task.name} · {cfg.method.name}"
    folder = RunFolder(run_path)
    plot_losses(folder.metrics, folder.loss_plot, title)
    return summarise(cfg, model, result, fused, data.prepared, run_path, export_dir, wall, labels)


def _resume_point(cfg: Config, config_path: str | None) -> tuple[Path, Path | None]:
    """The run folder and its newest intact checkpoint; refuses a changed config (run_dir.check_resume_config)."""
    run_path = runs.existing_run_dir(cfg, config_path)
    changes = runs.check_resume_config(run_path, cfg)
    checkpoint, damaged = runs.resume_checkpoint(run_path)
    for line in damaged:
        err.print(f"[yellow]warning:[/] damaged checkpoint {escape(line)}", highlight=False)
    err.print(f"resuming {run_path} from {checkpoint.name if checkpoint else 'the start (no checkpoint)'}")
    for key, (old, new) in changes.items():
        err.print(f"resume changes {key}: {old!r} -> {new!r}", highlight=False)
    runs.record_resume(run_path, cfg, checkpoint_step(checkpoint), changes)
    return run_path, checkpoint


def run_task(
    steps: TaskSteps,
    cfg: Config,
    config_path: str | None = None,
    resume: bool = False,
    hooks: list[StepHook] | None = None,
    on_evaluate: list[EvalHook] | None = None,
) -> TrainedRun:
    """Train a task model per `cfg` with the task's `steps`; returns the run folder and its summary."""
    started, run_path = time.perf_counter(), None
    try:
        with InterruptAtOnce() as signals:
            run_path, checkpoint = _resume_point(cfg, config_path) if resume else (None, None)
            signals.checkpoint = checkpoint
            tokenizer, data, data_check = _prepare(steps, cfg)
            model = load_for_training(cfg, steps, data, tokenizer)
            # Only objectives that can pack (causal LM) do; the probe checks this model keeps packed examples
            # apart, and `packing=on` on a model that cannot stops here, before any run folder exists.
            objective = steps.objective(cfg)
            bf16 = use_bf16(cfg.train.precision)
            packing = objective.pack is not None and resolve_packing(cfg.train.packing, model, bf16)
            run_path = run_path or runs.new_run_dir(cfg, config_path)
            _start_run(run_path, data, data_check)
            setup = _loop_setup(
                cfg, steps, data, tokenizer, model, run_path, hooks or [], objective, packing, on_evaluate or []
            )
            _add_mitigations(cfg, setup, tokenizer, run_path, data)
            alpha = cfg.regularization.neftune_alpha
            neftune = add_neftune(model, alpha) if alpha else None
            result, fused = _train(setup, cfg, run_path, checkpoint)
            # A signal during the export stops it; a resume starts from the newest checkpoint and exports again.
            signals.checkpoint = (complete_checkpoints(RunFolder(run_path).checkpoints) or [None])[-1]
            if neftune is not None:
                neftune.remove()  # training noise only: the exported model sees clean embeddings
            wall = time.perf_counter() - started
            summary = _export_and_summarise(cfg, steps, model, tokenizer, data, (result, fused), run_path, wall)
    except TrainingInterrupted as stop:
        if run_path is not None:
            runs.set_status(run_path, "interrupted", step=stop.step, checkpoint=stop.checkpoint)
        raise
    runs.set_status(run_path, "completed")
    return TrainedRun(run_path, summary)


def _add_mitigations(cfg: Config, setup: LoopSetup, tokenizer: Any, run_path: Path, data: TaskData) -> None:
    """The `forgetting:` section's replay rows and penalties, recorded in data_report.json. A bad replay or EWC
    file fails the run (status `failed`) rather than leaving it `running`."""
    try:
        mitigations = add_mitigations(cfg, setup, tokenizer, run_path)
    except Exception as exc:
        runs.set_status(run_path, "failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    if mitigations:
        runs.write_json(RunFolder(run_path).data_report, {**data.prepared.report, "forgetting": mitigations})


def _start_run(run_path: Path, data: TaskData, data_check: dict[str, Any] | None) -> None:
    folder = RunFolder(run_path)
    runs.write_json(folder.data_report, data.prepared.report)
    if data_check is not None:
        runs.write_json(folder.data_check, data_check)
    runs.set_status(run_path, "running")
