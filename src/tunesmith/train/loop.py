"""The training loop: plain PyTorch, readable top to bottom.

One optimizer step = `grad_accum` micro-batches, loss normalised by the trained tokens of the whole step
(see `numerics`). Evaluation, early stopping, best-weights tracking, atomic checkpoints, exact resume, NaN
guard and graceful SIGTERM/SIGINT all live here.
"""

from __future__ import annotations

import functools
import math
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import get_scheduler

from tunesmith.config.schema import TrainConfig
from tunesmith.data.batching import batch_plan, real_tokens, split_by_tokens
from tunesmith.data.tokenize import Encoded
from tunesmith.errors import NonFiniteLossError, TrainingInterrupted, UserError
from tunesmith.output import err
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.loss import evaluate_loss
from tunesmith.train.memory import ActivationCheckpointing, release_freed_memory
from tunesmith.train.metrics_log import MetricsLog
from tunesmith.train.monitor import BestMetric, judge
from tunesmith.train.numerics import accumulate_step, mean_loss
from tunesmith.train.objective import CAUSAL_LM, Objective
from tunesmith.train.penalties import Penalties
from tunesmith.train.precision import autocast
from tunesmith.train.progress import StepProgress, step_progress
from tunesmith.train.replay import Replay
from tunesmith.train.run_folder import RunFolder

StepHook = Callable[[ckpt.TrainState], None]
# Called after each validation pass with (state, val loss, val metrics, whether it is the run's last pass); a
# returned reason (e.g. "pruned") stops training there as early stopping does: the best weights are kept and exported.
EvalHook = Callable[[ckpt.TrainState, float, dict[str, float], bool], str | None]


@dataclass
class LoopSetup:
    """Everything the loop needs, built by the recipe."""

    model: nn.Module
    train_data: Sequence[Encoded]
    val_data: Sequence[Encoded]
    pad_id: int
    cfg: TrainConfig
    run_dir: Path
    seed: int = 0
    bf16: bool = False
    eval_batch_size: int = 16
    hooks: list[StepHook] = field(default_factory=list)  # run after each step
    # Run before each step (the first one after a resume too), e.g. to unfreeze layers on a schedule.
    before_step: list[StepHook] = field(default_factory=list)
    objective: Objective = CAUSAL_LM
    # Parameter groups for the optimizer (e.g. layer-wise learning rates); default: all trainable parameters.
    param_groups: Callable[[nn.Module, TrainConfig], list[dict]] | None = None
    checkpointing: ActivationCheckpointing | None = None
    # The validation pass: (val loss, metrics to log, e.g. accuracy); `cfg.best_metric` picks the best weights
    # from them. Default: `evaluate_loss` with the objective, and the perplexity.
    evaluate: Callable[[nn.Module], tuple[float, dict[str, float]]] | None = None
    # Train on packed micro-batches (`objective.pack`); validation keeps padded batches. See `train.packing`.
    packing: bool = False
    on_evaluate: list[EvalHook] = field(default_factory=list)  # after each validation pass but the base one
    # Forgetting mitigation (`forgetting/`): replay rows beside each task micro-batch, penalties on the loss.
    replay: Replay | None = None
    penalties: Penalties = field(default_factory=Penalties)

    @functools.cached_property
    def lengths(self) -> list[int]:
        """Each training example's length, as the objective measures it (batch plans, forward-pass splits)."""
        return [self.objective.length(e) for e in self.train_data]


@dataclass
class LoopResult:
    state: ckpt.TrainState
    total_steps: int
    stopped_early: bool
    train_seconds: float  # the whole loop, evaluations and checkpoints included
    eval_seconds: float  # of which: validation passes
    steps_run: int = 0  # optimizer steps taken by this process (fewer than state.step after a resume)
    stop_reason: str | None = None  # early_stopping, or the reason an `on_evaluate` hook gave


