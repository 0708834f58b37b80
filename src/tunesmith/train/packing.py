"""Whether a run trains on packed micro-batches (`train.packing`), and a check that the model keeps packed
examples apart.

Packing reuses transformers' own support: with position ids that restart at 0 and no 2-D attention mask, its
`masking_utils` builds a block-diagonal causal mask (`find_packed_sequence_indices`). A model whose code does
not go through that path would silently attend across examples, so before packing a run we compare one packed
forward with the same two sequences run apart: a model that does not isolate them is never packed.
"""

from __future__ import annotations

import torch
from torch import nn

from tunesmith.errors import UserError
from tunesmith.train.numerics import is_prompt_learning
from tunesmith.train.precision import autocast

_PROBE = ([5, 6, 7, 8, 9], [10, 11, 12])  # two short token sequences; ids exist in any real vocabulary


def _logits(model: nn.Module, ids: list[int], positions: list[int]) -> torch.Tensor:
    batch = torch.tensor([ids])
    out = model(input_ids=batch, position_ids=torch.tensor([positions]), attention_mask=None, use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def isolates_packed_examples(model: nn.Module, bf16: bool = False) -> bool:
    """True when a packed forward gives the second sequence the same logits as running it alone.

    The packed result must be much closer to the separate one than a forward that lets the sequences see each
    other (continuous positions): that tolerates bf16 rounding and still catches any leak. `bf16`: run under
    the training autocast, as a bf16 base with fp32 adapters needs.
    """
    first, second = _PROBE
    was_training = model.training
    model.eval()
    try:
        with autocast(bf16):
            alone = _logits(model, second, list(range(len(second))))
            joined = first + second
            packed = _logits(model, joined, [*range(len(first)), *range(len(second))])[len(first) :]
            leaky = _logits(model, joined, list(range(len(joined))))[len(first) :]
    finally:
        model.train(was_training)
    packed_error, leak_error = (packed - alone).abs().max(), (leaky - alone).abs().max()
    return bool(leak_error > 0 and packed_error <= 0.05 * leak_error)


def resolve_packing(mode: str, model: nn.Module, bf16: bool = False) -> bool:
    """Resolve `train.packing` (on, off, auto) for a causal-LM model: on raises when packing would be wrong.
    `bf16`: whether training runs under bf16 autocast (the probe runs as training will)."""
    if mode == "off":
        return False
    reason = None
    if is_prompt_learning(model):
        reason = "prompt/prefix tuning prepends virtual tokens to each row, not to each packed example"
    elif not isolates_packed_examples(model, bf16):
        reason = "this model's attention does not keep packed examples apart (no block-diagonal mask)"
    if reason is not None and mode == "on":
        raise UserError(f"train.packing=on: {reason}; set train.packing=off or auto")
    return reason is None
