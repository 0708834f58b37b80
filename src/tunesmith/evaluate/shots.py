"""k-shot prompts for base-model baselines: k training rows as earlier chat turns before the question.

Shots come from the training split with a seeded draw per evaluated row, never from the rows being evaluated:
any training row whose prompt equals an evaluated row's prompt (case and whitespace aside) leaves the pool
first, and every drawn shot is checked again (`ShotLeak` is a bug, not a user mistake). A prompt that would
not fit the model's context window loses shots from the end until it fits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tunesmith.data.example import Example
from tunesmith.data.tokenize import render
from tunesmith.errors import UserError

Messages = list[dict[str, str]]


class ShotLeak(AssertionError):
    """An evaluated row was about to be shown as a shot."""


def prompt_key(example: Example) -> tuple[tuple[str, str], ...]:
    """What identifies a row's question: its non-system turns before the answer, case and spacing aside."""
    return tuple(
        (m["role"], " ".join(m["content"].lower().split())) for m in example.prompt_messages if m["role"] != "system"
    )


@dataclass(frozen=True)
class ShotPool:
    """Training rows that may be shown as shots, and how many were left out because they match an eval row."""

    rows: list[Example]
    excluded: int
    eval_keys: frozenset[tuple[tuple[str, str], ...]]


def shot_pool(train: Sequence[Example], eval_rows: Sequence[Example]) -> ShotPool:
    """Train rows with an answer whose question is not among the evaluated rows' questions."""
    eval_keys = frozenset(prompt_key(e) for e in eval_rows)
    answered = [e for e in train if e.target is not None]
    rows = [e for e in answered if prompt_key(e) not in eval_keys]
    return ShotPool(rows, len(answered) - len(rows), eval_keys)


def few_shot_messages(query: Example, shots: Sequence[Example]) -> Messages:
    """The query's system turn (if any), then each shot as user/assistant turns, then the query's question."""
    system = [dict(m) for m in query.prompt_messages if m["role"] == "system"]
    turns: Messages = []
    for shot in shots:
        turns += [dict(m) for m in shot.prompt_messages if m["role"] != "system"]
        turns.append({"role": "assistant", "content": shot.target or ""})
    return system + turns + [dict(m) for m in query.prompt_messages if m["role"] != "system"]


def prompt_tokens(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> int:
    return len(tokenizer(render(tokenizer, messages, generation_prompt=True), add_special_tokens=False)["input_ids"])


def fit_shots(
    tokenizer: PreTrainedTokenizerBase, query: Example, shots: Sequence[Example], budget: int
) -> tuple[Messages, int]:
    """The few-shot conversation with as many of `shots` (in order) as fit in `budget` prompt tokens."""
    shots = list(shots)
    while True:
        messages = few_shot_messages(query, shots)
        if not shots or prompt_tokens(tokenizer, messages) <= budget:
            return messages, len(shots)
        shots.pop()


@dataclass
class ShotPrompts:
    """One conversation per evaluated row, and the shots each one got after fitting the window."""

    prompts: list[Messages]
    shots_used: list[int]
    shot_lines: list[list[int]]  # source lines of each row's shots (for the report and the leakage test)


def build_prompts(
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Example],
    pool: ShotPool,
    k: int,
    seed: int,
    budget: int,
) -> ShotPrompts:
    """k seeded shots per row (a fresh draw per row, from one generator), trimmed to `budget` tokens."""
    if k and not pool.rows:
        raise UserError(f"{k}-shot baseline: the training split has no row to use as a shot (none with an answer)")
    rng = random.Random(seed)
    out = ShotPrompts([], [], [])
    for row in rows:
        shots = rng.sample(pool.rows, min(k, len(pool.rows))) if k else []
        if any(prompt_key(s) in pool.eval_keys for s in shots):
            raise ShotLeak(f"a shot repeats an evaluated row (line {row.line}); the shot pool guard failed")
        messages, used = fit_shots(tokenizer, row, shots, budget)
        out.prompts.append(messages)
        out.shots_used.append(used)
        out.shot_lines.append([s.line for s in shots[:used]])
    return out
