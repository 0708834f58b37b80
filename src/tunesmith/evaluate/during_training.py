"""The SFT validation pass during training: the loss on every validation row, plus task metrics of greedy
answers on a fixed subset (`train.eval_metrics` on the first `train.eval_rows` rows with an answer).

Generation is what users will run, so it is what the best checkpoint should be chosen by; the loss alone
misses a model that has learned the wrong format or to ramble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.tokenize import Encoded
from tunesmith.evaluate.scoring import EvalPlan, by_generation, candidate_labels, target_tokens
from tunesmith.train.loss import evaluate_loss
from tunesmith.train.precision import use_bf16

Evaluate = Callable[[nn.Module], tuple[float, dict[str, float]]]


def generation_plan(
    cfg: Config, tokenizer: PreTrainedTokenizerBase, fmt: str, train: Sequence[Example], rows: Sequence[Example]
) -> EvalPlan:
    """Generation-only scoring of `train.eval_metrics` (label metrics read the label each answer names)."""
    labels = candidate_labels(fmt, train, rows)
    max_new = cfg.eval.max_new_tokens
    if labels is not None:
        max_new = min(max_new, max(target_tokens(tokenizer, labels)) + 4)
    return EvalPlan(list(cfg.train.eval_metrics or []), labels, "generation", True, max_new, tuple(cfg.eval.stop))


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
    if not cfg.train.eval_metrics:
        return None
    rows = [e for e in val if e.target is not None][: cfg.train.eval_rows]
    if not rows:
        return None
    plan = generation_plan(cfg, tokenizer, fmt, train, rows)
    prompts = [list(e.prompt_messages) for e in rows]
    bf16 = use_bf16(cfg.train.precision)

    def evaluate(model: nn.Module) -> tuple[float, dict[str, float]]:
        loss = evaluate_loss(model, val_encoded, pad, cfg.eval.batch_size, bf16)
        scores, _ = by_generation(model, tokenizer, rows, prompts, plan, cfg)
        return loss["loss"], {"perplexity": loss["perplexity"], **scores["metrics"]}

    return evaluate
