"""`tunesmith eval`: the base model and the tuned model side by side on the same data."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.data.prepare import split_examples
from tunesmith.data.tokenize import encode_examples
from tunesmith.errors import UserError
from tunesmith.evaluate.generate import exact_match, generate_all
from tunesmith.evaluate.loss import evaluate_loss
from tunesmith.models import load_causal_lm
from tunesmith.recipes.common import pad_id
from tunesmith.serve.loading import load_run
from tunesmith.train.precision import use_bf16

SHORT_TARGET_TOKENS = 32  # exact match is meaningful for short answers, not for essays


def eval_examples(cfg: Config, data_path: str | None) -> tuple[list[Example], str]:
    """The rows to evaluate on: a given file, or the run's own validation split."""
    if data_path:
        loaded = load_examples(data_path, cfg.data.format, cfg.data.skip_invalid, cfg.data.system_prompt)
        return loaded.examples, data_path
    return split_examples(cfg.data, cfg.run.seed).val, "validation split of the run"


def wants_exact_match(setting: str, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]) -> bool:
    """auto: when the targets are short (median ≤ SHORT_TARGET_TOKENS tokens)."""
    targets = [e.target for e in examples if e.target is not None]
    if setting != "auto":
        return setting == "on" and bool(targets)
    if not targets:
        return False
    return (
        statistics.median(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets)
        <= SHORT_TARGET_TOKENS
    )


def score_model(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    cfg: Config,
    with_exact_match: bool,
) -> dict[str, Any]:
    """Validation loss, perplexity and (optionally) exact match of greedy answers."""
    encoded, _ = encode_examples(tokenizer, examples, cfg.data.max_length)
    bf16 = use_bf16(cfg.train.precision)
    scores: dict[str, Any] = evaluate_loss(model, encoded, pad_id(tokenizer), cfg.eval.batch_size, bf16)
    if with_exact_match:
        rows = [e for e in examples if e.target is not None][: cfg.eval.max_examples]
        answers = generate_all(
            model,
            tokenizer,
            [list(e.prompt_messages) for e in rows],
            cfg.eval.max_new_tokens,
            cfg.eval.batch_size,
            bf16,
        )
        scores["exact_match"] = exact_match(answers, [e.target for e in rows])
        scores["exact_match_n"] = len(rows)
        scores["predictions"] = [
            {"line": e.line, "target": e.target, "answer": a} for e, a in zip(rows, answers, strict=True)
        ]
    return scores


def evaluate_run(run_dir: Path, data_path: str | None = None) -> dict[str, Any]:
    """Score base and tuned on the same rows; the base of an adapter run is the same model with adapters off."""
    loaded = load_run(run_dir)
    cfg = loaded.config
    assert cfg is not None
    examples, source = eval_examples(cfg, data_path)
    if not examples:
        raise UserError(f"{source}: no rows to evaluate")
    em = wants_exact_match(cfg.eval.exact_match, loaded.tokenizer, examples)
    tuned = score_model(loaded.model, loaded.tokenizer, examples, cfg, em)
    if loaded.is_adapter:
        with loaded.model.disable_adapter():
            base = score_model(loaded.model, loaded.tokenizer, examples, cfg, em)
    else:
        base_model = load_causal_lm(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
        base = score_model(base_model, loaded.tokenizer, examples, cfg, em)
    return {
        "run": str(run_dir),
        "data": source,
        "rows": len(examples),
        "base_model": cfg.model.name,
        "base": base,
        "tuned": tuned,
    }


def report_table(report: dict[str, Any]) -> Table:
    """Base vs tuned as a rich table."""
    table = Table(title=f"{report['run']} · {report['data']} · {report['rows']} rows")
    for col in ("metric", f"base ({report['base_model']})", "tuned", "change"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for key, label, fmt in (
        ("loss", "val loss", "{:.4f}"),
        ("perplexity", "perplexity", "{:.2f}"),
        ("exact_match", "exact match", "{:.1%}"),
    ):
        if key in report["tuned"]:
            b, t = report["base"][key], report["tuned"][key]
            change = fmt.format(t - b) if key != "exact_match" else f"{(t - b) * 100:+.1f} pts"
            table.add_row(label, fmt.format(b), fmt.format(t), change)
    return table
