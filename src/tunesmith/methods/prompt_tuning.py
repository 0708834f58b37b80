"""Prompt tuning through PEFT: trainable soft-prompt vectors prepended to every input; the model stays frozen.

The loss must go through `PeftModel.forward` (which prepends the prompt); `train.numerics` does that for every
prompt-learning model and scores only the real tokens.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from tunesmith.config.schema import MethodSection
from tunesmith.methods.base import Method, export_adapter, load_adapter
from tunesmith.methods.peft_task import peft_task_type


class PromptTuningConfig(MethodSection):
    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(20, ge=1, description="Trainable soft-prompt vectors prepended to every input.")
    init_text: str | None = Field(
        None, description="Start the soft prompt from this text's token embeddings; null: random initialisation."
    )


def apply(model: nn.Module, cfg: PromptTuningConfig) -> nn.Module:
    """Add `num_virtual_tokens` soft-prompt vectors, started from `init_text` or from random vocabulary rows.

    Random vocabulary rows rather than PEFT's N(0, 1) default: they sit at the scale of real embeddings.
    """
    from peft import PromptTuningConfig as PeftPromptTuningConfig  # imported here: `validate` skips its ~2 s
    from peft import PromptTuningInit, get_peft_model

    text = {"prompt_tuning_init": PromptTuningInit.SAMPLE_VOCAB}
    if cfg.init_text:
        # PEFT tokenizes the text with the model folder's own tokenizer.
        text = {
            "prompt_tuning_init": PromptTuningInit.TEXT,
            "prompt_tuning_init_text": cfg.init_text,
            "tokenizer_name_or_path": model.name_or_path,
        }
    tokens = cfg.num_virtual_tokens
    peft_cfg = PeftPromptTuningConfig(task_type=peft_task_type(model), num_virtual_tokens=tokens, **text)
    return get_peft_model(model, peft_cfg)


METHOD = Method(
    name="prompt_tuning",
    config=PromptTuningConfig,
    apply=apply,
    export=export_adapter,
    load=load_adapter,
    frozen_base=True,
)
