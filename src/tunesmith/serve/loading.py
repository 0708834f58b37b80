"""Load a model for use: a tuned run folder, or a catalog name / Hub id / local folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.config.load import read_yaml, validate
from tunesmith.data.tokenize import ensure_chat_template
from tunesmith.errors import UserError
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.models.resolve import check_adapter_folder
from tunesmith.train.run_dir import CONFIG_FILE


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    config: Config | None  # the run's config, when loaded from a run
    is_adapter: bool  # a PEFT model: `model.disable_adapter()` gives the base model


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def run_config(run_dir: Path) -> Config:
    return validate(read_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))


def load_run(run_dir: Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """The tuned model of a finished run (adapter on its base, or the full model)."""
    cfg = run_config(run_dir)
    adapter, full = run_dir / "adapter", run_dir / "model"
    if adapter.is_dir():
        check_adapter_folder(adapter)
        tokenizer = AutoTokenizer.from_pretrained(adapter)  # our own export: tokenizer files, no weights
        base = load_causal_lm(cfg.model.name, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code)
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=False)
        loaded = LoadedModel(model, tokenizer, cfg, is_adapter=True)
    elif full.is_dir():
        tokenizer = load_tokenizer(str(full))
        model = load_causal_lm(str(full), dtype=dtype)
        loaded = LoadedModel(model, tokenizer, cfg, is_adapter=False)
    else:
        raise UserError(f"{run_dir}: the run has no adapter/ or model/ folder yet (did training finish?)")
    ensure_chat_template(loaded.tokenizer)
    loaded.model.eval()
    return loaded


def load_any(name: str, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A run folder (or run name under ./runs), else a base model by catalog name, Hub id or folder."""
    for candidate in (Path(name), Path("runs") / name):
        if is_run_dir(candidate):
            return load_run(candidate, dtype)
    tokenizer = load_tokenizer(name)
    ensure_chat_template(tokenizer)
    model = load_causal_lm(name, dtype=dtype)
    model.eval()
    return LoadedModel(model, tokenizer, None, is_adapter=False)
