"""The retention matrix of a task sequence and what it says (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).

R[i][j] is the score on task j after stage i (stages and tasks in training order); `base[j]` is the untuned
model's score on task j. With T tasks, higher-is-better scores (a lower-is-better metric's differences are
negated, so positive always means better):
- average score: mean_j R[T][j];
- backward transfer BWT: mean over j < T of R[T][j] − R[j][j] (negative: earlier tasks were forgotten);
- forward transfer FWT: mean over j > 1 of R[j−1][j] − base[j] (what earlier stages gave a task before its own);
- forgetting of task j < T: max over stages l in j..T−1 of R[l][j], minus R[T][j]; and its mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.metrics import METRICS

Matrix = Sequence[Sequence[float]]


def _sign(metric: str) -> float:
    return 1.0 if METRICS[metric].higher_is_better else -1.0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def retention_summary(matrix: Matrix, base: Sequence[float], metrics: Sequence[str]) -> dict[str, Any]:
    """Average score, BWT, FWT and the forgetting measure of a complete T×T matrix (see the module docstring)."""
    tasks = len(metrics)
    if len(matrix) != tasks or any(len(row) != tasks for row in matrix) or len(base) != tasks:
        raise ValueError(f"a retention matrix needs {tasks}x{tasks} scores and {tasks} base scores")
    last = tasks - 1
    sign = [_sign(m) for m in metrics]
    backward = [sign[j] * (matrix[last][j] - matrix[j][j]) for j in range(last)]
    forward = [sign[j] * (matrix[j - 1][j] - base[j]) for j in range(1, tasks)]
    forgetting = [
        max(sign[j] * matrix[stage][j] for stage in range(j, last)) - sign[j] * matrix[last][j] for j in range(last)
    ]
    return {
        "average": _mean([matrix[last][j] for j in range(tasks)]),
        "bwt": _mean(backward),
        "fwt": _mean(forward),
        "forgetting": _mean(forgetting),
        "forgetting_per_task": forgetting,
        "bwt_per_task": backward,
    }


def retention_table(names: Sequence[str], rows: Sequence[tuple[str, Sequence[float | None]]], percent: Sequence[bool]):
    """A rich table: one row per stage (and the base, a merged model...), one column per task."""
    from rich.table import Table

    table = Table(title="retention: score on each task (columns) after each stage (rows)")
    table.add_column("after")
    for name in names:
        table.add_column(name, justify="right")
    for label, scores in rows:
        table.add_row(label, *(_cell(s, p) for s, p in zip(scores, percent, strict=True)))
    return table


def _cell(score: float | None, percent: bool) -> str:
    if score is None:
        return "-"
    return f"{100 * score:.1f}%" if percent else f"{score:.3f}"
