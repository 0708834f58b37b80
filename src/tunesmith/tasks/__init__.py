"""Tasks: what a model learns (sft, classify, ner, pretrain, dpo), registered one line each in a plain dict."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.components import register_task_name
from tunesmith.methods.loading import run_config
from tunesmith.registry import add_unique
from tunesmith.tasks import classify, dpo, ner, pretrain, sft
from tunesmith.tasks.base import LANGUAGE_MODEL_COMMANDS, Task, TaskData, TaskSteps, check_serves

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task (so `task.name` accepts it); names are unique."""
    register_task_name(task.name, task.description)
    return add_unique(TASKS, task.name, task, "task")


register(
    Task("sft", "answer chat turns (causal LM, loss on the answers)", sft.predict, sft.STEPS, LANGUAGE_MODEL_COMMANDS)
)
register(Task("classify", "one label per text, new classification head", classify.predict, classify.STEPS))
register(Task("ner", "one BIO tag per word, new token-classification head", ner.predict, ner.STEPS))
register(
    Task(
        "pretrain",
        "continued pre-training on raw text packed into blocks",
        pretrain.predict,
        pretrain.STEPS,
        LANGUAGE_MODEL_COMMANDS,
    )
)
register(
    Task(
        "dpo",
        "prefer the chosen over the rejected answer (preference pairs, causal LM)",
        dpo.predict,
        dpo.STEPS,
        LANGUAGE_MODEL_COMMANDS,
    )
)


def task_of_run(run_dir: Path, command: str) -> Task:
    """The task a run was trained for, once it is known to serve `command` (chat, eval, audit, predict)."""
    task = TASKS[run_config(run_dir).task.name]
    if command != "predict":
        check_serves(task, command, run_dir)
    return task


__all__ = ["TASKS", "Task", "TaskData", "TaskSteps", "register", "task_of_run"]
