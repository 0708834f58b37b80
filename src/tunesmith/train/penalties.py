"""Terms the loop adds to the task loss to keep a model near what it was (forgetting mitigation).

- `WeightPenalty`: λ·Σ w·(θ − θ*)² over named weights, once per optimizer step. L2-SP is w = 1 with θ* the
  starting weights; EWC is w = the diagonal Fisher. Its gradient 2λ·w·(θ − θ*) is added to `.grad` directly:
  no autograd graph, no activation memory.
- `KLPenalty`: λ·KL(reference ‖ model) per trained token of the rows it applies to, computed with their
  cross-entropy from the same logits (`numerics.token_loss_and_kl_sums`) and normalised with the step's loss.

Both report their weighted value of the last step, which the loop logs beside the task loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from tunesmith.train.numerics import token_loss_and_kl_sums


def starting_point(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """A fp32 copy of `params` as they are now: the anchor θ* of a weight penalty."""
    return {name: p.detach().float().clone() for name, p in params.items()}


@dataclass
class WeightPenalty:
    name: str  # logged as penalty_<name>
    weight: float
    params: dict[str, nn.Parameter]
    anchors: dict[str, torch.Tensor]  # θ*, fp32
    importance: dict[str, torch.Tensor] | None = None  # w per weight (EWC's Fisher); None: 1

    def _terms(self) -> Iterator[tuple[nn.Parameter, torch.Tensor, torch.Tensor]]:
        """(weight, w·(θ − θ*), θ − θ*) for each weight that trains now (frozen-for-now ones get no gradient)."""
        for key, param in self.params.items():
            if param.requires_grad:
                diff = param.detach().float() - self.anchors[key]
                yield param, diff if self.importance is None else self.importance[key] * diff, diff

    @torch.no_grad()
    def add_gradient(self) -> float:
        """Add the penalty's gradient 2λ·w·(θ − θ*) to `.grad`; returns its value λ·Σ w·(θ − θ*)²."""
        total = 0.0
        for param, weighted, diff in self._terms():
            total += float((weighted * diff).sum())
            grad = (2 * self.weight * weighted).to(param.dtype)
            param.grad = grad if param.grad is None else param.grad.add_(grad)
        return self.weight * total

    @torch.no_grad()
    def value(self) -> float:
        """λ·Σ w·(θ − θ*)² without touching gradients."""
        return self.weight * sum(float((weighted * diff).sum()) for _, weighted, diff in self._terms())


@dataclass
class KLPenalty:
    weight: float
    reference: Callable[[], contextlib.AbstractContextManager[nn.Module]]  # enters the base model
    on_replay: bool  # the replay rows, else the task rows
    name: str = "kl_to_base"
    _kl_sum: float = field(default=0.0, repr=False)
    _tokens: int = field(default=0, repr=False)

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Cross-entropy plus λ·KL, summed over the batch's trained tokens (the objective's loss_sum contract)."""
        ce, kl, tokens = token_loss_and_kl_sums(model, self.reference, batch)
        self._kl_sum += float(kl.detach())
        self._tokens += tokens
        return ce + self.weight * kl, tokens

    def take(self) -> tuple[float, float]:
        """(λ·mean KL per token, λ·summed KL) over the batches since the last call; resets the tally."""
        mean = self._kl_sum / self._tokens if self._tokens else 0.0
        weighted_sum = self.weight * self._kl_sum
        self._kl_sum, self._tokens = 0.0, 0
        return self.weight * mean, weighted_sum


@dataclass
class Penalties:
    weights: list[WeightPenalty] = field(default_factory=list)
    kl: KLPenalty | None = None

    def __bool__(self) -> bool:
        return bool(self.weights) or self.kl is not None

    def shared_anchors(self, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
        """The starting point of `params`, copied once for every weight penalty (EWC and L2-SP share it)."""
        for penalty in self.weights:
            if penalty.params.keys() == params.keys():
                return penalty.anchors
        return starting_point(params)

    def add_weight_gradients(self) -> dict[str, float]:
        """Every weight penalty's gradient into `.grad`; their values by log name."""
        return {f"penalty_{p.name}": p.add_gradient() for p in self.weights}
