"""ner: one BIO tag per word, predicted by a new token-classification head; scored by entity-level F1.

Data: `{tokens, ner_tags}` rows (format tokens_tags). Words are split into sub-tokens by the model's fast
tokenizer (`is_split_into_words`, aligned through `word_ids`): each word's tag goes on its first sub-token, and
the other sub-tokens and the special tokens get IGNORE_INDEX, so the loss counts each word once. A prediction
reads the tag of each word's first sub-token; words cut off by `data.max_length` are predicted `O`.
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
from tunesmith.data.batching import collate
from tunesmith.data.formats.base import RowError, require
from tunesmith.data.formats.tokens_tags import tokens_and_tags, word_list
from tunesmith.data.prepare import Prepared, split_examples
from tunesmith.data.tokenize import EncodeReport, pad_id
from tunesmith.errors import DataError, UserError
from tunesmith.methods import base_dtype
from tunesmith.metrics import entities, entity_scores
from tunesmith.tasks.base import TaskData, TaskSteps, data_report, label_set, on_val_split, read_rows
from tunesmith.tasks.heads import batched_logits, load_head_model, load_trained
from tunesmith.train.numerics import IGNORE_INDEX
from tunesmith.train.objective import Batch, Objective
from tunesmith.train.precision import use_bf16

_PROBE = ["The", "city", "of", "York"]


@dataclass
class TaggedWords:
    """One tokenized sentence: tag ids on first sub-tokens (`labels`), and which word each of those is."""

    input_ids: list[int]
    labels: list[int]  # tag id on each word's first sub-token; IGNORE_INDEX elsewhere (and everywhere if unknown)
    word_ids: list[int]  # word index on each word's first sub-token; -1 elsewhere
    line: int
    n_words: int
    tags: list[str]  # the gold tag of every word ([] when unknown)


def space_before_words(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when words after the first need a leading space to tokenize as they do in running text.

    Byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM2) treat "York" and " York" as different tokens, and
    pre-split words reach them without the space; WordPiece and SentencePiece tokenizers add it themselves.
    """
    natural = tokenizer(" ".join(_PROBE), add_special_tokens=False)["input_ids"]
    split = tokenizer(_PROBE, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    if split == natural:
        return False
    spaced = [_PROBE[0], *(" " + word for word in _PROBE[1:])]
    return tokenizer(spaced, is_split_into_words=True, add_special_tokens=False)["input_ids"] == natural


def align(
    tokenizer: PreTrainedTokenizerBase,
    words: list[str],
    tag_ids: list[int] | None,
    max_length: int,
    spaced: bool = False,
) -> tuple[list[int], list[int], list[int], bool]:
    """(input ids, labels, word index per first sub-token, truncated?) for one sentence."""
    pieces = [words[0], *(" " + word for word in words[1:])] if spaced else words
    enc = tokenizer(pieces, is_split_into_words=True)
    truncated = len(enc["input_ids"]) > max_length
    if truncated:
        enc = tokenizer(pieces, is_split_into_words=True, truncation=True, max_length=max_length)
    labels, firsts, previous = [], [], None
    for word in enc.word_ids():
        first = word is not None and word != previous
        firsts.append(word if first else -1)
        labels.append(tag_ids[word] if first and tag_ids is not None else IGNORE_INDEX)
        previous = word
    return list(enc["input_ids"]), labels, firsts, truncated


def encode(
    tokenizer: PreTrainedTokenizerBase,
    sentences: list[tuple[list[str], list[str]]],
    lines: list[int],
    index: dict[str, int] | None,
    max_length: int,
) -> tuple[list[TaggedWords], EncodeReport]:
    """Align every sentence's tags to sub-tokens; `index` None encodes for prediction (no gold tags)."""
    if not tokenizer.is_fast:
        raise UserError("task ner needs a fast (Rust) tokenizer to map sub-tokens to words; this model has none")
    spaced = space_before_words(tokenizer)
    report = EncodeReport(examples_in=len(sentences), encoded=len(sentences))
    out = []
    for (words, tags), line in zip(sentences, lines, strict=True):
        tag_ids = [index[tag] for tag in tags] if index is not None else None
        ids, labels, firsts, truncated = align(tokenizer, words, tag_ids, max_length, spaced)
        if truncated:
            report.truncated_lines.append(line)
        out.append(TaggedWords(ids, labels, firsts, line, len(words), tags))
        report.tokens += len(ids)
        report.trainable_tokens += sum(1 for w in firsts if w >= 0)  # words that carry a tag
    return out, report


def token_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Per-token logits aligned with the batch's tokens (PEFT prompt tuning returns its virtual tokens first)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits[:, logits.shape[1] - batch["input_ids"].shape[1] :]


def loss_sum(model: nn.Module, batch: Batch, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the tagged first sub-tokens, and how many there are."""
    logits = token_logits(model, batch)
    mask = batch["labels"] != IGNORE_INDEX
    smoothing = label_smoothing if model.training else 0.0
    loss = F.cross_entropy(logits[mask].float(), batch["labels"][mask], reduction="sum", label_smoothing=smoothing)
    return loss, int(mask.sum())


def objective(cfg: Config) -> Objective:
    """Per-word cross-entropy: a step is normalised by the tagged words of its whole accumulation window."""
    return Objective(
        name="ner",
        loss_sum=partial(loss_sum, label_smoothing=cfg.regularization.label_smoothing),
        count=lambda batch: int((batch["labels"] != IGNORE_INDEX).sum()),
        collate=collate,
        length=lambda example: len(example.input_ids),
    )


def prepare(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Load and split `{tokens, ner_tags}` rows, fix the tag set, and align tags to sub-tokens."""
    splits = split_examples(cfg.data, cfg.run.seed)
    if splits.format != "tokens_tags":
        raise UserError(
            f"{cfg.data.train}: task ner needs {{tokens, ner_tags}} rows (format tokens_tags), got format "
            f"{splits.format}"
        )
    train_rows = [tokens_and_tags(e) for e in splits.train]
    val_rows = [tokens_and_tags(e) for e in splits.val]
    labels = label_set(cfg.task.labels, [t for _, tags in train_rows for t in tags], cfg.data.train or "")
    label_set(labels, [t for _, tags in val_rows for t in tags], cfg.data.val or f"{cfg.data.train} (validation)")
    index = {label: i for i, label in enumerate(labels)}
    train, train_report = encode(tokenizer, train_rows, [e.line for e in splits.train], index, cfg.data.max_length)
    val, val_report = encode(tokenizer, val_rows, [e.line for e in splits.val], index, cfg.data.max_length)
    report = data_report(splits, train_report, val_report, labels=labels)
    return TaskData(Prepared(splits, train, val, report), labels)


def build_model(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The base model with a new token-classification head for the tag set."""

    return load_head_model(cfg, "token", data.labels or [], pad_id(tokenizer), base_dtype(cfg))


def tag_words(
    model: nn.Module, examples: Sequence[TaggedWords], labels: list[str], pad_id: int, batch_size: int, bf16: bool
) -> tuple[float, int, list[list[str]], list[list[float]]]:
    """(summed loss over gold-tagged words, their count, predicted tags per word, probability of each tag)."""
    tags: list[list[str]] = [[] for _ in examples]
    confidence: list[list[float]] = [[] for _ in examples]
    total, count = 0.0, 0
    for idx, batch, logits in batched_logits(model, examples, collate, pad_id, batch_size, bf16, token_logits):
        mask = batch["labels"] != IGNORE_INDEX
        if mask.any():
            total += float(F.cross_entropy(logits[mask], batch["labels"][mask], reduction="sum"))
            count += int(mask.sum())
        probs = logits.softmax(-1)
        for row, i in enumerate(idx):
            tags[i], confidence[i] = ["O"] * examples[i].n_words, [0.0] * examples[i].n_words
            for position, word in enumerate(examples[i].word_ids):
                if word >= 0:
                    p, best = probs[row, position].max(-1)
                    tags[i][word], confidence[i][word] = labels[int(best)], float(p)
    return total, count, tags, confidence


def evaluate(
    model: nn.Module, val: Sequence[TaggedWords], pad_id: int, cfg: Config, labels: list[str] | None
) -> tuple[float, dict[str, float]]:
    """Mean validation cross-entropy per tagged word, with entity-level precision, recall and F1."""
    total, count, predicted, _ = tag_words(
        model, val, labels or [], pad_id, cfg.eval.batch_size, use_bf16(cfg.train.precision)
    )
    found = entity_scores([e.tags for e in val], predicted)
    metrics = {"entity_f1": found["f1"], "entity_precision": found["precision"], "entity_recall": found["recall"]}
    return total / max(count, 1), metrics


def _row(record: dict[str, Any], line: int, path: str) -> tuple[list[str], list[str]]:
    """(tokens, gold tags or []) of a prediction row."""
    try:
        words = word_list(require(record, "tokens"), "tokens")
        tags = word_list(record["ner_tags"], "ner_tags") if record.get("ner_tags") is not None else []
    except RowError as exc:
        raise DataError(path, line, exc.problem, exc.code) from None
    if tags and len(tags) != len(words):
        raise DataError(path, line, f"{len(words)} tokens but {len(tags)} ner_tags", "length_mismatch")
    return words, tags


def predict(run_dir: Path, data_path: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Tags per token with their probabilities and the entities they form; entity F1 when rows have ner_tags."""
    from tunesmith.methods.loading import run_config

    cfg = run_config(run_dir)
    rows = read_rows(data_path)
    model, tokenizer, labels = load_trained(run_dir, cfg, "token")
    sentences = [_row(record, line, data_path) for line, record in rows]
    examples, _ = encode(tokenizer, sentences, [line for line, _ in rows], None, cfg.data.max_length)
    bf16 = use_bf16(cfg.train.precision)
    _, _, predicted, confidence = tag_words(model, examples, labels, pad_id(tokenizer), cfg.eval.batch_size, bf16)
    out = []
    for (line, _), (words, gold), tags, probs in zip(rows, sentences, predicted, confidence, strict=True):
        found = [
            {"type": kind, "start": start, "end": end, "text": " ".join(words[start:end])}
            for kind, start, end in sorted(entities(tags), key=lambda e: e[1])
        ]
        out.append({"line": line, "tokens": words, "tags": tags, "probabilities": probs, "entities": found})
        if gold:
            out[-1]["gold"] = gold
    scored = [(gold, tags) for (_, gold), tags in zip(sentences, predicted, strict=True) if gold]
    if not scored:
        return out, {}
    found = entity_scores([g for g, _ in scored], [p for _, p in scored])
    return out, {"entity_f1": found["f1"], "entity_precision": found["precision"], "entity_recall": found["recall"]}


STEPS = TaskSteps(
    prepare=prepare, build_model=build_model, objective=objective, evaluator=on_val_split(evaluate), new_head=True
)
