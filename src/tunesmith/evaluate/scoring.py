"""Score one system (a model with a way of prompting it) on evaluation rows: loss, label likelihood, generation.

`plan_eval` decides once per evaluation what to compute, from the data and `eval.metrics`:
- classification-like rows (text_label, or few distinct short answers) get their candidate labels, and are
  scored both by label likelihood (argmax of log p(label | prompt), `label_scoring`) and by generation (the
  greedy answer mapped onto a label); the headline is label likelihood, which cannot answer off the label set;
- other rows are scored by generation only (exact match, ROUGE-L, BLEU, chrF on the greedy answers);
- perplexity comes from the validation loss (only for zero-shot prompts, where it is the trained objective).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.evaluate.generate import Decoding, eval_decoding, generate_all
from tunesmith.evaluate.label_scoring import label_logprobs
from tunesmith.evaluate.prompt_pass import Clock, PassResult, now, score_and_generate
from tunesmith.metrics import METRICS, normalize_answer
from tunesmith.train.loss import evaluate_loss
from tunesmith.train.numerics import is_prompt_learning, mean_loss
from tunesmith.train.precision import use_bf16

SHORT_TARGET_TOKENS = 32  # exact match is meaningful for short answers, not for essays
MAX_LABELS = 20  # more distinct answers than this is not a label set
MAX_LABEL_WORDS = 4
Scoring = Literal["label_likelihood", "generation"]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class EvalPlan:
    metrics: list[str]  # registry names, in report order
    labels: list[str] | None  # candidate labels of classification-like rows, else None
    scoring: Scoring  # which scoring the headline numbers use
    generate: bool  # compute generation-based metrics
    max_new_tokens: int
    stop: tuple[str, ...] = ()  # eval.stop

    @property
    def decoding(self) -> Decoding:
        return eval_decoding(self.max_new_tokens, self.stop)


def target_tokens(tokenizer: PreTrainedTokenizerBase, targets: Sequence[str]) -> list[int]:
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets]


def candidate_labels(fmt: str, train: Sequence[Example], rows: Sequence[Example]) -> list[str] | None:
    """The label set when the rows look like classification: text_label data, or a few distinct short answers."""
    targets = [e.target for e in (*train, *rows) if e.target is not None]
    distinct = sorted(set(targets))
    if fmt == "text_label" and len(distinct) >= 2:
        return distinct
    short = all(len(t.split()) <= MAX_LABEL_WORDS for t in distinct)
    if 2 <= len(distinct) <= MAX_LABELS and short and len(targets) >= 2 * len(distinct):
        return distinct
    return None


def default_metrics(labels: list[str] | None, short_targets: bool) -> list[str]:
    if labels is not None:
        return ["accuracy", "macro_f1", "perplexity"]
    return ["exact_match", "perplexity"] if short_targets else ["rouge_l", "bleu", "chrf", "perplexity"]


def plan_eval(
    cfg: Config, tokenizer: PreTrainedTokenizerBase, fmt: str, train: Sequence[Example], rows: Sequence[Example]
) -> EvalPlan:
    """What to compute for these rows (see the module docstring); `eval.exact_match: off` turns generation off."""
    targets = [e.target for e in rows if e.target is not None]
    lengths = target_tokens(tokenizer, targets) if targets else []
    short = bool(lengths) and statistics.median(lengths) <= SHORT_TARGET_TOKENS
    labels = candidate_labels(fmt, train, rows) if targets else None
    metrics = list(cfg.eval.metrics or default_metrics(labels, short))
    if cfg.eval.exact_match == "on" and "exact_match" not in metrics:
        metrics.insert(0, "exact_match")
    needs_text = any(METRICS[m].kind in {"text", "label"} for m in metrics)
    generate = bool(targets) and cfg.eval.exact_match != "off" and needs_text
    max_new = cfg.eval.max_new_tokens
    if labels is not None:  # a label needs a few tokens; the rest would be wasted compute
        max_new = min(max_new, max(target_tokens(tokenizer, labels)) + 4)
    scoring: Scoring = "label_likelihood" if labels is not None else "generation"
    return EvalPlan(metrics, labels, scoring, generate, max_new, tuple(cfg.eval.stop))


def as_label(answer: str, labels: Sequence[str]) -> str:
    """The label a generated answer names: equal after normalisation, else the longest label it starts with,
    else the only label it contains as whole words ("The review is negative"); else the answer itself (wrong)."""
    norm = normalize_answer(answer)
    for label in labels:
        if normalize_answer(label) == norm:
            return label
    longest_first = sorted(labels, key=len, reverse=True)
    for label in longest_first:
        if norm.startswith(normalize_answer(label) + " "):
            return label
    padded = f" {norm} "
    named = [label for label in longest_first if f" {normalize_answer(label)} " in padded]
    named = [label for label in named if not any(label != other and label in other for other in named)]
    return named[0] if len(named) == 1 else answer


def _metric_values(plan: EvalPlan, gold: list[str], predicted: list[str], kinds: set[str]) -> dict[str, float]:
    """The plan's metrics of these kinds; label metrics average over the candidate labels when there are some."""
    return {m: METRICS[m](gold, predicted, labels=plan.labels) for m in plan.metrics if METRICS[m].kind in kinds}


