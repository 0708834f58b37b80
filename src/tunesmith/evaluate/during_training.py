"""The SFT validation pass during training: the loss on every validation row, plus `train.eval_metrics` on the
validation rows with an answer, scored as `train.eval_scoring` says.

Classification-like rows (a small label set) are scored by label likelihood, as `tunesmith eval` scores them:
the most probable candidate label of each row, all rows for the price of one prompt forward each, with no answer
that misses the label set. That makes a validation slice of hundreds of rows affordable at every pass, which is
what checkpoint selection and hyperparameter search need (64 rows is one row = 1.6 points of accuracy). Other
rows are scored by greedy generation, on the first `train.eval_rows` (64 by default): the loss alone misses a
model that has learned the wrong format or to ramble.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from rich.markup import escape
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.tokenize import Encoded
from tunesmith.errors import UserError
from tunesmith.evaluate.label_scoring import label_logprobs
from tunesmith.evaluate.label_stats import collapse_warning
from tunesmith.evaluate.scoring import (
    EvalPlan,
    Scoring,
    by_generation,
    candidate_labels,
    likelihood_metrics,
    target_tokens,
)
from tunesmith.metrics import METRICS
from tunesmith.output import warn
from tunesmith.train.loss import evaluate_loss
from tunesmith.train.precision import use_bf16

Evaluate = Callable[[nn.Module], tuple[float, dict[str, float]]]
GENERATION_ROWS = 64  # train.eval_rows' default under generation


def validation_scoring(cfg: Config, labels: list[str] | None) -> Scoring:
    """`train.eval_scoring` resolved for these rows; label likelihood needs a label set and label metrics only."""
    metrics = list(cfg.train.eval_metrics or [])
    label_only = all(METRICS[m].kind == "label" for m in metrics)
    wanted = cfg.train.eval_scoring
    if wanted == "label_likelihood" and (labels is None or not label_only):
        why = "the validation rows have no label set" if labels is None else "some metrics are not label metrics"
        raise UserError(
            f"train.eval_scoring=label_likelihood: {why} (metrics {metrics}); use train.eval_scoring=generation or auto"
        )
    if wanted == "auto":
        return "label_likelihood" if labels is not None and label_only else "generation"
    return wanted


def validation_plan(
    cfg: Config, tokenizer: PreTrainedTokenizerBase, fmt: str, train: Sequence[Example], rows: Sequence[Example]
) -> EvalPlan:
    """What the validation pass scores and how (label metrics under generation read the label each answer names)."""
    labels = candidate_labels(fmt, train, rows)
    scoring = validation_scoring(cfg, labels)
    max_new = cfg.eval.max_new_tokens
    if labels is not None:
        max_new = min(max_new, max(target_tokens(tokenizer, labels)) + 4)
    generate = scoring == "generation"
    return EvalPlan(list(cfg.train.eval_metrics or []), labels, scoring, generate, max_new, tuple(cfg.eval.stop))


def validation_rows(cfg: Config, val: Sequence[Example], scoring: Scoring) -> list[Example]:
    answered = [e for e in val if e.target is not None]
    limit = cfg.train.eval_rows or (len(answered) if scoring == "label_likelihood" else GENERATION_ROWS)
    return answered[:limit]


class CollapseWatch:
    """The collapse check of `tunesmith eval` at every validation pass of label-scored rows after the first. The
    first pass (the base model before any step; a new classification head is random there and often answers one
    label) is not judged: it is the reference for "accuracy up, macro-F1 down". Logs `collapse` (1 or 0) and the
    most predicted label's share; the first collapse prints one warning line."""

    def __init__(self, gold: list[str]) -> None:
        self.gold, self.reference, self.warned = gold, None, False

    def __call__(self, predicted: list[str], metrics: dict[str, float]) -> dict[str, float]:
        top = Counter(predicted).most_common(1)[0][1] / len(predicted) if predicted else 0.0
        if self.reference is None:
            self.reference = dict(metrics)
            return {"collapse": 0.0, "top_label_share": top}
        warning = collapse_warning(self.gold, predicted, self.reference, metrics)
        if warning and not self.warned:
            warn(f"at this validation pass, {escape(warning)}")
            self.warned = True
        return {"collapse": float(warning is not None), "top_label_share": top}


def sft_evaluator(
    cfg: Config,
    tokenizer: PreTrainedTokenizerBase,
    fmt: str,
    train: Sequence[Example],
    val: Sequence[Example],
    val_encoded: Sequence[Encoded],
    pad: int,
) -> Evaluate | None:
    """The loop's `evaluate` callable, or None (the loop's default: loss and perplexity) without eval_metrics."""
    answered = [e for e in val if e.target is not None]
    if not cfg.train.eval_metrics or not answered:
        return None
    plan = validation_plan(cfg, tokenizer, fmt, train, answered)
    rows = validation_rows(cfg, answered, plan.scoring)
    prompts = [list(e.prompt_messages) for e in rows]
    bf16 = use_bf16(cfg.train.precision)

    watch = CollapseWatch([e.target or "" for e in rows])

    def task_metrics(model: nn.Module) -> dict[str, float]:
        if plan.scoring == "generation":
            return by_generation(model, tokenizer, rows, prompts, plan, cfg)[0]["metrics"]
        assert plan.labels is not None
        scores = label_logprobs(model, tokenizer, prompts, plan.labels, cfg.eval.batch_size, bf16=bf16)
        metrics, predicted = likelihood_metrics(plan, rows, scores)
        return metrics | watch(predicted, metrics)

    def evaluate(model: nn.Module) -> tuple[float, dict[str, float]]:
        loss = evaluate_loss(model, val_encoded, pad, cfg.eval.batch_size, bf16)
        return loss["loss"], {"perplexity": loss["perplexity"], **task_metrics(model)}

    return evaluate
