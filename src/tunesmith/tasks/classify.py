"""classify: one label per text, predicted by a new classification head on an encoder or a decoder LLM.

Data: `{text, label}` rows (format text_label). Labels are strings ("0", "positive"); their ids follow
`task.labels`, or the sorted labels of the training data. The loss is cross-entropy per example, so a step's
loss is normalised by its example count; evaluation reports accuracy and macro-F1 next to the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.formats.base import RowError, check_text, require
from tunesmith.data.prepare import Prepared, split_examples
from tunesmith.data.tokenize import EncodeReport, pad_id
from tunesmith.errors import DataError, UserError
from tunesmith.evaluate.during_training import CollapseWatch
from tunesmith.methods import base_dtype
from tunesmith.metrics import accuracy, macro_f1
from tunesmith.tasks.base import LoopEvaluate, TaskData, TaskSteps, data_report, label_set, read_rows
from tunesmith.tasks.heads import DECODER_HEAD, batched_logits, head_name, load_head_model, load_trained
from tunesmith.tasks.pooling import set_pooling
from tunesmith.train.numerics import is_prompt_learning
from tunesmith.train.objective import Batch, Objective
from tunesmith.train.precision import use_bf16


@dataclass
class LabeledText:
    """One tokenized text and its label id (-1: unknown, for prediction)."""

    input_ids: list[int]
    label: int
    line: int


def collate(examples: Sequence[LabeledText], pad_id: int) -> Batch:
    """Right-padded ids and mask, and one label per row."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        mask[row, : len(example.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([e.label for e in examples])}


def left_aligned(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch with its padding moved to the left of each row."""
    shifts = mask.shape[1] - mask.sum(-1)
    order = (torch.arange(mask.shape[1])[None, :] - shifts[:, None]) % mask.shape[1]
    return ids.gather(1, order), mask.gather(1, order)


def sequence_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The head's logits for a right-padded batch.

    PEFT prompt tuning hands a decoder `inputs_embeds`, from which transformers cannot find each row's last real
    token: it reads the last column, a padding token in right-padded rows (measured: SST-2 dev at chance). Those
    batches are left-padded, so the last column holds every row's last token.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if is_prompt_learning(model) and head_name(model) == DECODER_HEAD:
        ids, mask = left_aligned(ids, mask)
    return model(input_ids=ids, attention_mask=mask).logits


def loss_sum(model: nn.Module, batch: Batch, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the batch's examples, and how many there are (smoothing in training only)."""
    logits = sequence_logits(model, batch).float()
    smoothing = label_smoothing if model.training else 0.0
    loss = F.cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=smoothing)
    return loss, int(batch["labels"].numel())


def objective(cfg: Config) -> Objective:
    """Per-example cross-entropy: a step is normalised by the examples of its whole accumulation window."""
    return Objective(
        name="classify",
        loss_sum=partial(loss_sum, label_smoothing=cfg.regularization.label_smoothing),
        count=lambda batch: int(batch["labels"].numel()),
        collate=collate,
        length=lambda example: len(example.input_ids),
    )


def text_and_label(example: Example) -> tuple[str, str]:
    """The text and label of a text_label example (the user turn and the answer turn)."""
    return example.prompt_messages[-1]["content"], (example.target or "").strip()


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], label_ids: list[int], lines: list[int], max_length: int
) -> tuple[list[LabeledText], EncodeReport]:
    """Tokenize with the model's special tokens, truncating to `max_length` (truncated lines are listed)."""
    full = tokenizer(texts)["input_ids"]
    report = EncodeReport(examples_in=len(texts), encoded=len(texts))
    encoded = []
    for ids, text, label, line in zip(full, texts, label_ids, lines, strict=True):
        if len(ids) > max_length:
            report.truncated_lines.append(line)
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        encoded.append(LabeledText(list(ids), label, line))
        report.tokens += len(ids)
        report.trainable_tokens += 1  # one scored item per example
    return encoded, report


