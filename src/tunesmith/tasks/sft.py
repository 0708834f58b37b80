"""sft: supervised fine-tuning of a causal LM on chat turns; the loss covers the assistant turns only.

Rows of any chat-like format are rendered with the tokenizer's chat template (ChatML when it has none).
Prediction generates each row's answer greedily (the row's prompt through the chat template), and scores exact
match when the row carries a reference answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.detect import detect_format
from tunesmith.data.formats import FORMATS, RowError
from tunesmith.data.io import read_records
from tunesmith.data.prepare import prepare_data
from tunesmith.data.tokenize import pad_id, with_chat_template
from tunesmith.errors import UserError
from tunesmith.evaluate.during_training import sft_evaluator
from tunesmith.evaluate.generate import eval_decoding, exact_match, generate_all
from tunesmith.evaluate.pseudo_label import read_unlabeled
from tunesmith.methods import base_dtype
from tunesmith.methods.loading import load_run, merged_for_inference
from tunesmith.models import load_causal_lm
from tunesmith.tasks.base import LoopEvaluate, TaskData, TaskSteps
from tunesmith.train.precision import use_bf16
from tunesmith.train.regularization import causal_lm_objective
from tunesmith.train.run_folder import RunFolder


def prepare(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Load, split and encode chat rows; the tokenizer gets a ChatML template when it ships none."""

    with_chat_template(tokenizer)
    return TaskData(prepare_data(cfg.data, tokenizer, cfg.run.seed), check_tokenizer=tokenizer)


def build_model(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The causal LM itself: its lm_head is the task's head."""

    return load_causal_lm(cfg.model.name, dtype=base_dtype(cfg), trust_remote_code=cfg.model.trust_remote_code)


def evaluator(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> LoopEvaluate | None:
    """Loss plus generation metrics on a val subset when `train.eval_metrics` asks; else the loop's loss pass."""

    splits = data.prepared.splits
    return sft_evaluator(cfg, tokenizer, splits.format, splits.train, splits.val, data.prepared.val, pad_id(tokenizer))


STEPS = TaskSteps(
    prepare=prepare,
    build_model=build_model,
    objective=lambda cfg: causal_lm_objective(cfg.regularization.label_smoothing),
    evaluator=evaluator,
)


def _reference(fmt: str, record: dict[str, Any], line: int, system_prompt: str | None) -> str | None:
    """The row's own answer, when it has one."""
    try:
        return FORMATS[fmt].to_example(record, line, system_prompt).target
    except RowError:
        return None


def predict(run_dir: Path, data_path: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """A generated answer per row; exact match over the rows that have a reference answer."""
    loaded = load_run(run_dir)
    cfg = loaded.config
    assert cfg is not None  # a run always has its config
    report = RunFolder(run_dir).data_report
    fmt = json.loads(report.read_text())["format"] if report.is_file() else cfg.data.format
    if fmt == "auto":  # a run that serves several formats (a sequence's merged adapter): the rows say which
        fmt = detect_format(read_records(data_path)[0], data_path)
    if fmt in {"text", "auto"}:
        raise UserError(f"{run_dir}: predict for task sft needs a run trained on prompt/answer rows (format {fmt})")
    rows = read_unlabeled(data_path, fmt, cfg.data.system_prompt)
    with merged_for_inference(loaded.model) as model:
        prompts, bf16 = [row.prompt for row in rows], use_bf16(cfg.train.precision)
        decoding = eval_decoding(cfg.eval.max_new_tokens, cfg.eval.stop)
        answers = generate_all(model, loaded.tokenizer, prompts, decoding, cfg.eval.batch_size, bf16)
    out, scored = [], []
    for row, answer in zip(rows, answers, strict=True):
        out.append({"line": row.line, "answer": answer})
        reference = _reference(fmt, row.record, row.line, cfg.data.system_prompt)
        if reference is not None:
            out[-1]["reference"] = reference
            scored.append((answer, reference))
    if not scored:
        return out, {}
    return out, {"exact_match": exact_match(*map(list, zip(*scored, strict=True))), "scored_rows": len(scored)}
