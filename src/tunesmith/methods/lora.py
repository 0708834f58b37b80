"""LoRA through PEFT: low-rank adapters on the chosen linear layers; the base stays frozen.

`use_dora` (weight-decomposed LoRA) and `use_rslora` (rank-stabilised scaling alpha / sqrt(r)) are PEFT options.
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from torch import nn

from tunesmith.config.schema import LoraConfig, QLoraConfig
from tunesmith.methods.base import Method, export_adapter
from tunesmith.methods.peft_task import peft_task_options


def peft_config(cfg: LoraConfig | QLoraConfig, model: nn.Module | None = None) -> PeftLoraConfig:
    """The PEFT LoRA config for our (q)lora settings; `model` decides the task type (see `peft_task`)."""
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
    """Wrap the model with LoRA adapters (fp32 adapter weights even on a bf16 base)."""
    return get_peft_model(model, peft_config(cfg, model), autocast_adapter_dtype=True)


METHOD = Method(name="lora", apply=apply, export=export_adapter, frozen_base=True)
