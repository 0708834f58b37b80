"""The shared numerics: masking, token counting and loss normalisation. Every method and evaluation uses these.

The loss of an optimizer step is the sum of per-token cross-entropies over every micro-batch of the step divided
by the number of trained tokens in the whole step. Dividing each micro-batch by its own token count (the common
bug) weights short micro-batches too much under gradient accumulation.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.data.tokenize import IGNORE_INDEX

_LOGIT_CHUNK = 512  # supervised positions per lm_head call: one fp32 logits block stays ~100 MB at 49k vocab


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """Targets aligned with the logits of positions 0..T-2 (position t predicts token t+1)."""
    return labels[:, 1:]


def count_trainable(labels: torch.Tensor) -> int:
    """Number of tokens that carry a loss in a batch of labels."""
    return int((shifted_targets(labels) != IGNORE_INDEX).sum())


def count_step_tokens(micro_batches: Sequence[dict[str, torch.Tensor]]) -> int:
    """Trained tokens across all micro-batches of one optimizer step: the loss denominator."""
    return sum(count_trainable(mb["labels"]) for mb in micro_batches)


def _unwrap(model: nn.Module) -> nn.Module:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def is_prompt_learning(model: nn.Module) -> bool:
    """True for PEFT prompt/prefix tuning, whose virtual tokens only exist inside `PeftModel.forward`."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The transformer body and lm_head, when logits can be computed for selected positions only."""
    if is_prompt_learning(model):
        return None  # calling the base's decoder directly would skip the soft prompt / prefix
    base = _unwrap(model)
    config = getattr(base, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None  # these models post-process logits inside forward(); use the full forward
    get_decoder, get_head = getattr(base, "get_decoder", None), getattr(base, "get_output_embeddings", None)
    if not (callable(get_decoder) and callable(get_head)):
        return None
    decoder, head = get_decoder(), get_head()
    return (decoder, head) if decoder is not None and head is not None else None


_CAUSAL_DECODERS: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def is_causal_decoder(decoder: nn.Module) -> bool:
    """True when every attention module of `decoder` declares itself causal (transformers' `is_causal`)."""
    if decoder not in _CAUSAL_DECODERS:
        flags = [m.is_causal for m in decoder.modules() if isinstance(getattr(m, "is_causal", None), bool)]
        _CAUSAL_DECODERS[decoder] = bool(flags) and all(flags)
    return _CAUSAL_DECODERS[decoder]


def is_right_padded(attention_mask: torch.Tensor) -> bool:
    """True when every row is its tokens followed only by padding (no gaps, no left padding)."""
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def model_inputs(batch: dict[str, torch.Tensor], causal: bool = False) -> dict[str, Any]:
    """What the model is called with: a padded batch passes its attention mask, a packed one (no mask) its
    restarting position ids, from which transformers builds the per-example block-diagonal mask. It does so
    only without a KV cache, hence use_cache=False (a model loaded with use_cache on would otherwise attend
    across the packed examples).

    `causal`: the model is a plain causal decoder whose padding positions are never scored. A right-padded
    batch then needs no mask: under the causal mask a real token only sees earlier positions, all real, so its
    output is the same, and attention runs its causal kernel without a padding mask (measured 5-10% faster per
    training step on CPU, docs/performance.md)."""
    mask = batch.get("attention_mask")
    if causal and mask is not None and is_right_padded(mask):
        mask = None
    inputs: dict[str, Any] = {"input_ids": batch["input_ids"], "attention_mask": mask}
    if "position_ids" in batch:
        inputs.update(position_ids=batch["position_ids"], use_cache=False)
    return inputs


def token_loss_sum(
    model: nn.Module, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the trained tokens of a batch, and how many there are.

    The lm_head runs only on positions that have a target: for a 49k vocabulary that is most of the compute and
    memory of the head saved on prompt and padding positions. `label_smoothing` applies in training mode only,
    so validation losses stay plain cross-entropy and comparable across runs.
    """
    targets = shifted_targets(batch["labels"])
    mask = targets != IGNORE_INDEX
    n_tokens = int(mask.sum())
    smoothing = label_smoothing if model.training else 0.0
    parts = _decoder_and_head(model)
    if parts is None:
        logits = model(**model_inputs(batch)).logits
        # Prompt tuning returns logits for its virtual tokens first: the real tokens are the last T positions.
        logits = logits[:, logits.shape[1] - targets.shape[1] - 1 : -1]
        loss = F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum", label_smoothing=smoothing)
        return loss, n_tokens
    decoder, head = parts
    hidden = decoder(**model_inputs(batch, causal=is_causal_decoder(decoder))).last_hidden_state
    selected, wanted = hidden[:, :-1][mask], targets[mask]
    loss = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, selected.shape[0], _LOGIT_CHUNK):
        chunk = head(selected[start : start + _LOGIT_CHUNK]).float()
        part = wanted[start : start + _LOGIT_CHUNK]
        loss = loss + F.cross_entropy(chunk, part, reduction="sum", label_smoothing=smoothing)
    return loss, n_tokens


def completion_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability of each row's labelled tokens, how many there are per row), in fp32.

    The preference losses compare these sums between a chosen and a rejected answer. As in `token_loss_sum`, the
    lm_head runs on labelled positions only, in chunks, so the cost and memory of the full-vocabulary softmax are
    paid for the answer tokens alone.
    """
    targets = shifted_targets(batch["labels"])
    mask = targets != IGNORE_INDEX
    rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]
    wanted = targets[mask]
    if _decoder_and_head(model) is None:
        logits = model(**model_inputs(batch)).logits
        selected_logits = logits[:, logits.shape[1] - targets.shape[1] - 1 : -1][mask]
        token_logps = -F.cross_entropy(selected_logits.float(), wanted, reduction="none")
    else:
        selected, head = _selected_hidden(model, batch, mask)
        chunks = []
        for start in range(0, selected.shape[0], _LOGIT_CHUNK):
            logits = head(selected[start : start + _LOGIT_CHUNK]).float()
            chunks.append(-F.cross_entropy(logits, wanted[start : start + _LOGIT_CHUNK], reduction="none"))
        token_logps = torch.cat(chunks) if chunks else selected.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(mask.shape[0], dtype=torch.float32, device=mask.device).index_add(0, rows, token_logps)
    return sums, mask.sum(dim=1)


def _selected_hidden(
    model: nn.Module, batch: dict[str, torch.Tensor], mask: torch.Tensor
) -> tuple[torch.Tensor, nn.Module]:
    parts = _decoder_and_head(model)
    if parts is None:
        raise ValueError("the KL term needs a decoder with a separate lm_head (not prompt tuning or softcapped logits)")
    decoder, head = parts
    hidden = decoder(**model_inputs(batch, causal=is_causal_decoder(decoder))).last_hidden_state
    return hidden[:, :-1][mask], head


def token_loss_and_kl_sums(
    model: nn.Module,
    reference: Callable[[], contextlib.AbstractContextManager[nn.Module]],
    batch: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(summed cross-entropy, summed KL(reference ‖ model), trained tokens) over a batch's trained positions.

    `reference()` enters the model to compare with (the base: the same weights with the adapter off, or a frozen
    copy); it runs without gradients. Both sums cover the same positions, chunked as in `token_loss_sum`, so the
    caller divides them by the step's token count like any loss.
    """
    targets = shifted_targets(batch["labels"])
    mask = targets != IGNORE_INDEX
    selected, head = _selected_hidden(model, batch, mask)
    with torch.no_grad(), reference() as ref:
        ref_selected, _ = _selected_hidden(ref, batch, mask)
    wanted = targets[mask]
    ce = selected.new_zeros((), dtype=torch.float32)
    kl = selected.new_zeros((), dtype=torch.float32)
    for start in range(0, selected.shape[0], _LOGIT_CHUNK):
        with torch.no_grad(), reference() as ref:  # one chunk of its distribution at a time (~100 MB at 49k vocab)
            ref_head = _decoder_and_head(ref)[1]  # type: ignore[index]  # checked by _selected_hidden
            base = torch.log_softmax(ref_head(ref_selected[start : start + _LOGIT_CHUNK]).float(), dim=-1)
        logp = torch.log_softmax(head(selected[start : start + _LOGIT_CHUNK]).float(), dim=-1)
        ce = ce + F.nll_loss(logp, wanted[start : start + _LOGIT_CHUNK], reduction="sum")
        kl = kl + (base.exp() * (base - logp)).sum()
    return ce, kl, int(mask.sum())


def accumulate_step(
    model: nn.Module,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    precision: contextlib.AbstractContextManager | None = None,
    loss_sum_fn: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, int]] | None = None,
    count_fn: Callable[[dict[str, torch.Tensor]], int] | None = None,
    before_forward: Callable[[dict[str, torch.Tensor]], None] | None = None,
    scale: float = 1.0,
) -> tuple[float, int]:
    """Backpropagate one optimizer step's micro-batches, each scaled by the step's total token count.

    Returns (summed loss, trained tokens); the step's mean loss is their ratio. Gradients accumulate in `.grad`.
    Other objectives (classification: examples instead of tokens) pass their own loss and count functions.
    `scale` weighs this group of micro-batches in a step made of several (replay rows: `train.replay`); the
    group's loss is still normalised by its own token count.
    """
    loss_sum_fn = loss_sum_fn or token_loss_sum
    denominator = sum(count_fn(mb) for mb in micro_batches) if count_fn else count_step_tokens(micro_batches)
    total = 0.0
    if denominator == 0:
        return total, 0
    for batch in micro_batches:
        if before_forward is not None:
            before_forward(batch)
        with precision if precision is not None else contextlib.nullcontext():
            loss_sum, _ = loss_sum_fn(model, batch)
        (loss_sum / denominator * scale).backward()  # x * 1.0 is exact: no scale, no change
        total += float(loss_sum.detach())
    return total, denominator


def mean_loss(loss_sum: float, n_tokens: int) -> float:
    """Token-weighted mean loss; NaN when nothing was scored (never a fake 0.0)."""
    return loss_sum / n_tokens if n_tokens else float("nan")
