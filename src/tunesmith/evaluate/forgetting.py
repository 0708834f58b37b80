"""Forgetting: what the tuned model lost on general text, next-token predictions and an earlier task.

Each measure runs the base and the tuned model on the same inputs and is reported as base → tuned plus the change:
- perplexity on a general reference corpus (the base model's own answers to diverse prompts by default);
- KL(base ‖ tuned) of the next-token distributions on the same sequences, averaged over scored positions;
- accuracy on an earlier task's labelled rows, when given (label likelihood for classification-like targets,
  else exact match of greedy answers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.config.schema import AuditConfig
from tunesmith.data.batching import collate, eval_batches
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.data.tokenize import Encoded, encode_examples, pad_id
from tunesmith.errors import UserError
from tunesmith.evaluate.generate import Decoding, exact_match, generate_all
from tunesmith.evaluate.label_scoring import accuracy_by_likelihood
from tunesmith.evaluate.model_pair import ModelPair
from tunesmith.evaluate.reference import generated_reference, user_reference
from tunesmith.train.numerics import IGNORE_INDEX, mean_loss

KL_BATCH = 4  # two full-vocabulary logit blocks per batch: keep them small
MAX_LABELS = 20  # up to this many distinct targets, an earlier task is scored as classification


def _perplexity(loss: float) -> float:
    return math.exp(loss) if math.isfinite(loss) and loss < 50 else float("inf")


@torch.no_grad()
def distribution_shift(pair: ModelPair, data: Sequence[Encoded]) -> dict[str, Any]:
    """Loss/perplexity of base and tuned on `data`'s trained tokens, and the mean KL(base ‖ tuned) there.

    Both models see each batch in turn, so no full-vocabulary distributions are kept beyond one batch.
    """
    sums = {"base": 0.0, "tuned": 0.0}
    kl_sum, tokens = 0.0, 0
    for idx in eval_batches([len(e.input_ids) for e in data], KL_BATCH):
        batch = collate([data[i] for i in idx], pad_id(pair.tokenizer))
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE_INDEX
        logp = {}
        for name, ctx in pair.both(merged=False):  # base and tuned alternate batch by batch
            with ctx as model:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logp[name] = torch.log_softmax(logits[:, :-1][keep].float(), dim=-1)
            sums[name] += float(F.nll_loss(logp[name], targets[keep], reduction="sum"))
        kl_sum += float((logp["base"].exp() * (logp["base"] - logp["tuned"])).sum())
        tokens += int(keep.sum())
    out: dict[str, Any] = {"tokens": tokens, "kl_base_tuned": kl_sum / tokens if tokens else float("nan")}
    for name, total in sums.items():
        loss = mean_loss(total, tokens)
        out[name] = {"loss": loss, "perplexity": _perplexity(loss)}
    return out


def _change(base: float, tuned: float) -> dict[str, float]:
    return {"base": base, "tuned": tuned, "change": tuned - base}


def earlier_task_accuracy(pair: ModelPair, path: str, max_rows: int, batch_size: int) -> dict[str, Any]:
    """Accuracy of base and tuned on a labelled file of an earlier task."""
    rows = [e for e in load_examples(path, max_rows=max_rows).examples if e.target is not None]
    if not rows:
        raise UserError(f"{path}: the earlier task needs labelled rows (an answer or label per row)")
    labels = sorted({e.target for e in rows if e.target is not None})
    method = "label likelihood" if 2 <= len(labels) <= MAX_LABELS else "exact match of greedy answers"
    scores = {}
    for name, ctx in pair.both():
        with ctx as model:
            if method == "label likelihood":
                scores[name], _ = accuracy_by_likelihood(model, pair.tokenizer, rows, labels, batch_size)
            else:
                answers = generate_all(
                    model, pair.tokenizer, [list(e.prompt_messages) for e in rows], Decoding(32), batch_size
                )
                scores[name] = exact_match(answers, [e.target or "" for e in rows])
    return {"file": path, "rows": len(rows), "method": method, "accuracy": _change(scores["base"], scores["tuned"])}


def reference_examples(pair: ModelPair, audit: AuditConfig) -> tuple[list[Example], str]:
    if audit.reference:
        return user_reference(audit.reference, audit.max_reference_rows)
    with pair.base() as base:
        return generated_reference(
            base, pair.tokenizer, pair.config.model.name, audit.reference_new_tokens, audit.batch_size
        )


def run_forgetting(pair: ModelPair, audit: AuditConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The forgetting section of audit.json."""
    log(
        "forgetting: reference corpus" + ("" if audit.reference else " (generated by the base model once, then cached)")
    )
    examples, source = reference_examples(pair, audit)
    log(f"forgetting: perplexity and KL on {min(len(examples), audit.max_reference_rows)} reference rows")
    encoded, _ = encode_examples(pair.tokenizer, examples[: audit.max_reference_rows], pair.config.data.max_length)
    if not encoded:
        raise UserError(f"reference corpus {source}: no rows left to score")
    shift = distribution_shift(pair, encoded)
    result: dict[str, Any] = {
        "reference": source,
        "reference_rows": len(encoded),
        "reference_tokens": shift["tokens"],
        "perplexity": _change(shift["base"]["perplexity"], shift["tuned"]["perplexity"]),
        "loss": _change(shift["base"]["loss"], shift["tuned"]["loss"]),
        "kl_base_tuned": shift["kl_base_tuned"],
    }
    if audit.earlier_task:
        log(f"forgetting: earlier task {audit.earlier_task}")
        result["earlier_task"] = earlier_task_accuracy(
            pair, audit.earlier_task, audit.max_earlier_rows, audit.batch_size
        )
    return result
