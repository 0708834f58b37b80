"""Task metrics, registered one line each: `METRICS[name](gold, predicted) -> float`.

Classification metrics take one label per example; `entity_f1` takes one tag sequence per sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunesmith.evaluate.metrics.accuracy import accuracy
from tunesmith.evaluate.metrics.entity_f1 import entities, entity_f1, entity_scores
from tunesmith.evaluate.metrics.macro_f1 import macro_f1
from tunesmith.registry import add_unique

Metric = Callable[[Any, Any], float]
METRICS: dict[str, Metric] = {}


def register(name: str, metric: Metric) -> Metric:
    """Add a metric; names are unique."""
    return add_unique(METRICS, name, metric, "metric")


register("accuracy", accuracy)
register("macro_f1", macro_f1)
register("entity_f1", entity_f1)

__all__ = ["METRICS", "accuracy", "entities", "entity_f1", "entity_scores", "macro_f1", "register"]
