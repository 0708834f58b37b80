"""Load a model for use: a tuned run folder, or a catalog name / Hub id / local folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.config.load import read_yaml, validate
from tunesmith.data.tokenize import ensure_chat_template
from tunesmith.methods import METHODS
from tunesmith.methods.base import ModelBuilders
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.train.run_dir import find_run
from tunesmith.train.run_folder import RunFolder


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    config: Config | None  # the run's config, when loaded from a run
    is_adapter: bool  # a PEFT model: `model.disable_adapter()` gives the base model


def run_config(run_dir: Path) -> Config:
    config = RunFolder(run_dir).config
    return validate(read_yaml(config), str(config))


def load_run(run_dir: Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """The tuned causal LM of a finished run, loaded the way its method exported it (`Method.load`)."""
    cfg = run_config(run_dir)
    builders = ModelBuilders(
        base=lambda _tokenizer: load_causal_lm(
            cfg.model.name, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code
        ),
        saved=lambda folder: load_causal_lm(str(folder), dtype=dtype),
    )
    model, tokenizer = METHODS[cfg.method.name].load(run_dir, builders)
    ensure_chat_template(tokenizer)
    model.eval()
    return LoadedModel(model, tokenizer, cfg, is_adapter=_is_peft(model))


def _is_peft(model: nn.Module) -> bool:
    from peft import PeftModel  # imported here: `tunesmith validate` reaches this module and skips its ~2 s

    return isinstance(model, PeftModel)


def load_any(name: str, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A run folder (or run name under ./runs), else a base model by catalog name, Hub id or folder."""
    run = find_run(name)
    if run is not None:
        return load_run(run, dtype)
    tokenizer = load_tokenizer(name)
    ensure_chat_template(tokenizer)
    model = load_causal_lm(name, dtype=dtype)
    model.eval()
    return LoadedModel(model, tokenizer, None, is_adapter=False)


def can_merge(model: nn.Module) -> bool:
    """A PEFT LoRA-type adapter (LoRA, DoRA; QLoRA's export loads as LoRA) over fp32 base weights."""
    if not _is_peft(model) or len(model.peft_config) != 1:
        return False
    config = model.peft_config[model.active_adapter]
    if config.is_prompt_learning or config.peft_type != "LORA":  # PeftType is a str enum
        return False
    return all(p.dtype == torch.float32 for n, p in model.named_parameters() if "base_layer" in n)


@contextmanager
def merged_for_inference(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, a LoRA-type adapter is folded into the base weights, so the tuned model runs at its
    base's speed (no adapter matmuls per layer); afterwards it is unfolded, so `disable_adapter()` gives the base
    again. Only over fp32 base weights, where unfolding restores them to rounding (~1e-7 relative); any other
    model (prompt or prefix tuning, a whole model, a bf16 base) runs as it is. Scores match the unmerged model's
    to 1e-4 (tests/unit/test_merged_inference.py)."""
    if not can_merge(model):
        yield model
        return
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()
