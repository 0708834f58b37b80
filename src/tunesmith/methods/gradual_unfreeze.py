"""Gradual unfreezing (ULMFiT): train the top first, then unfreeze one more layer group on a schedule.

Groups, in the order they unfreeze: the top layer together with the head (final norm and an untied lm_head),
then each layer below it, and last the embeddings (when `unfreeze_embeddings`). SmolLM2 ties its lm_head to
the embeddings: that matrix is the model's largest and feeds every layer, so it counts as embeddings and
unfreezes last, not first (documented in docs/methods.md).

The optimizer holds every scheduled parameter from the start, so checkpoints hold them all and a resume is
exact; a parameter frozen for now has no gradient, so AdamW leaves it (and its weight decay) untouched. The
schedule is a pure function of the train state, applied before every step (the first one after a resume too).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from tunesmith.config.schema import MethodSection, TrainConfig
from tunesmith.methods import full
from tunesmith.methods.base import LoopHooks, Method, load_whole
from tunesmith.methods.layers import EMBEDDINGS, HEAD, layer_groups
from tunesmith.methods.layerwise_lr import scaled_param_groups
from tunesmith.train.checkpoint import TrainState


class GradualUnfreezeConfig(MethodSection):
    name: Literal["gradual_unfreeze"] = "gradual_unfreeze"
    every_steps: int | None = Field(None, ge=1, description="Unfreeze the next layer group every N optimizer steps.")
    every_epochs: int | None = Field(
        None, ge=1, description="Unfreeze the next layer group every N epochs (default 1 when every_steps is unset)."
    )
    unfreeze_embeddings: bool = Field(True, description="Finally unfreeze the embeddings (and a tied lm_head) too.")
    lr_decay: float | None = Field(
        None, gt=0, le=1, description="Also use layer-wise learning rates: each layer's is the one above times this."
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> GradualUnfreezeConfig:
        if self.every_steps is not None and self.every_epochs is not None:
            raise ValueError("set every_steps or every_epochs, not both")
        return self


def unfreeze_order(model: nn.Module, cfg: GradualUnfreezeConfig) -> list[list[nn.Parameter]]:
    """Parameter groups in the order they start training."""
    groups = layer_groups(model)
    n_layers = sum(name.startswith("layers.") for name in groups)
    layers = [[p for _, p in groups[f"layers.{i}"]] for i in reversed(range(n_layers))]
    first = [p for _, p in groups[HEAD]] + layers[0]
    tail = [[p for _, p in groups[EMBEDDINGS]]] if cfg.unfreeze_embeddings and groups[EMBEDDINGS] else []
    return [first, *layers[1:], *tail]


def groups_open(state: TrainState, cfg: GradualUnfreezeConfig) -> int:
    """How many groups train in the step after `state` (one at the start, one more per period)."""
    if cfg.every_steps is not None:
        return 1 + state.step // cfg.every_steps
    return 1 + state.epoch // (cfg.every_epochs or 1)


def _set_open(order: list[list[nn.Parameter]], n_open: int) -> None:
    for i, params in enumerate(order):
        for param in params:
            param.requires_grad_(i < n_open)


def apply(model: nn.Module, cfg: GradualUnfreezeConfig) -> nn.Module:
    """Only the first group trains at the start."""
    for param in model.parameters():
        param.requires_grad_(False)
    _set_open(unfreeze_order(model, cfg), 1)
    return model


def loop_hooks(model: nn.Module, cfg: GradualUnfreezeConfig) -> LoopHooks:
    """Unfreeze on schedule before each step; the optimizer gets every scheduled parameter up front."""
    order = unfreeze_order(model, cfg)
    scheduled = {id(p) for params in order for p in params}

    def before_step(state: TrainState) -> None:
        _set_open(order, groups_open(state, cfg))

    def param_groups(m: nn.Module, train_cfg: TrainConfig) -> list[dict]:
        return scaled_param_groups(m, train_cfg, cfg.lr_decay or 1.0, include=lambda p: id(p) in scheduled)

    return LoopHooks(param_groups=param_groups, before_step=[before_step])


METHOD = Method(
    name="gradual_unfreeze",
    config=GradualUnfreezeConfig,
    apply=apply,
    export=full.export,
    load=load_whole,
    frozen_base=False,
    loop_hooks=loop_hooks,
)
