"""dpo: preference tuning of a causal LM on `{prompt, chosen, rejected}` rows (DPO or IPO, `task.preference_loss`).

The reference model is the base itself: its log-probs of every answer are computed once, before the method
adds adapters or unfreezes anything, so no second copy of the model is kept (for LoRA as for full fine-tuning).
Validation reports the preference loss, the reward accuracy and margin, and `preference_accuracy` (chosen
answer more likely than the rejected one). Prediction scores both answers of each row under the tuned model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.load import load_examples
from tunesmith.data.preference import PreferencePair, encode_pairs
from tunesmith.data.prepare import Prepared, split_examples
from tunesmith.data.tokenize import pad_id, with_chat_template
from tunesmith.errors import UserError
from tunesmith.methods import base_dtype
from tunesmith.methods.loading import load_run, merged_for_inference
from tunesmith.models import load_causal_lm
from tunesmith.tasks.base import LoopEvaluate, TaskData, TaskSteps, data_report
from tunesmith.train.numerics import completion_logps
from tunesmith.train.precision import inference, threads, use_bf16
from tunesmith.train.preference import collate_pairs, evaluate_pairs, preference_objective, reference_logps

FORMAT_HINT = "task dpo trains on preference rows {prompt, chosen, rejected} (data.format: preference)"


def _pairs(tokenizer: PreTrainedTokenizerBase, examples: list, max_length: int, what: str, source: str) -> tuple:
    pairs, report = encode_pairs(tokenizer, examples, max_length)
    if not pairs:
        raise UserError(
            f"{source}: no {what} pair keeps an answer token on both sides after truncation to "
            f"data.max_length={max_length}; raise data.max_length"
        )
    return pairs, report


def prepare(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Load and split preference rows and encode both answers of each; a file of another format is an error."""
    if active := cfg.forgetting.active():
        raise UserError(
            f"forgetting.{active[0]} does not apply to task dpo: the preference loss already holds the model near "
            "the base (task.beta; smaller lets it move further)"
        )
    with_chat_template(tokenizer)
    splits = split_examples(cfg.data, cfg.run.seed)
    if splits.format != "preference":
        raise UserError(f"{cfg.data.train}: {FORMAT_HINT}; this file reads as format {splits.format}")
    source, max_length = cfg.data.train or "", cfg.data.max_length
    train, train_report = _pairs(tokenizer, splits.train, max_length, "training", source)
    val, val_report = _pairs(tokenizer, splits.val, max_length, "validation", cfg.data.val or source)
    report = data_report(splits, train_report, val_report, unit="pair")
    return TaskData(Prepared(splits, train, val, report), check_tokenizer=tokenizer)  # type: ignore[arg-type]


def build_model(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The causal LM, after it has scored every pair as the reference model (before any method changes it)."""
    model = load_causal_lm(cfg.model.name, dtype=base_dtype(cfg), trust_remote_code=cfg.model.trust_remote_code)
    bf16, pad, seconds = use_bf16(cfg.train.precision), pad_id(tokenizer), {}
    with threads(cfg.train.threads):
        for what, pairs in (("train", data.prepared.train), ("val", data.prepared.val)):
            started = time.perf_counter()
            reference_logps(model, pairs, pad, cfg.eval.batch_size, bf16, what)  # type: ignore[arg-type]
            seconds[what] = round(time.perf_counter() - started, 2)
    data.prepared.report["reference_seconds"] = seconds  # in data_report.json: part of the training cost
    return model


def evaluator(cfg: Config, data: TaskData, tokenizer: PreTrainedTokenizerBase) -> LoopEvaluate:
    """Preference loss, reward accuracy/margin and preference accuracy on the validation pairs."""
    val: list[PreferencePair] = data.prepared.val  # type: ignore[assignment]
    pad, bf16, task = pad_id(tokenizer), use_bf16(cfg.train.precision), cfg.task
    return lambda model: evaluate_pairs(model, val, pad, cfg.eval.batch_size, bf16, task.preference_loss, task.beta)


STEPS = TaskSteps(
    prepare=prepare,
    build_model=build_model,
    objective=lambda cfg: preference_objective(cfg.task.preference_loss, cfg.task.beta),
    evaluator=evaluator,
)


def predict(run_dir: Path, data_path: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each row's summed log-probs of its chosen and rejected answers under the tuned model; the share of rows
    that prefer the chosen one (`preference_accuracy`)."""
    loaded = load_run(run_dir)
    cfg = loaded.config
    assert cfg is not None  # a run always has its config
    loaded_rows = load_examples(data_path, "preference", skip_invalid=False, system_prompt=cfg.data.system_prompt)
    tokenizer = with_chat_template(loaded.tokenizer)
    pairs, _ = encode_pairs(tokenizer, loaded_rows.examples, cfg.data.max_length)
    out: list[dict[str, Any]] = []
    with merged_for_inference(loaded.model) as model, inference(model, use_bf16(cfg.train.precision)):
        for start in range(0, len(pairs), cfg.eval.batch_size):
            chunk = pairs[start : start + cfg.eval.batch_size]
            logps, _ = completion_logps(model, collate_pairs(chunk, pad_id(tokenizer)))
            chosen, rejected = logps.chunk(2)
            for pair, c, r in zip(chunk, chosen.tolist(), rejected.tolist(), strict=True):
                out.append({"line": pair.line, "chosen_logp": c, "rejected_logp": r, "prefers_chosen": c > r})
    if not out:
        return out, {}
    accuracy = sum(row["prefers_chosen"] for row in out) / len(out)
    # a row whose answer is cut away entirely by data.max_length has nothing to score
    unscored = len(loaded_rows.examples) - len(out)
    return out, {"preference_accuracy": accuracy, "scored_rows": len(out), "unscored_rows": unscored}
