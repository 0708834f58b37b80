"""Batched log-likelihoods of whole texts and next-token distributions after prompts.

A text's score is log p(text | start token), summed over its tokens: the tokenizer's BOS (else EOS) token is the
context, so the first word is scored too and every text is compared on the same footing (as lm-evaluation-harness
scores CrowS-Pairs with an empty context). Texts are length-sorted into right-padded batches; one forward gives
every token's log-probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.data.batching import eval_batches
from tunesmith.data.tokenize import pad_id
from tunesmith.errors import UserError


def start_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The context token every text is scored after."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise UserError("the tokenizer has neither a BOS nor an EOS token to start texts with")
    return token


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    start = start_id(tokenizer)
    return [[start, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]


@torch.no_grad()
def _score_batch(model: nn.Module, rows: Sequence[list[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = ids[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return -(nll * mask[:, 1:]).sum(-1)


def text_logprobs(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int = 16
) -> torch.Tensor:
    """Summed log p(text) of every text (float64 tensor, input order)."""
    rows = encode_texts(tokenizer, texts)
    scores = torch.empty(len(rows), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for idx in eval_batches([len(r) for r in rows], batch_size):
            scores[idx] = _score_batch(model, [rows[i] for i in idx], pad_id(tokenizer)).double()
    finally:
        model.train(was_training)
    return scores


@torch.no_grad()
def next_token_logprobs(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], batch_size: int = 16
) -> torch.Tensor:
    """log p(next token | prompt) over the whole vocabulary, one row per prompt: [len(prompts), vocab]."""
    rows = encode_texts(tokenizer, prompts)
    out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    was_training = model.training
    model.eval()
    try:
        for idx in eval_batches([len(r) for r in rows], batch_size):
            batch = [rows[i] for i in idx]
            width = max(len(r) for r in batch)
            ids = torch.full((len(batch), width), pad_id(tokenizer), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, row in enumerate(batch):  # left padding: the last column is every prompt's last token
                ids[j, width - len(row) :] = torch.tensor(row)
                mask[j, width - len(row) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()
            for j, i in enumerate(idx):
                out[i] = torch.log_softmax(logits[j], dim=-1)
    finally:
        model.train(was_training)
    return torch.stack(out)
