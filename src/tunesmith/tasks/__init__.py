"""Tasks: what a model learns (sft, classify, ner, pretrain), registered one line each in a plain dict."""

from __future__ import annotations

from tunesmith.registry import add_unique
from tunesmith.tasks import classify, ner, pretrain, sft
from tunesmith.tasks.base import Task, TaskData, TaskSteps

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task; names are unique."""
    return add_unique(TASKS, task.name, task, "task")


register(Task("sft", "answer chat turns (causal LM, loss on the answers)", sft.predict, sft.STEPS))
register(Task("classify", "one label per text, new classification head", classify.predict, classify.STEPS))
register(Task("ner", "one BIO tag per word, new token-classification head", ner.predict, ner.STEPS))
register(Task("pretrain", "continued pre-training on raw text packed into blocks", pretrain.predict, pretrain.STEPS))

__all__ = ["TASKS", "Task", "TaskData", "TaskSteps", "register"]
