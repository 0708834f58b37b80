"""pretrain: continued pre-training of a causal LM on raw domain text, packed into full `data.max_length` blocks.

Input: a `.txt` file, where each paragraph (text between blank lines) is a document, or `{text}` rows (format
text), one document per row. Documents are tokenized, joined with EOS after each one, and the token stream is
cut into blocks of exactly `data.max_length` tokens: no padding, every token trained (the tail that does not
fill a block is dropped and counted). Blocks attend across document boundaries, as in GPT-style packing.

Validation: `data.val`, else the last `data.val_fraction` of the documents (a contiguous tail, so no text is in
both splits). Its last, shorter block is kept so all of it is scored. The metric is perplexity.
The pre-training data check (built for labelled rows) is not run: repeated short lines are normal in raw text.
"""

from __future__ import annotations

import bisect
import math
import re
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.config.schema import DataConfig
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.data.prepare import Prepared, Splits, file_hash
from tunesmith.data.tokenize import Encoded, EncodeReport, encode_text_blocks, pad_id
from tunesmith.errors import DataError, UserError
from tunesmith.methods import base_dtype
from tunesmith.methods.loading import load_run, merged_for_inference
from tunesmith.models import load_causal_lm
from tunesmith.tasks.base import TaskData, TaskSteps, data_report, on_val_split
from tunesmith.train.loss import evaluate_loss
from tunesmith.train.objective import Objective
from tunesmith.train.precision import use_bf16
from tunesmith.train.regularization import causal_lm_objective

_BLANK_LINES = re.compile(r"\n(?:[ \t\r]*\n)+")  # one or more blank lines


def paragraphs(text: str) -> list[Example]:
    """The blank-line-separated paragraphs of `text` as documents, each with the line it starts on."""
    documents, offset = [], 0
    for match in [*_BLANK_LINES.finditer(text), None]:
        end = match.start() if match else len(text)
        chunk = text[offset:end]
        if chunk.strip():
            start = offset + len(chunk) - len(chunk.lstrip("\n"))
            documents.append(Example(line=text.count("\n", 0, start) + 1, text=chunk.strip("\n")))
        offset = match.end() if match else len(text)
    return documents


def read_documents(path: str, cfg: DataConfig, max_rows: int | None = None) -> tuple[list[Example], list[DataError]]:
    """Documents from a .txt file (paragraphs) or from `{text}` rows, and the rows rejected on the way."""
    if Path(path).suffix.lower() == ".txt":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read the text file ({exc})") from None
        documents = paragraphs(text)
        if not documents:
            raise UserError(f"{path}: the file holds no text")
        return documents[:max_rows], []
    loaded = load_examples(path, cfg.format, cfg.skip_invalid, None, max_rows)
    if loaded.format != "text":
        raise UserError(
            f"{path}: task pretrain needs raw text: a .txt file or {{text}} rows, got format {loaded.format}"
        )
    return loaded.examples, loaded.rejected


def pack(
    tokenizer: PreTrainedTokenizerBase, documents: list[Example], block: int, keep_remainder: bool = False
) -> tuple[list[Encoded], EncodeReport]:
    """Documents joined with EOS after each, cut into `block`-token pieces; each piece remembers its first line."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("task pretrain needs a tokenizer with an end-of-sequence token to separate documents")
    stream: list[int] = []
    starts, lines = [], []  # where each document begins in the stream, and its source line
    encoded = tokenizer([d.text or "" for d in documents], add_special_tokens=False)["input_ids"]
    for doc, ids in zip(documents, encoded, strict=True):
        starts.append(len(stream))
        lines.append(doc.line)
        stream += [*ids, eos]
    report = EncodeReport(examples_in=len(documents))
    blocks = []
    for offset in range(0, len(stream), block):
        piece = stream[offset : offset + block]
        if len(piece) < block and not keep_remainder:
            break
        blocks.append(Encoded(piece, list(piece), lines[bisect.bisect_right(starts, offset) - 1]))
        report.tokens += len(piece)
        report.trainable_tokens += len(piece) - 1  # the first token of a block has nothing before it
    report.encoded = len(blocks)
    return blocks, report


def prepare(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Read the documents, hold out validation documents, and pack both splits into blocks."""
    data = cfg.data
    if not data.train:
        raise UserError("no training data: set data.train to a .txt file or {text} rows")
    train_docs, rejected = read_documents(data.train, data, data.max_train_rows)
    if data.val:
        val_docs, val_rejected = read_documents(data.val, data)
        rejected += val_rejected
    else:
        if len(train_docs) < 2:
            raise UserError(f"{data.train}: need at least 2 documents to hold out validation text (or set data.val)")
        n_val = max(1, round(len(train_docs) * data.val_fraction))
        train_docs, val_docs = train_docs[:-n_val], train_docs[-n_val:]
    train, train_report = pack(tokenizer, train_docs, data.max_length)
    if not train:
        raise UserError(
            f"{data.train}: the training text has {train_report.tokens or 'fewer'} tokens, less than one block "
            f"of data.max_length={data.max_length}; lower data.max_length or add text"
        )
    val, val_report = pack(tokenizer, val_docs, data.max_length, keep_remainder=True)
    val = val[: data.max_val_rows] if data.max_val_rows else val
    fmt = "txt" if Path(data.train).suffix.lower() == ".txt" else "text"
    splits = Splits(train_docs, val_docs, fmt, rejected, file_hash(data.train, data.val))
    report = data_report(splits, train_report, val_report, block_tokens=data.max_length, val_blocks_used=len(val))
    return TaskData(Prepared(splits, train, val, report), check_data=False)


def build_model(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The causal LM itself: pre-training keeps its own lm_head."""

    return load_causal_lm(cfg.model.name, dtype=base_dtype(cfg), trust_remote_code=cfg.model.trust_remote_code)


def objective(cfg: Config) -> Objective:
    """Next-token cross-entropy on every token (the shared causal-LM objective)."""
    return causal_lm_objective(cfg.regularization.label_smoothing)


def evaluate(
    model: nn.Module, val: list[Encoded], pad_id: int, cfg: Config, labels: list[str] | None
) -> tuple[float, dict[str, float]]:
    """Mean next-token loss over the validation blocks and its perplexity."""
    scores = evaluate_loss(model, val, pad_id, cfg.eval.batch_size, use_bf16(cfg.train.precision))
    return scores["loss"], {"perplexity": math.exp(min(scores["loss"], 50))}


def predict(run_dir: Path, data_path: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Loss and perplexity of every document (each scored alone, in max_length pieces); corpus perplexity."""
    loaded = load_run(run_dir)
    cfg, tokenizer = loaded.config, loaded.tokenizer
    assert cfg is not None
    documents, _ = read_documents(data_path, cfg.data.model_copy(update={"skip_invalid": False}))
    out, total, tokens = [], 0.0, 0
    pad, bf16 = pad_id(tokenizer), use_bf16(cfg.train.precision)
    with merged_for_inference(loaded.model) as model:
        for doc in documents:
            blocks = encode_text_blocks(tokenizer, doc, cfg.data.max_length)
            scores = evaluate_loss(model, blocks, pad, cfg.eval.batch_size, bf16)
            out.append({"line": doc.line, **scores})
            if scores["tokens"]:
                total, tokens = total + scores["loss"] * scores["tokens"], tokens + scores["tokens"]
    loss = total / tokens if tokens else float("nan")
    return out, {"loss": loss, "perplexity": math.exp(min(loss, 50)), "scored_tokens": tokens}


STEPS = TaskSteps(prepare=prepare, build_model=build_model, objective=objective, evaluator=on_val_split(evaluate))
