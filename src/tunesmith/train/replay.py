"""Replay rows: general or earlier-task rows mixed into every micro-batch at a set fraction.

Each task micro-batch of B rows gets `rows_per_batch(B, fraction)` replay rows, collated as a forward pass of
their own, so replay never changes which task rows a step holds (or the epoch's steps). Which replay rows come
is drawn from (seed, step, micro-batch), so a resumed run replays exactly what an uninterrupted one would.
Task and replay rows are each normalised by their own trained tokens and weighted by their share of the rows:
loss = (1 − f)·task mean + f·replay mean, f = r / (B + r). Normalising both by the step's total tokens would let
long replay rows drown short-answer task rows (an SST-2 row trains ~3 tokens, an Alpaca row ~80). The logged
task loss and every task metric count task rows only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tunesmith.data.tokenize import Encoded


def rows_per_batch(batch_size: int, fraction: float) -> int:
    """Replay rows r such that r / (batch_size + r) is closest to `fraction`, at least 1."""
    return max(1, round(batch_size * fraction / (1 - fraction)))


@dataclass
class Replay:
    rows: Sequence[Encoded]
    per_batch: int
    seed: int = 0
    source: str = ""
    task_rows: int = 1  # task rows per micro-batch (train.batch_size)

    @property
    def share(self) -> float:
        """f = r / (B + r): the replay rows' weight in the step's loss."""
        return self.per_batch / (self.task_rows + self.per_batch)

    def pick(self, step: int, micro_batch: int) -> list[Encoded]:
        """The replay rows of one micro-batch of optimizer step `step` (1-based): distinct while there are enough."""
        rng = random.Random(f"{self.seed}/{step}/{micro_batch}")
        if self.per_batch <= len(self.rows):
            return [self.rows[i] for i in rng.sample(range(len(self.rows)), self.per_batch)]
        return [self.rows[rng.randrange(len(self.rows))] for _ in range(self.per_batch)]
