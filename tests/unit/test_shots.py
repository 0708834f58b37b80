"""k-shot prompts: seeded shots from train only, never an evaluated row, trimmed to the context window."""

from __future__ import annotations

import pytest

from tunesmith.data.example import Example
from tunesmith.errors import UserError
from tunesmith.evaluate.shots import ShotLeak, ShotPool, build_prompts, few_shot_messages, prompt_key, shot_pool

pytestmark = pytest.mark.unit
SYSTEM = {"role": "system", "content": "Answer good or bad."}


def row(line: int, text: str, label: str) -> Example:
    return Example(line, (SYSTEM, {"role": "user", "content": text}, {"role": "assistant", "content": label}))


def test_eval_rows_never_appear_as_shots(tiny_tokenizer):
    """The leakage guard: train shares rows with the evaluated rows (one differing only in case and spacing);
    over many seeds and rows, no shot's question is ever an evaluated row's question."""
    evaluated = [row(100 + i, f"the movie number {i} was fine", "good") for i in range(10)]
    copies = [row(200 + i, f"The  movie number {i} was FINE", "bad") for i in range(10)]
    train = [row(i, f"train text {i}", "good" if i % 2 else "bad") for i in range(6)] + evaluated + copies
    pool = shot_pool(train, evaluated)
    assert pool.excluded == 20 and len(pool.rows) == 6
    eval_keys = {prompt_key(e) for e in evaluated}
    eval_texts = {e.prompt_messages[-1]["content"].lower() for e in evaluated}
    for seed in range(20):
        built = build_prompts(tiny_tokenizer, evaluated, pool, 5, seed, budget=10_000)
        for lines, prompt in zip(built.shot_lines, built.prompts, strict=True):
            assert all(line < 100 for line in lines)
            shown = [" ".join(m["content"].lower().split()) for m in prompt[1:-1] if m["role"] == "user"]
            assert len(shown) == 5 and not set(shown) & eval_texts
    # The second line of defence: a pool that (by a bug) still holds an evaluated row is caught.
    leaky = ShotPool(evaluated[:1], 0, frozenset(eval_keys))
    with pytest.raises(ShotLeak):
        build_prompts(tiny_tokenizer, evaluated, leaky, 1, 0, budget=10_000)


def test_shots_are_seeded_and_vary_by_row(tiny_tokenizer):
    train = [row(i, f"train text {i}", "good") for i in range(30)]
    evaluated = [row(100 + i, f"eval {i}", "bad") for i in range(4)]
    pool = shot_pool(train, evaluated)
    a = build_prompts(tiny_tokenizer, evaluated, pool, 3, seed=7, budget=10_000)
    b = build_prompts(tiny_tokenizer, evaluated, pool, 3, seed=7, budget=10_000)
    c = build_prompts(tiny_tokenizer, evaluated, pool, 3, seed=8, budget=10_000)
    assert a.shot_lines == b.shot_lines != c.shot_lines
    assert len({tuple(lines) for lines in a.shot_lines}) > 1  # a fresh draw per row


def test_conversation_layout():
    shots = [row(1, "s1", "good"), row(2, "s2", "bad")]
    messages = few_shot_messages(row(9, "query", "good"), shots)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0] == SYSTEM and messages[2]["content"] == "good" and messages[-1]["content"] == "query"


def test_shots_trimmed_to_the_context_window(tiny_tokenizer):
    long_text = " ".join(["the quick brown fox"] * 20)
    train = [row(i, long_text, "good") for i in range(5)]
    query = row(100, "short question", "bad")
    pool = shot_pool(train, [query])
    full = build_prompts(tiny_tokenizer, [query], pool, 5, 0, budget=100_000)
    assert full.shots_used == [5]
    from tunesmith.evaluate.shots import prompt_tokens

    need = [prompt_tokens(tiny_tokenizer, few_shot_messages(query, train[:k])) for k in range(6)]
    budget = need[2] + 1  # room for two shots, not three
    trimmed = build_prompts(tiny_tokenizer, [query], pool, 5, 0, budget=budget)
    assert trimmed.shots_used == [2]
    assert prompt_tokens(tiny_tokenizer, trimmed.prompts[0]) <= budget
    none = build_prompts(tiny_tokenizer, [query], pool, 5, 0, budget=1)
    assert none.shots_used == [0] and none.prompts[0][-1]["content"] == "short question"


def test_empty_pool_is_a_user_error(tiny_tokenizer):
    evaluated = [row(1, "only row", "good")]
    with pytest.raises(UserError, match="no row to use as a shot"):
        build_prompts(tiny_tokenizer, evaluated, shot_pool(evaluated, evaluated), 2, 0, budget=1000)