def _timed(rows: int, clock: Clock) -> dict[str, float]:
    """Wall and CPU time of a scoring: on a shared machine rows per CPU-second is the steadier speed figure."""
    return {
        "rows": rows,
        "seconds": round(clock.wall, 2),
        "rows_per_s": round(rows / max(clock.wall, 1e-9), 2),
        "cpu_seconds": round(clock.cpu, 2),
        "rows_per_cpu_s": round(rows / max(clock.cpu, 1e-9), 2),
    }


def likelihood_metrics(plan: EvalPlan, rows: Sequence[Example], scores: torch.Tensor) -> tuple[dict, list[str]]:
    """Label metrics of the most likely label of every row, and the predicted labels."""
    assert plan.labels is not None
    predicted = [plan.labels[i] for i in scores.argmax(-1).tolist()]
    return _metric_values(plan, [e.target or "" for e in rows], predicted, {"label"}), predicted


def generation_metrics(plan: EvalPlan, rows: Sequence[Example], answers: list[str]) -> dict[str, float]:
    """Text metrics on the answers, label metrics on the labels they name."""
    gold = [e.target or "" for e in rows]
    values = _metric_values(plan, gold, answers, {"text"})
    if plan.labels is not None:
        values |= _metric_values(plan, gold, [as_label(a, plan.labels) for a in answers], {"label"})
    else:  # no label set: a label metric compares normalised answers
        values |= _metric_values(
            plan, [normalize_answer(g) for g in gold], [normalize_answer(a) for a in answers], {"label"}
        )
    return values


def by_generation(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Example],
    prompts: list[Messages],
    plan: EvalPlan,
    cfg: Config,
) -> tuple[dict[str, Any], list[str]]:
    """Metrics of greedy answers: text metrics on the answers, label metrics on the labels they name."""
    clock, started = Clock(), now()
    answers = generate_all(model, tokenizer, prompts, plan.decoding, cfg.eval.batch_size, use_bf16(cfg.train.precision))
    clock.add(started)
    return {"metrics": generation_metrics(plan, rows, answers), **_timed(len(rows), clock)}, answers


def _label_pass(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    plan: EvalPlan,
    cfg: Config,
    generate_rows: int,
) -> PassResult:
    """Label scores of every prompt and greedy answers of the first `generate_rows`, from one prompt forward per
    batch (`prompt_pass`); prompt-learning models score and generate separately."""
    assert plan.labels is not None
    bf16, batch_size = use_bf16(cfg.train.precision), cfg.eval.batch_size
    if not is_prompt_learning(model):
        return score_and_generate(
            model, tokenizer, prompts, plan.labels, generate_rows, plan.decoding, batch_size, bf16
        )
    started = now()
    scores = label_logprobs(model, tokenizer, prompts, plan.labels, batch_size, bf16=bf16)
    done = PassResult(scores, torch.zeros_like(scores), torch.zeros_like(scores), [])
    started = done.label_time.add(started)
    if generate_rows:
        done.answers = generate_all(model, tokenizer, prompts[:generate_rows], plan.decoding, batch_size, bf16)
        done.generate_time.add(started)
    return done