def prepare(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Load and split `{text, label}` rows, fix the label set, and tokenize."""
    splits = split_examples(cfg.data, cfg.run.seed)
    if splits.format != "text_label":
        raise UserError(
            f"{cfg.data.train}: task classify needs {{text, label}} rows (format text_label), got format "
            f"{splits.format}; set data.format: text_label or use task.name: sft"
        )
    train_pairs = [text_and_label(e) for e in splits.train]
    val_pairs = [text_and_label(e) for e in splits.val]
    labels = label_set(cfg.task.labels, [label for _, label in train_pairs], cfg.data.train or "")
    label_set(labels, [label for _, label in val_pairs], cfg.data.val or f"{cfg.data.train} (validation rows)")
    index = {label: i for i, label in enumerate(labels)}

    def encode_split(examples: list[Example], pairs: list[tuple[str, str]]) -> tuple[list, EncodeReport]:
        return encode(
            tokenizer,
            [text for text, _ in pairs],
            [index[label] for _, label in pairs],
            [e.line for e in examples],
            cfg.data.max_length,
        )

    train, train_report = encode_split(splits.train, train_pairs)
    val, val_report = encode_split(splits.val, val_pairs)
    report = data_report(splits, train_report, val_report, labels=labels)
    return TaskData(Prepared(splits, train, val, report), labels)


def build_model(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The base model with a new sequence-classification head for the task's labels."""

    model = load_head_model(cfg, "sequence", data.labels or [], pad_id(tokenizer), base_dtype(cfg))
    set_pooling(model, cfg.task.pooling)
    return model


def predictions(
    model: nn.Module, examples: Sequence[LabeledText], pad_id: int, batch_size: int, bf16: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy of the labelled examples, class probabilities [N, labels] in example order)."""
    probs: list[torch.Tensor | None] = [None] * len(examples)
    total = torch.zeros(())
    for idx, batch, logits in batched_logits(model, examples, collate, pad_id, batch_size, bf16, sequence_logits):
        known = batch["labels"] >= 0
        if known.any():
            total += F.cross_entropy(logits[known], batch["labels"][known], reduction="sum")
        for row, i in enumerate(idx):
            probs[i] = logits[row].softmax(-1)
    return total, torch.stack(probs)  # type: ignore[arg-type]


def scores(gold: list[str], predicted: list[str]) -> dict[str, float]:
    """The classification metrics of one evaluation."""
    return {"accuracy": accuracy(gold, predicted), "macro_f1": macro_f1(gold, predicted)}


def evaluate(
    model: nn.Module, val: Sequence[LabeledText], pad_id: int, cfg: Config, labels: list[str] | None
) -> tuple[float, dict[str, float], list[str]]:
    """Mean validation cross-entropy, with accuracy and macro-F1, in one pass; and the predicted labels."""
    bf16 = use_bf16(cfg.train.precision)
    total, probs = predictions(model, val, pad_id, cfg.eval.batch_size, bf16)
    names = labels or []
    predicted = [names[i] for i in probs.argmax(-1).tolist()]
    return float(total) / max(len(val), 1), scores([names[e.label] for e in val], predicted), predicted


def evaluator(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> LoopEvaluate:
    """The loop's validation pass: loss, accuracy, macro-F1, and the collapse check of `tunesmith eval`
    (`CollapseWatch`: one warning at the first pass whose predictions look collapsed)."""
    pad, val, names = pad_id(tokenizer), data.prepared.val, data.labels or []
    watch = CollapseWatch([names[e.label] for e in val])

    def run(model: nn.Module) -> tuple[float, dict[str, float]]:
        loss, metrics, predicted = evaluate(model, val, pad, cfg, names)
        return loss, metrics | watch(predicted, metrics)

    return run


def _row_text(record: dict[str, Any], line: int, path: str) -> str:
    try:
        return check_text(require(record, "text"), "field 'text'")
    except RowError as exc:
        raise DataError(path, line, exc.problem, exc.code) from None


def predict(run_dir: Path, data_path: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """A label and the probability of every label for each `{text}` row; metrics when rows have a `label`."""
    from tunesmith.methods.loading import run_config

    cfg = run_config(run_dir)
    rows = read_rows(data_path)
    model, tokenizer, labels = load_trained(run_dir, cfg, "sequence")
    texts = [_row_text(record, line, data_path) for line, record in rows]
    lines = [line for line, _ in rows]
    examples, _ = encode(tokenizer, texts, [-1] * len(texts), lines, cfg.data.max_length)
    _, probs = predictions(model, examples, pad_id(tokenizer), cfg.eval.batch_size, use_bf16(cfg.train.precision))
    out, gold, chosen = [], [], []
    for (line, record), text, row in zip(rows, texts, probs.tolist(), strict=True):
        best = labels[max(range(len(row)), key=row.__getitem__)]
        result = {"line": line, "text": text, "label": best, "probabilities": dict(zip(labels, row, strict=True))}
        if record.get("label") is not None:
            result["gold"] = str(record["label"]).strip()
            gold.append(result["gold"])
            chosen.append(best)
        out.append(result)
    return out, ({**scores(gold, chosen), "labelled_rows": len(gold)} if gold else {})


STEPS = TaskSteps(prepare=prepare, build_model=build_model, objective=objective, evaluator=evaluator, new_head=True)
