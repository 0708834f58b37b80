"""What a task is: the few steps of training that differ between tasks, plus how its model predicts.

The shared recipe (`recipes.train.run_task`) runs the steps in order: prepare the data, build the model with
its head, train with the task's objective, evaluate. A task is one small file that fills in these slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.io import read_records
from tunesmith.data.prepare import Prepared, Splits
from tunesmith.data.tokenize import EncodeReport, pad_id
from tunesmith.errors import UserError
from tunesmith.train.objective import Objective

TASK_FILE = "task.json"  # written next to the exported weights: the task and its label set


@dataclass
class TaskData:
    """Encoded train/val examples (`prepared`), the label set in id order, and how to run the data check."""

    prepared: Prepared
    labels: list[str] | None = None
    check_data: bool = True  # run the pre-training data check on `prepared.splits` (not for raw-text pretrain)
    # Count the check's lengths in this tokenizer's chat-template tokens (sft); None: in words, since a
    # classification row's tokens are not those of a chat template.
    check_tokenizer: PreTrainedTokenizerBase | None = None


# (model, val examples, pad id, config, labels) -> (val loss, metrics to log; `train.best_metric` picks from both)
Evaluate = Callable[[nn.Module, Sequence[Any], int, Config, list[str] | None], tuple[float, dict[str, float]]]
# The loop's validation pass for one run: model -> (val loss, metrics).
LoopEvaluate = Callable[[nn.Module], tuple[float, dict[str, float]]]
# (config, encoded data, tokenizer) -> the run's validation pass; None: the objective's loss and its perplexity.
Evaluator = Callable[[Config, "TaskData", PreTrainedTokenizerBase], LoopEvaluate | None]


@dataclass(frozen=True)
class TaskSteps:
    """The parts of training a task supplies; everything else is the shared recipe."""

    prepare: Callable[[Config, PreTrainedTokenizerBase], TaskData]  # load, split, encode, report drops
    build_model: Callable[[Config, TaskData, PreTrainedTokenizerBase], nn.Module]  # base + head, before the method
    objective: Callable[[Config], Objective]  # loss and normaliser of a batch
    evaluator: Evaluator
    # The model gets a new classification head over `TaskData.labels`: the head trains at `task.head_lr`, and
    # the export carries the label set (task.json) and the summary lists it.
    new_head: bool = False


def on_val_split(evaluate: Evaluate) -> Evaluator:
    """An evaluator that runs `evaluate` on the run's encoded validation split."""

    def make(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> LoopEvaluate:

        pad, val = pad_id(tokenizer), data.prepared.val
        return lambda model: evaluate(model, val, pad, cfg, data.labels)

    return make


# (run folder, data file) -> (one output record per row, metrics when the rows carry gold labels)
Predict = Callable[[Path, str], tuple[list[dict[str, Any]], dict[str, float]]]


# The commands that use a tuned causal language model: they load it with `methods.loading.load_run`.
LANGUAGE_MODEL_COMMANDS = frozenset({"chat", "eval", "audit"})


@dataclass(frozen=True)
class Task:
    """A named task: the steps `tunesmith train` runs, how `tunesmith predict` applies the trained model, and
    which other commands its tuned model serves (`serves`; checked by `check_serves` before anything loads)."""

    name: str
    description: str
    predict: Predict
    steps: TaskSteps
    serves: frozenset[str] = frozenset()


def check_serves(task: Task, command: str, run_dir: Path) -> None:
    """A one-line error when the run's task does not make a model `command` can use."""
    if command not in task.serves:
        others = ", ".join(sorted(task.serves | {"predict"}))
        raise UserError(
            f"{run_dir} is a {task.name} run ({task.description}); `tunesmith {command}` needs a run whose model is "
            f"a language model (task sft, pretrain or dpo). This run's model serves: {others}"
        )


def label_set(configured: list[str] | None, seen: Sequence[str], where: str) -> list[str]:
    """The labels in id order: `task.labels` as given, else the sorted labels seen in training.

    Labels that look like integers sort numerically ("2" before "10").
    """
    if configured is None:
        distinct = set(seen)
        labels = sorted(distinct, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
        if len(labels) < 2:
            raise UserError(f"{where}: the training data has {len(labels)} distinct label(s); need at least 2")
        return labels
    unknown = sorted(set(seen) - set(configured))
    if unknown:
        raise UserError(f"{where}: labels {unknown[:10]} are not in task.labels {configured}")
    return list(configured)


def data_report(splits: Splits, train: EncodeReport, val: EncodeReport, **extra: Any) -> dict[str, Any]:
    """The run's data_report.json: format, hash, rejected rows, what encoding did per split, task extras."""
    return {
        "format": splits.format,
        "data_hash": splits.data_hash,
        "rejected_rows": len(splits.rejected),
        "rejected": [
            {"file": e.path, "line": e.line, "code": e.code, "problem": e.problem} for e in splits.rejected[:200]
        ],
        "train": train.as_dict(),
        "val": val.as_dict(),
        **extra,
    }


def read_rows(path: str) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a file to predict on, as (line, record); the first unreadable row is an error."""
    rows, problems = read_records(path)
    if problems:
        raise problems[0]
    return rows