def loss_from_scores(
    rows: Sequence[Example], labels: Sequence[str], done: PassResult, max_length: int
) -> list[tuple[float, int]] | None:
    """Per row, (summed loss, tokens) as trained, read off the target candidate's label score: the same tokens
    and numerics as `loss_scores`. None unless every row has one assistant turn whose target is a candidate and
    fits `max_length` untruncated (then the loss pass runs)."""
    if not done.target_tokens.any():
        return None
    per_row = []
    for i, row in enumerate(rows):
        if sum(m["role"] == "assistant" for m in row.messages) != 1 or row.target not in labels:
            return None
        c = labels.index(row.target)
        if done.lengths[i, c] > max_length:
            return None
        per_row.append((-float(done.scores[i, c]), int(done.target_tokens[i, c])))
    return per_row


def _loss_entry(loss_sum: float, tokens: int) -> dict[str, float]:
    return {
        "loss": mean_loss(loss_sum, tokens),
        "perplexity": METRICS["perplexity"]([tokens], [loss_sum]),
        "tokens": tokens,
    }


def loss_scores(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, rows: Sequence[Example], cfg: Config, pad: int
) -> dict[str, float]:
    """Validation loss (training numerics), token count and perplexity of the rows as trained (zero-shot)."""
    encoded, _ = encode_examples(tokenizer, rows, cfg.data.max_length)
    result = evaluate_loss(model, encoded, pad, cfg.eval.batch_size, use_bf16(cfg.train.precision))
    tokens = int(result["tokens"])
    return _loss_entry(result["loss"] * tokens, tokens)


def score_system(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Example],
    prompts: list[Messages],
    plan: EvalPlan,
    cfg: Config,
    pad: int | None,
) -> dict[str, Any]:
    """Every score of one system; `pad` given: also the loss and perplexity (zero-shot prompts only).

    `metrics` holds the headline numbers (plan.scoring, plus perplexity); the per-scoring details, timings and
    the generated answers are kept beside them.
    """
    out: dict[str, Any] = {"metrics": {}}
    n = min(len(rows), cfg.eval.max_examples) if plan.generate else 0
    liked: list[str] = []
    answers, done = None, None
    if plan.labels is not None:
        done = _label_pass(model, tokenizer, prompts, plan, cfg, n)
        metrics, liked = likelihood_metrics(plan, rows, done.scores)
        confidence = torch.softmax(done.scores, dim=-1).amax(-1)
        out["label_likelihood"] = {
            "metrics": metrics,
            **_timed(len(rows), done.label_time),
            "predicted": liked,  # per row, in row order: the statistics (intervals, per-class) read these
            "confidence": [round(float(p), 5) for p in confidence],  # softmax probability of the predicted label
        }
        answers, clock = (done.answers, done.generate_time) if n else (None, None)
    elif n:
        clock, started = Clock(), now()
        answers = generate_all(
            model, tokenizer, prompts[:n], plan.decoding, cfg.eval.batch_size, use_bf16(cfg.train.precision)
        )
        clock.add(started)
    if pad is not None:
        derived = loss_from_scores(rows, plan.labels, done, cfg.data.max_length) if done and plan.labels else None
        if derived:
            out |= _loss_entry(sum(loss for loss, _ in derived), sum(tokens for _, tokens in derived))
            out["row_losses"] = [[round(loss, 5), tokens] for loss, tokens in derived]  # for the loss intervals
        else:
            out |= loss_scores(model, tokenizer, rows, cfg, pad)
        out["loss_from_label_scores"] = derived is not None
        if "perplexity" in plan.metrics:
            out["metrics"]["perplexity"] = out["perplexity"]
    if answers is not None:
        assert clock is not None
        out["generation"] = {"metrics": generation_metrics(plan, rows[:n], answers), **_timed(n, clock)}
        if done is not None and done.continued:
            out["generation"]["continued_from_label_scoring"] = done.continued
        out["predictions"] = [
            {"line": e.line, "target": e.target, "answer": a, **({"label": liked[i]} if liked else {})}
            for i, (e, a) in enumerate(zip(rows[:n], answers, strict=True))
        ]
        if "exact_match" in out["generation"]["metrics"]:  # kept at the top for readers of older reports
            out["exact_match"], out["exact_match_n"] = out["generation"]["metrics"]["exact_match"], n
    headline = out.get(plan.scoring)
    if headline is not None:
        out["metrics"] = {**headline["metrics"], **out["metrics"]}
    return out
