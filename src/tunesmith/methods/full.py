"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config.schema import MethodSection
from tunesmith.methods.base import Method, load_whole, save_with_tokenizer
from tunesmith.train.run_folder import RunFolder


class FullConfig(MethodSection):
    name: Literal["full"] = "full"


def apply(model: nn.Module, cfg: FullConfig) -> nn.Module:
    """Make every parameter trainable."""
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def export(model: nn.Module, tokenizer: PreTrainedTokenizerBase, run_dir: Path) -> Path:
    """Save the whole model (safetensors) with the tokenizer: `AutoModelForCausalLM.from_pretrained` loads it."""
    return save_with_tokenizer(model, tokenizer, RunFolder(run_dir).model)


METHOD = Method(name="full", config=FullConfig, apply=apply, export=export, load=load_whole, frozen_base=False)
