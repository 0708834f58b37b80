"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config.schema import FullConfig
from tunesmith.methods.base import Method, save_with_tokenizer


def apply(model: nn.Module, cfg: FullConfig) -> nn.Module:
    """Make every parameter trainable."""
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def export(model: nn.Module, tokenizer: PreTrainedTokenizerBase, run_dir: Path) -> Path:
    """Save the whole model (safetensors) with the tokenizer: `AutoModelForCausalLM.from_pretrained` loads it."""
    return save_with_tokenizer(model, tokenizer, run_dir / "model")


METHOD = Method(name="full", apply=apply, export=export, frozen_base=False)
