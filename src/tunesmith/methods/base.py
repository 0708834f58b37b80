"""What a training method is: a small component that prepares a model and knows how to export it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config.schema import MethodSection, TrainConfig
from tunesmith.errors import UserError
from tunesmith.methods.layers import try_layer_groups
from tunesmith.models import load_tokenizer
from tunesmith.models.resolve import check_adapter_folder
from tunesmith.train.checkpoint import TrainState
from tunesmith.train.run_folder import RunFolder

ParamGroups = Callable[[nn.Module, TrainConfig], list[dict]]


@dataclass(frozen=True)
class LoopHooks:
    """What a method adds to the training loop: its optimizer parameter groups and per-step hooks."""

    param_groups: ParamGroups | None = None  # None: the loop's default (all trainable parameters)
    before_step: list[Callable[[TrainState], None]] = field(default_factory=list)


def no_loop_hooks(model: nn.Module, cfg: BaseModel) -> LoopHooks:
    """For methods that only choose what trains: the loop's defaults."""
    return LoopHooks()


@dataclass(frozen=True)
class ModelBuilders:
    """What a task gives a method's `load`: how to build the untuned model an adapter sits on (given the
    export's tokenizer), and how to load a whole model saved in a folder. The task knows the model class (causal
    LM, or a body with a classification head); the method knows what its export holds."""

    base: Callable[[PreTrainedTokenizerBase], nn.Module]
    saved: Callable[[Path], nn.Module]


Load = Callable[[Path, ModelBuilders], tuple[nn.Module, PreTrainedTokenizerBase]]


@dataclass(frozen=True)
class Method:
    """A strategy: `apply` makes the right parameters trainable; `export` writes a folder plain HF/PEFT can load;
    `load` reads a finished run's export back for use (evaluation, prediction, chat).

    `config` is the method's own config class (`method:` in the YAML); registering the method registers it.
    `loop_hooks` is called on the applied model and gives the loop the method's parameter groups (e.g. layer-wise
    learning rates) and before-step hooks (e.g. an unfreezing schedule).
    """

    name: str
    config: type[MethodSection]
    apply: Callable[[nn.Module, BaseModel], nn.Module]
    export: Callable[[nn.Module, PreTrainedTokenizerBase, Path], Path]
    load: Load
    frozen_base: bool  # True when the base weights never change (they may then be stored in bf16)
    loop_hooks: Callable[[nn.Module, BaseModel], LoopHooks] = no_loop_hooks


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_with_tokenizer(model: nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """Save weights (safetensors) and tokenizer side by side, so plain transformers/peft can load the folder."""
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def export_adapter(model: nn.Module, tokenizer: PreTrainedTokenizerBase, run_dir: Path) -> Path:
    """Save a PEFT adapter (safetensors) with the tokenizer: `PeftModel.from_pretrained` loads it on the base."""
    return save_with_tokenizer(model, tokenizer, RunFolder(run_dir).adapter)


def _exported(folder: Path, run_dir: Path) -> Path:
    if not folder.is_dir():
        raise UserError(f"{run_dir}: the run has no {folder.name}/ folder yet (did training finish?)")
    return folder


def load_adapter(run_dir: Path, builders: ModelBuilders) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The exported adapter on a freshly built base (safetensors only; a pickle-only folder is refused)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    folder = _exported(RunFolder(run_dir).adapter, run_dir)
    check_adapter_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # our own export: tokenizer files, no weights
    return PeftModel.from_pretrained(builders.base(tokenizer), str(folder), is_trainable=False), tokenizer


def load_whole(run_dir: Path, builders: ModelBuilders) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The exported whole model and its tokenizer."""
    folder = _exported(RunFolder(run_dir).model, run_dir)
    return builders.saved(folder), load_tokenizer(str(folder))


def parameter_report(model: nn.Module) -> dict[str, Any]:
    """Trainable and frozen parameter counts, in total and per group (embeddings, layers.i, head, prompt).

    This is how a method proves what it trains. Tied weights count once; a 4-bit quantized weight counts its
    stored elements (two weights per byte).
    """
    groups: dict[str, dict[str, int]] = {}
    for group, named in try_layer_groups(model).items():
        trainable = sum(p.numel() for _, p in named if p.requires_grad)
        groups[group] = {"trainable": trainable, "frozen": sum(p.numel() for _, p in named) - trainable}
    trainable = sum(g["trainable"] for g in groups.values())
    frozen = sum(g["frozen"] for g in groups.values())
    return {"trainable": trainable, "frozen": frozen, "groups": groups}


def _short(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def format_report(report: dict[str, Any]) -> list[str]:
    """Readable lines of a `parameter_report`; neighbouring layers with the same counts share one line."""
    total = report["trainable"] + report["frozen"]
    lines = [
        f"parameters: {_short(report['trainable'])} trainable of {_short(total)}"
        f" ({100 * report['trainable'] / max(total, 1):.2f}%)"
    ]
    runs: list[tuple[list[str], dict[str, int]]] = []
    for name, counts in report["groups"].items():
        if runs and runs[-1][1] == counts and name.startswith("layers.") and runs[-1][0][-1].startswith("layers."):
            runs[-1][0].append(name)
        else:
            runs.append(([name], counts))
    for names, counts in runs:
        label = names[0] if len(names) == 1 else f"{names[0]}-{names[-1].split('.')[-1]}"
        each = " each" if len(names) > 1 else ""
        lines.append(
            f"  {label:<14} trainable {_short(counts['trainable']):>8}  frozen {_short(counts['frozen']):>8}{each}"
        )
    return lines
