"""Layer-wise learning-rate decay (discriminative learning rates): lower layers learn more slowly.

The head (final norm, untied lm_head) gets the full `train.lr`; the top layer `lr * decay`, layer i
`lr * decay ** (N - i)` and the embeddings the lowest, `lr * decay ** (N + 1)`. A tied lm_head is the embedding
matrix, so it learns at the embeddings' rate. The scheduler (a LambdaLR) multiplies every group's own initial
rate by the same factor, so the ratios hold through warmup and decay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field
from torch import nn

from tunesmith.config.schema import MethodSection, TrainConfig
from tunesmith.methods import full
from tunesmith.methods.base import LoopHooks, Method, load_whole
from tunesmith.methods.layers import EMBEDDINGS, layer_groups


class LayerwiseLrDecayConfig(MethodSection):
    name: Literal["layerwise_lr_decay"] = "layerwise_lr_decay"
    decay: float = Field(
        0.8, gt=0, le=1, description="Each layer's learning rate is the next higher one's times this; head: full."
    )


def lr_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Learning-rate multiplier of each parameter group (see the module docstring)."""
    groups = layer_groups(model)
    n = sum(name.startswith("layers.") for name in groups)
    scales = {name: decay ** (n - int(name.split(".")[1])) for name in groups if name.startswith("layers.")}
    return {name: scales.get(name, decay ** (n + 1) if name == EMBEDDINGS else 1.0) for name in groups}


def _no_decay(name: str, param: nn.Parameter) -> bool:
    # The same rule as `train.loop.default_param_groups`: no weight decay on biases and norms.
    return param.ndim < 2 or "norm" in name.lower()


def scaled_param_groups(
    model: nn.Module,
    cfg: TrainConfig,
    decay: float,
    include: Callable[[nn.Parameter], bool] = lambda p: p.requires_grad,
) -> list[dict]:
    """Optimizer groups with per-layer learning rates; each group is named (`layers.3`, `layers.3/no_decay`)."""
    scales, out = lr_scales(model, decay), []
    for group, named in layer_groups(model).items():
        chosen = [(n, p) for n, p in named if include(p)]
        for suffix, wanted, weight_decay in (("", False, cfg.weight_decay), ("/no_decay", True, 0.0)):
            params = [p for n, p in chosen if _no_decay(n, p) == wanted]
            if params:
                lr = cfg.lr * scales[group]
                out.append({"params": params, "lr": lr, "weight_decay": weight_decay, "name": group + suffix})
    return out


def loop_hooks(model: nn.Module, cfg: LayerwiseLrDecayConfig) -> LoopHooks:
    """Per-layer learning rates through the optimizer's parameter groups."""
    return LoopHooks(param_groups=lambda m, train_cfg: scaled_param_groups(m, train_cfg, cfg.decay))


METHOD = Method(
    name="layerwise_lr_decay",
    config=LayerwiseLrDecayConfig,
    apply=full.apply,
    export=full.export,
    load=load_whole,
    frozen_base=False,
    loop_hooks=loop_hooks,
)
