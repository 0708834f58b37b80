"""LoRA through PEFT: low-rank adapters on the chosen linear layers; the base stays frozen.

`use_dora` (weight-decomposed LoRA) and `use_rslora` (rank-stabilised scaling alpha / sqrt(r)) are PEFT options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from torch import nn

from tunesmith.config.schema import MethodSection
from tunesmith.methods.base import Method, export_adapter, load_adapter
from tunesmith.methods.peft_task import peft_task_options
from tunesmith.train.dropout import use_fast_dropout

if TYPE_CHECKING:  # peft is imported where it is used: validating a config must not pay its ~2 s import.
    from peft import LoraConfig as PeftLoraConfig


class LoraOptions(MethodSection):
    """Adapter options shared by `lora` and `qlora` (field reuse only; each method is its own config)."""

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r)).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field("all-linear", description="Module names to adapt, or 'all-linear'.")
    use_dora: bool = Field(False, description="DoRA: learn each weight's magnitude apart from its direction.")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha / sqrt(r), steadier at high ranks.")


class LoraConfig(LoraOptions):
    name: Literal["lora"] = "lora"


def peft_config(cfg: LoraOptions, model: nn.Module | None = None) -> PeftLoraConfig:
    """The PEFT LoRA config for our (q)lora settings; `model` decides the task type (see `peft_task`)."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        **peft_task_options(model),
    )


def apply(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap the model with LoRA adapters (fp32 adapter weights even on a bf16 base), their input dropout drawn
    by `train.dropout.fast_dropout`."""
    from peft import get_peft_model

    return with_fast_dropout(get_peft_model(model, peft_config(cfg, model), autocast_adapter_dtype=True))


def with_fast_dropout(model: nn.Module) -> nn.Module:
    use_fast_dropout(model)
    return model


METHOD = Method(name="lora", config=LoraConfig, apply=apply, export=export_adapter, load=load_adapter, frozen_base=True)