class _StopSignal:
    """First SIGTERM/SIGINT: finish the step, checkpoint, exit. A second one: stop at once, with
    TrainingInterrupted naming the newest complete checkpoint in `checkpoints` (the step in progress is lost).
    Either way the exit code is 128 + the first signal's number: that signal decided the stop."""

    def __init__(self, checkpoints: Path) -> None:
        self.signum: int | None = None
        self.checkpoints = checkpoints
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may install handlers; the host process handles signals
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            return
        newest = (ckpt.complete_checkpoints(self.checkpoints) or [None])[-1]
        raise TrainingInterrupted(
            ckpt.checkpoint_step(newest), str(newest) if newest else None, exit_code=128 + self.signum, at_once=True
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class InterruptAtOnce:
    """Outside the loop (setup, base evaluation, export): SIGTERM/SIGINT stop at once with TrainingInterrupted
    (exit 128+signal), so the recipe can mark the run interrupted instead of leaving it `running`. The loop's own
    handler (finish the step, checkpoint) takes over while it runs and hands back afterwards."""

    def __init__(self, checkpoint: Path | None = None) -> None:
        self.checkpoint = checkpoint  # what a resume would start from
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptAtOnce:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        raise TrainingInterrupted(
            ckpt.checkpoint_step(self.checkpoint),
            str(self.checkpoint) if self.checkpoint else None,
            exit_code=128 + signum,
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def peak_rss_mb() -> int:
    """Peak resident memory of this process so far.

    On Linux, the VmHWM line of /proc/self/status: the high-water mark of this process's own memory since its
    last exec (`tune` resets it per trial). getrusage's ru_maxrss is not that: Linux carries it across fork and
    exec, so a run started by a large process (a study's scheduler, a bench script with a model loaded) would
    report its parent's peak. Elsewhere ru_maxrss (macOS reports bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024)


def steps_per_epoch(n_examples: int, cfg: TrainConfig) -> int:
    return math.ceil(math.ceil(n_examples / cfg.batch_size) / cfg.grad_accum)


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps the run will take: epochs × steps per epoch, capped by max_steps."""
    steps = math.ceil(steps_per_epoch(n_examples, cfg) * cfg.epochs)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def default_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters, with weight decay off for biases and norms."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def trained_parameters(setup: LoopSetup) -> dict[str, nn.Parameter]:
    """Every parameter the optimizer will update, by name: frozen-for-now ones (gradual unfreezing) included."""
    groups = (setup.param_groups or default_param_groups)(setup.model, setup.cfg)
    wanted = {id(p) for group in groups for p in group["params"]}
    return {name: p for name, p in setup.model.named_parameters() if id(p) in wanted}


def _optimizer(setup: LoopSetup) -> torch.optim.Optimizer:
    groups = (setup.param_groups or default_param_groups)(setup.model, setup.cfg)
    return torch.optim.AdamW(groups, lr=setup.cfg.lr)


def optimized_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of every parameter the optimizer updates: what checkpoints must hold, frozen-for-now ones included."""
    wanted = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [name for name, param in model.named_parameters() if id(param) in wanted]


def _step_windows(setup: LoopSetup, epoch: int) -> list[list[list[int]]]:
    plan = batch_plan(setup.lengths, setup.cfg.batch_size, setup.seed, epoch)
    acc = setup.cfg.grad_accum
    return [plan[i : i + acc] for i in range(0, len(plan), acc)]


def _windows_done(windows: list[list[list[int]]], micro_batches: int) -> int:
    """How many leading windows `micro_batches` consumed micro-batches cover (the last window may be short)."""
    done = 0
    for count, window in enumerate(windows):
        done += len(window)
        if done > micro_batches:
            return count
    return len(windows)


@dataclass
class StepStats:
    loss: float  # mean over the step's trained tokens
    trained_tokens: int  # tokens that carry a loss
    input_tokens: int  # non-padding tokens the model processed (the throughput unit TRL reports)
    padded_tokens: int  # tokens of the step's forward passes, padding included
    grad_norm: float  # before clipping
    extra: dict[str, float] = field(default_factory=dict)  # replay loss and rows, penalties: logged as they are


def _step_batches(
    setup: LoopSetup, window: list[list[int]], step: int, budget: int | None
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """The step's task forward passes (each at most `budget` padded tokens) and its replay passes."""
    objective = setup.objective
    build = objective.pack if setup.packing and objective.pack is not None else objective.collate
    parts = [part for idx in window for part in split_by_tokens(idx, setup.lengths, budget)]
    task = [build([setup.train_data[i] for i in part], setup.pad_id) for part in parts]
    replay = setup.replay
    replayed = [objective.collate(replay.pick(step, i), setup.pad_id) for i in range(len(window))] if replay else []
    return task, replayed


def _train_step(
    setup: LoopSetup, window: list[list[int]], optimizer: torch.optim.Optimizer, step: int, budget: int | None
) -> StepStats:
    """One optimizer step over `window`'s micro-batches, in forward passes of at most `budget` padded tokens."""
    objective, kl = setup.objective, setup.penalties.kl
    if kl is not None:
        kl.take()  # a step retried after out-of-memory starts its KL tally afresh
    task, replay = _step_batches(setup, window, step, budget)
    share = setup.replay.share if setup.replay else 0.0
    checkpointing = setup.checkpointing
    before = (lambda batch: checkpointing.for_batch(batch["input_ids"].numel())) if checkpointing else None
    totals, tokens = [], []
    groups = [(task, 1 - share, False)] + ([(replay, share, True)] if replay else [])
    for batches, weight, on_replay in groups:
        loss_fn = kl.loss_sum if kl is not None and kl.on_replay == on_replay else objective.loss_sum
        total, count = accumulate_step(
            setup.model, batches, autocast(setup.bf16), loss_fn, objective.count, before, scale=weight
        )
        totals.append(total)
        tokens.append(count)
    extra = setup.penalties.add_weight_gradients() if any(tokens) else {}
    params = [p for p in setup.model.parameters() if p.requires_grad]
    max_norm = setup.cfg.max_grad_norm or float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    if not (all(math.isfinite(t) for t in totals) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        what = "loss" if not all(math.isfinite(t) for t in totals) else "gradient norm"
        raise NonFiniteLossError(
            f"the {what} became NaN/Inf at step {step}; nothing was saved from this step. "
            "Lower train.lr, keep train.max_grad_norm set, or check the data of this batch"
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if kl is not None:  # the logged losses are plain cross-entropy; the KL term is logged on its own
        extra[f"penalty_{kl.name}"], kl_sum = kl.take()
        totals[int(kl.on_replay)] -= kl_sum
    if replay:
        extra.update(replay_loss=mean_loss(totals[1], tokens[1]), replay_rows=sum(len(b["input_ids"]) for b in replay))
        extra["replay_tokens"] = tokens[1]
    micro = task + replay
    inputs = sum(real_tokens(mb) for mb in micro)
    padded = sum(mb["input_ids"].numel() for mb in micro)
    return StepStats(totals[0] / max(tokens[0], 1), tokens[0], inputs, padded, grad_norm, extra)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA), the CPU allocator's failure, or Python's MemoryError."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text)
    )


def step_with_backoff(
    setup: LoopSetup, window: list[list[int]], optimizer: torch.optim.Optimizer, step: int, budget: int | None
) -> tuple[StepStats, int | None]:
    """`_train_step`, halving the forward passes' token budget on out-of-memory until the step fits.

    The step itself is unchanged (its loss is normalised over all its tokens, `numerics`): only how many rows go
    through the model at once. Returns the stats and the budget that worked (kept for the rest of the run). When
    one row per forward pass does not fit either, a UserError says what to lower."""
    while True:
        try:
            return _train_step(setup, window, optimizer, step, budget), budget
        except Exception as exc:  # noqa: BLE001 - only memory errors are retried; the rest re-raise below
            if not is_out_of_memory(exc):
                raise
            optimizer.zero_grad(set_to_none=True)
            release_freed_memory()
            longest = max(setup.lengths[i] for idx in window for i in idx)
            widest = max(
                len(p) * setup.lengths[p[0]] for idx in window for p in split_by_tokens(idx, setup.lengths, budget)
            )
            if widest <= longest:
                raise UserError(
                    f"out of memory at step {step} even with one row per forward pass ({longest} tokens); lower "
                    "data.max_length, use a method with fewer trainable weights (lora), or turn on "
                    "train.activation_checkpointing"
                ) from None
            budget = max(longest, widest // 2)
            err.print(
                f"[yellow]warning:[/] out of memory at step {step}; forward passes now hold at most {budget} tokens "
                "(train.max_forward_tokens) for the rest of the run; the step and its loss are unchanged",
                highlight=False,
            )


class _Trainer:
    """State of one loop run; methods are the loop's phases."""

    def __init__(self, setup: LoopSetup, resume_from: Path | None):
        self.setup, self.cfg = setup, setup.cfg
        self.total = total_steps(len(setup.train_data), self.cfg)
        self.optimizer = _optimizer(setup)
        self.names = optimized_names(setup.model, self.optimizer)
        self.eval_seconds = 0.0
        self.stop_reason: str | None = None
        self.forward_budget = self.cfg.max_forward_tokens  # halved on out-of-memory (step_with_backoff)
        self.scheduler = get_scheduler(
            self.cfg.schedule if self.cfg.schedule != "constant" else "constant_with_warmup",
            self.optimizer,
            num_warmup_steps=int(self.cfg.warmup_ratio * self.total),
            num_training_steps=self.total,
        )
        folder = RunFolder(setup.run_dir)
        self.ckpt_dir, self.best_path = folder.checkpoints, folder.best_weights
        ckpt.clean_staging(self.ckpt_dir)
        self.state = ckpt.TrainState()
        if resume_from is not None:
            self.state = ckpt.load_checkpoint(resume_from, setup.model, self.optimizer, self.scheduler)
        self.best = BestMetric.from_config(self.cfg)
        if self.state.best_score is None and self.best.name == "loss":  # a checkpoint from before best_score
            self.state.best_score = self.state.best_val_loss
        # Rows past the starting point were written by a process that stopped before its next checkpoint; a start
        # from step 0 (a new run, or a resume that found no checkpoint) logs the base evaluation again.
        self.log = MetricsLog(folder.metrics, truncate_after_step=self.state.step or -1)

    def evaluate(self) -> float:
        s, started = self.setup, time.perf_counter()
        if s.evaluate is not None:
            val, metrics = s.evaluate(s.model)
        else:
            val = evaluate_loss(s.model, s.val_data, s.pad_id, s.eval_batch_size, s.bf16, s.objective)["loss"]
            metrics = {"perplexity": math.exp(min(val, 50))}
        state = self.state
        if not math.isfinite(val):
            raise NonFiniteLossError(
                f"the validation loss became NaN/Inf at step {state.step}; nothing was saved from this step. "
                "Lower train.lr, keep train.max_grad_norm set, or check the validation data"
            )
        train_loss = sum(state.train_losses) / len(state.train_losses) if state.train_losses else None
        state.train_losses = []
        verdict = judge(state, self.best, val, metrics, train_loss, self.cfg.overfit_patience)
        if verdict.is_best:
            self.best_path.parent.mkdir(exist_ok=True)
            ckpt.save_weights_atomically(ckpt.trainable_state(s.model, self.names), self.best_path)
        if verdict.overfit_warning:
            err.print(
                f"[yellow]warning:[/] possible overfitting at step {state.step}: val {self.best.name} got worse "
                f"while the train loss fell, {state.overfit_streak} evaluations in a row (best: step "
                f"{state.best_step}, whose weights are kept)",
                highlight=False,
            )
        extra = {f"val_{name}": value for name, value in metrics.items() if math.isfinite(value)}
        self.log.write(step=state.step, val_loss=val, **extra, **verdict.log)
        self.eval_seconds += time.perf_counter() - started
        if state.step > 0:
            for hook in s.on_evaluate:
                self.stop_reason = self.stop_reason or hook(state, val, metrics, state.step >= self.total)
        return val

    def save(self) -> Path:
        return ckpt.save_checkpoint(
            self.ckpt_dir,
            self.setup.model,
            self.optimizer,
            self.scheduler,
            self.state,
            self.cfg.keep_checkpoints,
            self.names,
        )

    def should_stop_early(self) -> bool:
        patience = self.cfg.early_stopping_patience
        if self.stop_reason is None and patience is not None and self.state.evals_since_best >= patience:
            self.stop_reason = "early_stopping"
        return self.stop_reason is not None

    def run(self) -> LoopResult:
        s, state = self.setup, self.state
        s.model.train()
        if state.step == 0 and state.best_val_loss is None:
            state.base_val_loss = self.evaluate()
            self.eval_seconds = 0.0  # the base evaluation happens before the training clock starts
        start, stopped_early, first_step = time.perf_counter(), False, state.step
        with _StopSignal(self.ckpt_dir) as stop, step_progress(err) as bar:
            bar.start(self.total, state.step)
            while state.step < self.total and not stopped_early:
                windows = _step_windows(s, state.epoch)
                for window in windows[_windows_done(windows, state.micro_batch) :]:
                    stopped_early = self._one_step(window, stop, bar)
                    if stopped_early or state.step >= self.total:
                        break
                else:
                    state.epoch, state.micro_batch = state.epoch + 1, 0
        elapsed = time.perf_counter() - start
        return LoopResult(
            state, self.total, stopped_early, elapsed, self.eval_seconds, state.step - first_step, self.stop_reason
        )

    def _one_step(self, window: list[list[int]], stop: _StopSignal, bar: StepProgress) -> bool:
        state, t0 = self.state, time.perf_counter()
        for hook in self.setup.before_step:
            hook(state)
        stats, self.forward_budget = step_with_backoff(
            self.setup, window, self.optimizer, state.step + 1, self.forward_budget
        )
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        state.step, state.micro_batch = state.step + 1, state.micro_batch + len(window)
        state.tokens_seen += stats.input_tokens
        state.padded_tokens_seen += stats.padded_tokens
        state.train_losses.append(stats.loss)
        tps = stats.input_tokens / max(time.perf_counter() - t0, 1e-9)
        self.log.write(
            step=state.step,
            epoch=state.epoch,
            train_loss=stats.loss,
            lr=lr,
            grad_norm=stats.grad_norm,
            tokens=stats.input_tokens,
            trained_tokens=stats.trained_tokens,
            tokens_per_s=round(tps, 1),
            peak_rss_mb=peak_rss_mb(),
            **stats.extra,
        )
        if self.cfg.trim_memory_every and state.step % self.cfg.trim_memory_every == 0:
            release_freed_memory()
        val = None
        if state.step % self.cfg.eval_every == 0 or state.step == self.total:
            val = self.evaluate()
        if state.step % self.cfg.save_every == 0 or state.step == self.total:
            self.save()
        bar.update(state.step, f"{stats.loss:.3f}", f"{tps:.0f}", f"{val:.3f}" if val is not None else None)
        for hook in self.setup.hooks:
            hook(state)
        if stop.signum is not None:
            path = self.save()
            raise TrainingInterrupted(state.step, str(path), exit_code=128 + stop.signum)
        return self.should_stop_early()


def run_training(setup: LoopSetup, resume_from: Path | None = None) -> LoopResult:
    """Train until the step budget or early stopping; leaves the best weights in `run_dir/best`."""
    return _Trainer(setup, resume_from).run()
