"""LoRA through PEFT: low-rank adapters on the chosen linear layers; the base stays frozen."""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config.schema import LoraConfig
from tunesmith.methods.base import Method, save_with_tokenizer


def apply(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap the model with LoRA adapters (fp32 adapter weights even on a bf16 base)."""
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg, autocast_adapter_dtype=True)


def export(model: nn.Module, tokenizer: PreTrainedTokenizerBase, run_dir: Path) -> Path:
    """Save the adapter in PEFT format (safetensors) with the tokenizer: `PeftModel.from_pretrained` loads it."""
    return save_with_tokenizer(model, tokenizer, run_dir / "adapter")


METHOD = Method(name="lora", apply=apply, export=export, frozen_base=True)
