"""A run's tuned model and its base, for audits that compare the two on the same inputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.methods.loading import LoadedModel, load_run, merged_for_inference
from tunesmith.models import load_causal_lm


@dataclass
class ModelPair:
    """The tuned model, plus `base()`: a context in which the base model answers instead.

    For an adapter run the base is the same weights with the adapter disabled (no second copy in memory); a
    full fine-tune loads the base model once, on first use.
    """

    loaded: LoadedModel
    _base: nn.Module | None = field(default=None, repr=False)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.loaded.tokenizer

    @property
    def config(self) -> Config:
        assert self.loaded.config is not None
        return self.loaded.config

    @property
    def tuned(self) -> nn.Module:
        return self.loaded.model

    @contextlib.contextmanager
    def base(self) -> Iterator[nn.Module]:
        if self.loaded.is_adapter:
            with self.loaded.model.disable_adapter():
                yield self.loaded.model
            return
        if self._base is None:
            cfg = self.config
            self._base = load_causal_lm(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
            self._base.eval()
        yield self._base

    def both(self, merged: bool = True) -> Iterator[tuple[str, contextlib.AbstractContextManager[nn.Module]]]:
        """("base", ctx), ("tuned", ctx): score the same inputs with each model in turn. `merged`: the tuned
        model runs with its adapter folded in (`merged_for_inference`); worth it for a whole pass over many rows,
        not for one batch at a time (folding rewrites every adapted weight, each way)."""
        yield "base", self.base()
        yield "tuned", merged_for_inference(self.tuned) if merged else contextlib.nullcontext(self.tuned)


def load_pair(run_dir: Path) -> ModelPair:
    return ModelPair(load_run(run_dir))
