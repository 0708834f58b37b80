"""Rows that stand for what the model should keep: a user's data file, or the base model's own answers to the
audit's built-in prompts (generated once, cached, shared with `tunesmith audit`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tunesmith.config import Config
from tunesmith.config.forgetting import REFERENCE
from tunesmith.data.tokenize import Encoded, encode_examples, ensure_chat_template
from tunesmith.errors import UserError
from tunesmith.evaluate.reference import generated_reference, user_reference
from tunesmith.models import load_causal_lm


@dataclass
class KeptRows:
    rows: list[Encoded]
    source: str
    dropped_lines: list[int] = field(default_factory=list)  # rows left with nothing to train on after encoding

    def report(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": len(self.rows),
            "tokens": sum(len(r.input_ids) for r in self.rows),
            "dropped": len(self.dropped_lines),
            "dropped_lines": self.dropped_lines,
        }


def kept_rows(spec: str, setting: str, cfg: Config, model: nn.Module, tokenizer: Any, max_rows: int) -> KeptRows:
    """Encode the rows of `spec` ('reference' or a data file) as the task encodes its own; `setting` names the
        config key in errors. `model` is the base (before any training step) when the reference is generated, unless
    `forgetting.reference_model` names another model."""
    ensure_chat_template(tokenizer)  # chat rows need one; the task has already warned if it was missing
    if spec == REFERENCE:
        examples, source = generated_reference(
            _reference_model(cfg, model),
            tokenizer,
            _reference_name(cfg),
            cfg.audit.reference_new_tokens,
            cfg.audit.batch_size,
        )
    else:
        examples, source = user_reference(spec, max_rows)
    encoded, report = encode_examples(tokenizer, examples[:max_rows], cfg.data.max_length)
    if not encoded:
        raise UserError(f"{setting}: {source} has no row left with tokens to train on")
    return KeptRows(encoded, source, report.dropped_no_target_lines)


def _reference_name(cfg: Config) -> str:
    return cfg.forgetting.reference_model or cfg.model.name


def _reference_model(cfg: Config, model: nn.Module) -> nn.Module | Callable[[], nn.Module]:
    """The model in memory when the reference is its own answers; else a loader, called only on a cache miss."""
    name = _reference_name(cfg)
    if name == cfg.model.name:
        return model
    return lambda: load_causal_lm(name, trust_remote_code=cfg.model.trust_remote_code).eval()
