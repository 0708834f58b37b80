"""Validation loss and perplexity, computed with the shared training numerics."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from tunesmith.data.batching import eval_batches
from tunesmith.data.tokenize import Encoded
from tunesmith.train.numerics import mean_loss
from tunesmith.train.objective import CAUSAL_LM, Objective
from tunesmith.train.precision import inference


def evaluate_loss(
    model: nn.Module,
    data: Sequence[Encoded],
    pad_id: int,
    batch_size: int = 16,
    bf16: bool = False,
    objective: Objective = CAUSAL_LM,
) -> dict[str, float]:
    """Mean loss over `data` weighted as in training (per trained token for LM), its perplexity and the count."""
    total, tokens = 0.0, 0
    with inference(model, bf16):
        for idx in eval_batches([objective.length(e) for e in data], batch_size):
            batch = objective.collate([data[i] for i in idx], pad_id)
            loss_sum, n = objective.loss_sum(model, batch)
            total += float(loss_sum)
            tokens += n
    loss = mean_loss(total, tokens)
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if math.isfinite(loss) and loss < 50 else float("inf"),
        "tokens": tokens,
    }
