"""Partial fine-tuning: freeze the embeddings and the bottom layers (or parameters picked by name); train the rest.

Order of the rules: everything trains, then `freeze_embeddings`, `freeze_layers` and `freeze_patterns` freeze,
then `train_patterns` unfreezes (it wins). On a model whose lm_head is tied to the embeddings (SmolLM2),
freezing the embeddings freezes that lm_head too: it is the same matrix.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from torch import nn

from tunesmith.config.schema import MethodSection
from tunesmith.errors import UserError
from tunesmith.methods import full
from tunesmith.methods.base import Method, load_whole
from tunesmith.methods.layers import EMBEDDINGS, layer_groups


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return patterns


Patterns = Annotated[list[str], AfterValidator(_check_patterns)]


class FreezeConfig(MethodSection):
    name: Literal["freeze"] = "freeze"
    freeze_embeddings: bool = Field(True, description="Freeze the input embeddings (and an lm_head tied to them).")
    freeze_layers: int = Field(0, ge=0, description="Freeze the bottom N transformer layers.")
    freeze_patterns: Patterns = Field(
        default_factory=list, description="Also freeze parameters whose name matches one of these regexes."
    )
    train_patterns: Patterns = Field(
        default_factory=list, description="Train parameters whose name matches one of these regexes (wins over all)."
    )


def _frozen_by_position(model: nn.Module, cfg: FreezeConfig) -> set[str]:
    """Names of parameters in the embeddings (when asked) and in the bottom `freeze_layers` layers."""
    groups = layer_groups(model)
    n_layers = sum(name.startswith("layers.") for name in groups)
    if cfg.freeze_layers > n_layers:
        raise UserError(f"method.freeze_layers is {cfg.freeze_layers} but the model has only {n_layers} layers")
    wanted = [f"layers.{i}" for i in range(cfg.freeze_layers)] + ([EMBEDDINGS] if cfg.freeze_embeddings else [])
    return {name for group in wanted for name, _ in groups[group]}


def apply(model: nn.Module, cfg: FreezeConfig) -> nn.Module:
    """Set requires_grad per the config's rules; fail when nothing would train."""
    frozen = _frozen_by_position(model, cfg)
    freeze = [re.compile(p) for p in cfg.freeze_patterns]
    train = [re.compile(p) for p in cfg.train_patterns]
    for name, param in model.named_parameters():
        trains = name not in frozen and not any(p.search(name) for p in freeze)
        param.requires_grad_(trains or any(p.search(name) for p in train))
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("method freeze: these settings freeze every parameter; nothing would train")
    return model


METHOD = Method(name="freeze", config=FreezeConfig, apply=apply, export=full.export, load=load_whole, frozen_base=False)
