"""From the data section of a config to tokenized train and validation sets, with a report of every drop."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tunesmith.config.schema import DataConfig
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.data.split import holdout
from tunesmith.data.token_cache import encode_cached, tokenizer_fingerprint
from tunesmith.data.tokenize import Encoded, EncodeReport, encode_examples
from tunesmith.errors import DataError, UserError


@dataclass
class Splits:
    """Examples before tokenization: what evaluation and generation need."""

    train: list[Example]
    val: list[Example]
    format: str
    rejected: list[DataError] = field(default_factory=list)
    data_hash: str = ""


@dataclass
class Prepared:
    splits: Splits
    train: list[Encoded]
    val: list[Encoded]
    report: dict[str, Any]


def file_hash(*paths: str | None) -> str:
    """Content hash of the data files (detects a changed file between train and eval)."""
    digest = hashlib.sha256()
    for path in paths:
        if path:
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def _rejected_rows(rejected: list[DataError]) -> list[dict[str, Any]]:
    return [{"file": e.path, "line": e.line, "code": e.code, "problem": e.problem} for e in rejected]


def split_examples(cfg: DataConfig, seed: int) -> Splits:
    """Load train (and val, or a seeded, group-aware hold-out of train: `tunesmith.data.split.holdout`)."""
    if not cfg.train:
        raise UserError("no training data: set data.train in the config or pass --set data.train=FILE")
    train = load_examples(cfg.train, cfg.format, cfg.skip_invalid, cfg.system_prompt, cfg.max_train_rows)
    rejected = list(train.rejected)
    if cfg.val:
        val_loaded = load_examples(cfg.val, cfg.format, cfg.skip_invalid, cfg.system_prompt)
        train_rows, val_rows = train.examples, val_loaded.examples
        rejected += val_loaded.rejected
    else:
        if len(train.examples) < 2:
            raise UserError(f"{cfg.train}: need at least 2 rows to hold out validation data (or set data.val)")
        # Group-aware: copies (exact or near) of one row never straddle train and val, so no leakage by construction.
        train_index, val_index = holdout(train.examples, cfg, seed, train.format)
        train_rows, val_rows = [train.examples[i] for i in train_index], [train.examples[i] for i in val_index]
    if cfg.max_val_rows:
        val_rows = val_rows[: cfg.max_val_rows]
    return Splits(train_rows, val_rows, train.format, rejected, file_hash(cfg.train, cfg.val))


def _encode(
    tokenizer: PreTrainedTokenizerBase,
    rows: list[Example],
    max_length: int,
    what: str,
    source: str,
    fingerprint: str | None,
) -> tuple[list[Encoded], EncodeReport]:
    """Encode one split (through the tokenization cache when `fingerprint` is given)."""
    try:
        if fingerprint is None:
            encoded, report = encode_examples(tokenizer, rows, max_length)
        else:
            encoded, report, _hit = encode_cached(tokenizer, rows, max_length, fingerprint)
    except ValueError as exc:
        raise UserError(f"{source}: cannot tokenize {what} data: {exc}") from None
    if not encoded:
        raise UserError(
            f"{source}: no {what} example has a trainable token after truncation to "
            f"data.max_length={max_length}; raise data.max_length"
        )
    return encoded, report


def prepare_data(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> Prepared:
    """Load, split and tokenize; the report lists every dropped or truncated row."""
    splits = split_examples(cfg, seed)
    fingerprint = tokenizer_fingerprint(tokenizer) if cfg.cache_tokenized else None
    train, train_report = _encode(tokenizer, splits.train, cfg.max_length, "training", cfg.train or "", fingerprint)
    val_source = cfg.val or cfg.train or ""
    val, val_report = _encode(tokenizer, splits.val, cfg.max_length, "validation", val_source, fingerprint)
    report = {
        "format": splits.format,
        "data_hash": splits.data_hash,
        "rejected_rows": len(splits.rejected),
        "rejected": _rejected_rows(splits.rejected[:200]),
        "train": train_report.as_dict(),
        "val": val_report.as_dict(),
    }
    return Prepared(splits, train, val, report)
