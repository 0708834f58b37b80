"""Preference optimisation (`task: dpo`): the losses, the batch layout, the reference log-probs and the metrics.

A batch holds B pairs as 2B rows, the chosen answers first and the rejected ones after (TRL's layout). A pair's
implicit reward of an answer is β·(log π(answer) − log π_ref(answer)), summed over the answer's tokens; the loss
variants, registered in `LOSSES`, turn the chosen-minus-rejected margin into a per-pair loss:

- `sigmoid` (DPO, Rafailov et al. 2023): −log σ(β·Δ), Δ = the difference of log-ratios;
- `ipo` (Azar et al. 2023): (Δ̄ − 1/(2β))², Δ̄ with each log-ratio averaged over its answer's tokens, as TRL does.

The reference log-probs are computed once, before the method touches the model (`reference_logps`): the base
model itself, so adapter methods keep no second copy and full fine-tuning needs none either. Pairs are the unit
of the loss normaliser: a step's loss is the mean over its pairs, whatever their micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tunesmith.data.batching import collate, eval_batches
from tunesmith.data.preference import PreferencePair
from tunesmith.train.numerics import completion_logps
from tunesmith.train.objective import Batch, Objective
from tunesmith.train.precision import inference

REF_CHOSEN, REF_REJECTED = "ref_chosen_logps", "ref_rejected_logps"  # batch keys that are not model inputs


@dataclass(frozen=True)
class PairScores:
    """Per pair: log-probs under the policy and the reference, and each answer's token count."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def rewards(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The implicit rewards β·log(π/π_ref) of the chosen and the rejected answers."""
        return beta * (self.chosen - self.ref_chosen), beta * (self.rejected - self.ref_rejected)


def sigmoid_loss(scores: PairScores, beta: float) -> torch.Tensor:
    margin = (scores.chosen - scores.ref_chosen) - (scores.rejected - scores.ref_rejected)
    return -F.logsigmoid(beta * margin)


def ipo_loss(scores: PairScores, beta: float) -> torch.Tensor:
    chosen = (scores.chosen - scores.ref_chosen) / scores.chosen_tokens.clamp(min=1)
    rejected = (scores.rejected - scores.ref_rejected) / scores.rejected_tokens.clamp(min=1)
    return (chosen - rejected - 1 / (2 * beta)) ** 2


PairLoss = Callable[[PairScores, float], torch.Tensor]  # (scores, β) -> one loss per pair
LOSSES: dict[str, PairLoss] = {"sigmoid": sigmoid_loss, "ipo": ipo_loss}


def collate_pairs(pairs: Sequence[PreferencePair], pad_id: int) -> Batch:
    """2B right-padded rows (chosen, then rejected) plus the pairs' reference log-probs."""
    batch = collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    if all(p.ref_chosen is not None and p.ref_rejected is not None for p in pairs):
        batch[REF_CHOSEN] = torch.tensor([p.ref_chosen for p in pairs], dtype=torch.float32)
        batch[REF_REJECTED] = torch.tensor([p.ref_rejected for p in pairs], dtype=torch.float32)
    return batch


def pair_scores(model: nn.Module, batch: Batch) -> PairScores:
    """The policy's log-probs of both answers of every pair in `batch`, beside the stored reference ones."""
    if REF_CHOSEN not in batch:
        raise ValueError("a preference batch needs the reference log-probs (reference_logps fills them in)")
    logps, tokens = completion_logps(model, batch)
    chosen, rejected = logps.chunk(2)
    chosen_tokens, rejected_tokens = tokens.chunk(2)
    return PairScores(chosen, rejected, batch[REF_CHOSEN], batch[REF_REJECTED], chosen_tokens, rejected_tokens)


def preference_objective(loss: str, beta: float) -> Objective:
    """The training objective: summed per-pair loss, normalised by the pairs of the step."""
    pair_loss = LOSSES[loss]

    def loss_sum(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        per_pair = pair_loss(pair_scores(model, batch), beta)
        return per_pair.sum(), per_pair.numel()

    return Objective(
        name=f"preference_{loss}",
        loss_sum=loss_sum,
        count=lambda batch: batch["input_ids"].shape[0] // 2,
        collate=collate_pairs,
        length=lambda pair: pair.length,
    )


def reference_logps(
    model: nn.Module, pairs: Sequence[PreferencePair], pad_id: int, batch_size: int, bf16: bool, what: str
) -> None:
    """Fill in each pair's `ref_chosen` / `ref_rejected`: `model`'s summed log-probs of the two answers."""
    todo = [p for p in pairs if p.ref_chosen is None or p.ref_rejected is None]
    batches = eval_batches([p.length for p in todo], batch_size)
    with inference(model, bf16), tqdm(total=len(todo), desc=f"reference log-probs ({what})", unit="pair") as bar:
        for idx in batches:
            chunk = [todo[i] for i in idx]
            logps, _ = completion_logps(model, collate_pairs(chunk, pad_id))
            chosen, rejected = logps.chunk(2)
            for pair, c, r in zip(chunk, chosen.tolist(), rejected.tolist(), strict=True):
                pair.ref_chosen, pair.ref_rejected = c, r
            bar.update(len(chunk))


def evaluate_pairs(
    model: nn.Module, pairs: Sequence[PreferencePair], pad_id: int, batch_size: int, bf16: bool, loss: str, beta: float
) -> tuple[float, dict[str, float]]:
    """(mean preference loss, metrics) over `pairs`: reward accuracy and margin, the mean chosen and rejected
    rewards, and `preference_accuracy`, the share of pairs whose chosen answer has the higher log-probability."""
    losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps = [], [], [], [], []
    with inference(model, bf16):
        for idx in eval_batches([p.length for p in pairs], batch_size):
            scores = pair_scores(model, collate_pairs([pairs[i] for i in idx], pad_id))
            losses.append(LOSSES[loss](scores, beta))
            chosen, rejected = scores.rewards(beta)
            chosen_rewards.append(chosen)
            rejected_rewards.append(rejected)
            chosen_logps.append(scores.chosen)
            rejected_logps.append(scores.rejected)
    if not losses:
        return float("nan"), {}
    chosen, rejected = torch.cat(chosen_rewards), torch.cat(rejected_rewards)
    return float(torch.cat(losses).mean()), {
        "reward_accuracy": float((chosen > rejected).float().mean()),
        "reward_margin": float((chosen - rejected).mean()),
        "reward_chosen": float(chosen.mean()),
        "reward_rejected": float(rejected.mean()),
        "preference_accuracy": float((torch.cat(chosen_logps) > torch.cat(rejected_logps)).float().mean()),
    }
