"""What a training method is: a small component that prepares a model and knows how to export it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from torch import nn
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Method:
    """A strategy: `apply` makes the right parameters trainable; `export` writes a folder plain HF/PEFT can load."""

    name: str
    apply: Callable[[nn.Module, BaseModel], nn.Module]
    export: Callable[[nn.Module, PreTrainedTokenizerBase, Path], Path]
    frozen_base: bool  # True when the base weights never change (they may then be stored in bf16)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_with_tokenizer(model: nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """Save weights (safetensors) and tokenizer side by side, so plain transformers/peft can load the folder."""
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
