"""Scenario 10 of RELIABILITY.md, length accounting, through `run_train` on the tiny model.

The length rules of `data.*` (docs/training.md, README "Data"):
- truncate: a chat row longer than `data.max_length` tokens is cut to exactly `max_length`;
- drop: a row left with no trained token after the cut (its prompt alone fills `max_length`) is dropped;
- error: with `length` in `data.check.errors`, any cut or dropped row stops the run before a run folder exists,
  and a file where every row would be dropped always stops it;
- raw text (`text` rows) is cut into `max_length` blocks, never truncated.

The expected numbers are computed here independently of tunesmith's encoder (the tokenizer on the rendered chat
template), rows are planted at exactly `max_length`, `max_length + 1` and far beyond it, and `data_report.json`
(and `data_check.json`) must match them exactly. Every example that reaches the loop is checked to carry a
trained token (the rows of each step are read from `tunesmith.train.loop._train_step`'s arguments).
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.recipes.train import run_train
from tunesmith.train import loop

pytestmark = pytest.mark.integration
M = 48  # data.max_length
IGNORE = -100


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(user: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def full_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids)


def prompt_length(tokenizer, messages: list[dict]) -> int:
    text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def find_answer(tokenizer, user: str, length: int) -> str:
    """An answer that makes the rendered row exactly `length` tokens long."""
    for words in range(0, 60):
        for tail in ("", ".", "!", " ok"):
            answer = "The number is 3" + " 7" * words + tail
            if full_length(tokenizer, chat(user, answer)) == length:
                return answer
    raise AssertionError(f"no answer gives {length} tokens")


@pytest.fixture(scope="module")
def planted(tiny_tokenizer, tmp_path_factory):
    """Train and val files with rows that fit, rows at the limit, rows cut and rows left without a trained token."""
    tok, folder = tiny_tokenizer, tmp_path_factory.mktemp("lengths")
    train, kinds = [], {}

    def add(rows: list, kind: str, messages: list[dict]) -> None:
        rows.append({"messages": messages})
        kinds.setdefault(kind, []).append(len(rows))

    for i in range(12):
        add(train, "fits", chat(f"Say the number {i % 7}.", f"The number is {i % 7}."))
    add(train, "at_limit", chat("Say the number 3.", find_answer(tok, "Say the number 3.", M)))
    add(train, "one_over", chat("Say the number 3.", find_answer(tok, "Say the number 3.", M + 1)))
    for i in range(5):
        add(train, "cut", chat(f"Say the number {i}.", "The number is " + "7 " * (30 + 5 * i)))
    for i in range(4):
        add(train, "no_target", chat("fox " * (60 + i), "ok"))  # the prompt alone is longer than M
    for i in range(6):
        add(train, "fits", chat(f"Count to {i}.", " ".join(str(k) for k in range(i + 1))))
    val: list[dict] = []
    val_kinds: dict[str, list[int]] = {}
    for i, (kind, messages) in enumerate(
        [
            ("fits", chat("Tell me one.", "One it is.")),
            ("cut", chat("Say 2.", "2 " * 60)),
            ("no_target", chat("dog " * 70, "ok")),
            ("fits", chat("Tell me five.", "Five it is.")),
        ],  # fmt: skip
        start=1,
    ):
        val.append({"messages": messages})
        val_kinds.setdefault(kind, []).append(i)
    return (
        write_jsonl(folder / "train.jsonl", train),
        write_jsonl(folder / "val.jsonl", val),
        expected(tok, train, kinds),
        expected(tok, val, val_kinds),
    )


def expected(tok, rows: list[dict], kinds: dict[str, list[int]]) -> dict:
    """The report tunesmith must write for `rows`, computed with the tokenizer alone."""
    truncated, dropped, tokens, trainable = [], [], 0, 0
    for line, row in enumerate(rows, start=1):
        n, p = full_length(tok, row["messages"]), prompt_length(tok, row["messages"])
        kept = min(n, M)
        if n > M:
            truncated.append(line)
        if p >= M:  # every position that could carry a loss is cut away
            dropped.append(line)
            continue
        tokens += kept
        trainable += kept - p
    assert truncated == sorted(kinds.get("one_over", []) + kinds["cut"] + kinds["no_target"])
    assert dropped == kinds["no_target"] and not set(kinds.get("at_limit", [])) & set(truncated)
    return {
        "examples_in": len(rows),
        "encoded": len(rows) - len(dropped),
        "truncated": len(truncated),
        "truncated_lines": truncated,
        "dropped_no_trainable_tokens": len(dropped),
        "dropped_lines": dropped,
        "tokens": tokens,
        "trainable_tokens": trainable,
    }


def config(model_dir: Path, train: Path, val: Path | None, out: Path, name: str, *extra: str):
    sets = [f"model.name={model_dir}", f"data.train={train}", f"run.output_dir={out}", f"run.name={name}"]
    sets += [f"data.val={val}"] if val else []
    common = ["train.max_steps=3", "train.batch_size=4", "train.precision=fp32", f"data.max_length={M}"]
    return load_config(None, [*sets, *common, "data.cache_tokenized=false", *extra])


@contextmanager
def training_rows():
    """The encoded examples the loop trains on, and the rows of every step."""
    seen: dict = {"data": None, "steps": []}
    real = loop._train_step

    def spy(setup, window, *args, **kwargs):
        seen["data"] = setup.train_data
        seen["steps"].append([setup.train_data[i] for micro in window for i in micro])
        return real(setup, window, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "_train_step", spy)
        yield seen


@pytest.fixture(scope="module")
def trained(planted, tiny_model_dir, tmp_path_factory):
    train, val, _, _ = planted
    out = tmp_path_factory.mktemp("length-runs")
    with training_rows() as seen:
        run = run_train(config(tiny_model_dir, train, val, out, "lengths")).path
    return run, seen


def test_truncate_and_drop_are_counted_exactly(planted, trained):
    _, _, want_train, want_val = planted
    run, _ = trained
    report = json.loads((run / "data_report.json").read_text())
    assert report["train"] == want_train
    assert report["val"] == want_val
    assert report["rejected_rows"] == 0


def test_data_check_agrees_with_the_report(planted, trained):
    _, _, want_train, want_val = planted
    run, _ = trained
    check = json.loads((run / "data_check.json").read_text())
    for split, want in (("train", want_train), ("val", want_val)):
        lengths = check["lengths"][split]
        assert lengths["over_max_length"] == want["truncated"]
        assert lengths["no_trainable_tokens"] == want["dropped_no_trainable_tokens"]
        found = {
            f["code"]: sorted(r["line"] for r in f["rows"])
            for f in check["findings"]
            if f["split"] == split and f["kind"] == "length"
        }
        assert found.get("over_max_length") == want["truncated_lines"]
        assert found.get("no_trainable_tokens") == want["dropped_lines"]


def test_no_example_without_trained_tokens_reaches_training(planted, trained):
    _, _, want_train, _ = planted
    _, seen = trained
    data = seen["data"]
    assert data is not None and len(data) == want_train["encoded"]
    dropped = set(want_train["dropped_lines"])
    for example in data:
        assert len(example.input_ids) <= M and len(example.labels) == len(example.input_ids)
        assert any(label != IGNORE for label in example.labels[1:]), f"line {example.line} has no trained token"
        assert example.line not in dropped
    assert seen["steps"] and all(all(e in data for e in step) for step in seen["steps"])


def test_steps_log_trained_tokens(trained):
    run, _ = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train_loss" in r]
    assert len(steps) == 3 and all(r["trained_tokens"] > 0 and math.isfinite(r["train_loss"]) for r in steps)


@pytest.mark.parametrize("kinds", [["length"], ["schema", "leakage", "length"]])
def test_error_policy_stops_before_a_run_folder_exists(planted, tiny_model_dir, tmp_path, kinds):
    train, val, _, _ = planted
    errors = "[" + ", ".join(kinds) + "]"
    cfg = config(tiny_model_dir, train, val, tmp_path, "strict", f"data.check.errors={errors}")
    with pytest.raises(UserError) as caught:
        run_train(cfg)
    message = str(caught.value)
    assert "\n" not in message and "data check failed: length" in message, message
    assert "over_max_length" in message or "no_trainable_tokens" in message
    assert not (tmp_path / "strict").exists()


def test_error_policy_passes_when_nothing_is_cut(tiny_model_dir, tmp_path):
    rows = [{"messages": chat(f"Say the number {i % 7}.", f"The number is {i % 7}.")} for i in range(12)]
    train = write_jsonl(tmp_path / "short.jsonl", rows)
    run = run_train(config(tiny_model_dir, train, None, tmp_path, "fine", "data.check.errors=[schema, length]")).path
    report = json.loads((run / "data_report.json").read_text())
    assert report["train"]["truncated"] == report["train"]["dropped_no_trainable_tokens"] == 0


def test_a_file_with_no_trainable_row_stops(tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "long.jsonl", [{"messages": chat("fox " * (60 + i), "ok")} for i in range(6)])
    with pytest.raises(UserError, match="no training example has a trainable token") as caught:
        run_train(config(tiny_model_dir, train, None, tmp_path, "none", "data.check.enabled=false"))
    assert "\n" not in str(caught.value) and "data.max_length" in str(caught.value)
    assert not (tmp_path / "none").exists()


def test_raw_text_is_cut_into_blocks_not_truncated(tiny_tokenizer, tiny_model_dir, tmp_path):
    """`text` rows: every token is trained, in blocks of at most M tokens (plus EOS at the end of each row)."""
    texts = [("The quick brown fox jumps over the lazy dog. " * (1 + i)).strip() for i in range(8)]
    train = write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in texts])
    val = write_jsonl(tmp_path / "text-val.jsonl", [{"text": "What is the capital of France?"}, {"text": "Paris."}])
    with training_rows() as seen:
        run = run_train(config(tiny_model_dir, train, val, tmp_path, "text", "data.format=text")).path
    blocks, tokens = 0, 0
    for text in texts:
        n = len(tiny_tokenizer(text, add_special_tokens=False).input_ids) + 1  # + EOS
        sizes = [min(M, n - s) for s in range(0, n, M)]
        blocks += sum(1 for size in sizes if size > 1)  # a 1-token block has nothing to predict
        tokens += sum(size for size in sizes if size > 1)
    report = json.loads((run / "data_report.json").read_text())["train"]
    assert report["truncated"] == 0
    assert (report["encoded"], report["tokens"]) == (blocks, tokens)
    assert report["trainable_tokens"] == tokens - blocks  # every token but each block's first
    assert all(len(e.input_ids) <= M and len(e.input_ids) > 1 for e in seen["data"])
