"""Task metrics, registered one line each: `METRICS[name](gold, predicted) -> float`.

Each `Metric` says what it compares (`kind`) and which way is better, so the config can choose metrics by name
and the best checkpoint can be picked by any of them:

| kind | gold / predicted |
|---|---|
| label | one label per example (classification) |
| text | one reference / one generated answer per example |
| tags | one tag sequence per sentence (NER) |
| loss | token counts / summed negative log-likelihoods per example |
| preference | each pair's chosen-answer score / its rejected-answer score (`task: dpo`) |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tunesmith.errors import did_you_mean
from tunesmith.metrics.accuracy import accuracy
from tunesmith.metrics.entity_f1 import entities, entity_f1, entity_scores
from tunesmith.metrics.exact_match import exact_match, normalize_answer
from tunesmith.metrics.macro_f1 import macro_f1
from tunesmith.metrics.perplexity import perplexity
from tunesmith.metrics.preference import reward_accuracy, reward_margin
from tunesmith.metrics.rouge_l import rouge_l
from tunesmith.metrics.sacrebleu_scores import bleu, chrf
from tunesmith.registry import add_unique

Kind = Literal["label", "text", "tags", "loss", "preference"]


@dataclass(frozen=True)
class Metric:
    """A scoring function and how to read it."""

    compute: Callable[[Sequence[Any], Sequence[Any]], float]
    kind: Kind
    higher_is_better: bool = True
    percent: bool = True  # a share in [0, 1], shown as a percentage; False: shown as the number itself
    takes_labels: bool = False  # compute accepts `labels=`: the label set to average over

    def __call__(self, gold: Sequence[Any], predicted: Sequence[Any], labels: Sequence[Any] | None = None) -> float:
        if labels is not None and self.takes_labels:
            return self.compute(gold, predicted, labels=labels)  # type: ignore[call-arg]
        return self.compute(gold, predicted)


METRICS: dict[str, Metric] = {}


def register(name: str, metric: Metric) -> Metric:
    """Add a metric; names are unique."""
    return add_unique(METRICS, name, metric, "metric")


register("accuracy", Metric(accuracy, "label"))
register("macro_f1", Metric(macro_f1, "label", takes_labels=True))
register("entity_f1", Metric(entity_f1, "tags"))
register("exact_match", Metric(exact_match, "text"))
register("rouge_l", Metric(rouge_l, "text"))
register("bleu", Metric(bleu, "text", percent=False))
register("chrf", Metric(chrf, "text", percent=False))
register("perplexity", Metric(perplexity, "loss", higher_is_better=False, percent=False))
register("reward_accuracy", Metric(reward_accuracy, "preference"))
register("reward_margin", Metric(reward_margin, "preference", percent=False))
# chosen vs rejected log-probability under the model itself (no reference): comparable between base and tuned
register("preference_accuracy", Metric(reward_accuracy, "preference"))


def unknown_metric(name: str) -> str | None:
    """None for a registered metric name, else a one-line problem with the nearest known name."""
    if name in METRICS:
        return None
    return f"unknown metric {name!r}." + (did_you_mean(name, METRICS) or f" Known metrics: {', '.join(METRICS)}.")


__all__ = [
    "METRICS",
    "Metric",
    "accuracy",
    "bleu",
    "chrf",
    "entities",
    "entity_f1",
    "entity_scores",
    "exact_match",
    "macro_f1",
    "normalize_answer",
    "perplexity",
    "register",
    "reward_accuracy",
    "reward_margin",
    "rouge_l",
    "unknown_metric",
]
