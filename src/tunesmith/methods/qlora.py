"""QLoRA: LoRA adapters on a base whose transformer linear layers are stored 4-bit (or 8-bit) by bitsandbytes.

Trains on CPU with bitsandbytes >= 0.50 (its CPU backend; verified with 0.50.2). The 4-bit weights are
dequantized per matmul, so the frozen linear weights take ~4x less memory than bf16 at some cost in step time
(numbers in docs/methods.md). Embeddings, norms and a tied lm_head stay in the base dtype, as in the QLoRA paper.

The layers are quantized in place after loading, with bitsandbytes' own modules (the ones transformers'
`BitsAndBytesConfig` loading creates), so any model the catalog loads can be quantized. The exported adapter is
plain PEFT: it loads on the unquantized base (the usual QLoRA practice; outputs differ by the quantization
error the adapter was trained around).
"""

from __future__ import annotations

import ctypes
import gc
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from tunesmith.compat.environment import keep_4bit_trainable_on_cpu, quiet_int8_cast_notice
from tunesmith.errors import UserError
from tunesmith.methods import lora
from tunesmith.methods.base import Method, export_adapter, load_adapter
from tunesmith.methods.layers import transformer_layers
from tunesmith.methods.lora import LoraOptions


class QLoraConfig(LoraOptions):
    name: Literal["qlora"] = "qlora"
    bits: Literal[4, 8] = Field(4, description="Storage of the frozen base's linear layers: 4-bit or 8-bit.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit number format (nf4 suits normal weights).")
    double_quant: bool = Field(True, description="Quantize the 4-bit scales too (saves ~0.4 bit per weight).")

    @model_validator(mode="after")
    def _dora_needs_4bit(self) -> QLoraConfig:
        if self.use_dora and self.bits == 8:
            raise ValueError("use_dora needs bits: 4 (bitsandbytes 8-bit layers do not support DoRA on CPU)")
        return self


def _bitsandbytes() -> Any:
    try:
        import bitsandbytes
    except ImportError:
        raise UserError(
            "method qlora needs bitsandbytes (>= 0.50, which trains on CPU too): pip install 'tunesmith[qlora]'"
        ) from None
    return bitsandbytes


def _quantized(bnb: Any, linear: nn.Linear, cfg: QLoraConfig, compute_dtype: torch.dtype) -> nn.Module:
    """A bitsandbytes copy of `linear`; the weight is quantized when the module is moved to its device."""
    has_bias, weight = linear.bias is not None, linear.weight.data
    if cfg.bits == 4:
        new = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            compute_dtype=compute_dtype,
            compress_statistics=cfg.double_quant,
            quant_type=cfg.quant_type,
            device="meta",  # no throw-away fp32 weight: the real one is assigned next
        )
        new.weight = bnb.nn.Params4bit(
            weight, requires_grad=False, compress_statistics=cfg.double_quant, quant_type=cfg.quant_type
        )
    else:
        # threshold 6.0: outlier features stay in 16-bit (LLM.int8()), transformers' default too.
        new = bnb.nn.Linear8bitLt(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            has_fp16_weights=False,
            threshold=6.0,
            device="meta",
        )
        new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    if has_bias:
        new.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return new.to(weight.device)


def quantize_layers(model: nn.Module, cfg: QLoraConfig) -> int:
    """Replace every nn.Linear inside the transformer layers by its quantized copy; returns how many."""
    bnb = _bitsandbytes()
    replaced = 0
    for layer in transformer_layers(model):
        targets = [(name, m) for name, m in layer.named_modules() if type(m) is nn.Linear]
        for name, linear in targets:
            layer.set_submodule(name, _quantized(bnb, linear, cfg, linear.weight.dtype))
            replaced += 1
    if not replaced:
        raise UserError(f"method qlora: {type(model).__name__} has no nn.Linear layers to quantize; use lora")
    _return_freed_memory()
    return replaced


def _return_freed_memory() -> None:
    """Give the freed full-precision weights back to the OS.

    glibc keeps freed heap memory for reuse, so without this the process stays as large as the unquantized
    model (measured on smollm2-135m: RSS 1120 MB after quantizing, 563 MB after trimming, 704 MB unquantized).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def apply(model: nn.Module, cfg: QLoraConfig) -> nn.Module:
    """Quantize the base's linear layers, then wrap the model with LoRA adapters (fp32 adapter weights)."""
    quantize_layers(model, cfg)
    keep_4bit_trainable_on_cpu(model)
    if cfg.bits == 8:
        quiet_int8_cast_notice()
    from peft import get_peft_model  # imported here: `validate` skips its ~2 s

    return lora.with_fast_dropout(get_peft_model(model, lora.peft_config(cfg, model), autocast_adapter_dtype=True))


METHOD = Method(
    name="qlora", config=QLoraConfig, apply=apply, export=export_adapter, load=load_adapter, frozen_base=True
)
