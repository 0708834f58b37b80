"""The feedback database and its export: Alembic builds exactly the tables the code queries, feedback is refused
for unknown responses, choices and other keys, and each export shape gets the rows its rules say."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tunesmith.data.quality.rows import read_split
from tunesmith.feedback.export import dpo_rows, export_feedback, judged_answers, kto_rows, sft_rows
from tunesmith.feedback.store import FeedbackRecord, FeedbackStore, ResponseRecord, UnknownResponse, metadata

pytestmark = pytest.mark.unit
CAPITAL = [{"role": "user", "content": "Capital of France?"}]


def response(id: str, answers: list[str], prompt=None, kind: str = "chat", key: str = "local") -> ResponseRecord:
    prompt = CAPITAL if prompt is None else prompt
    return ResponseRecord(
        id, kind, "tiny", "sha256:0", None, key, [prompt], [json.dumps(prompt)], {"temperature": 1.0}, len(answers),
        answers, ["stop"] * len(answers),
    )  # fmt: skip


def test_the_migrations_build_exactly_the_tables_the_code_uses(tmp_path):
    store = FeedbackStore(str(tmp_path / "f.db"))
    with store.engine.connect() as db:
        assert compare_metadata(MigrationContext.configure(db), metadata) == []
    FeedbackStore(str(tmp_path / "f.db"))  # opening again is a no-op upgrade


def test_feedback_needs_a_known_response_choice_and_the_same_key(tmp_path):
    store = FeedbackStore(str(tmp_path / "f.db"))
    store.record_response(response("r1", ["Paris", "Lyon"], key="alice"))
    assert store.add_feedback(FeedbackRecord("r1", 1, -1, key_name="alice")) == 1
    for wrong in (FeedbackRecord("nope", key_name="alice"), FeedbackRecord("r1", 2, 1, key_name="alice"),
                  FeedbackRecord("r1", 0, 1, key_name="bob")):  # fmt: skip
        with pytest.raises(UnknownResponse):
            store.add_feedback(wrong)
    assert [(r.id, f.choice, f.rating) for r, f in store.rated()] == [("r1", 1, -1)]


def judged(*pairs):
    return judged_answers(pairs)


def test_sft_keeps_corrections_and_the_last_judgement_counts():
    r = response("r1", ["Lyon"])
    rows = sft_rows(judged((r, FeedbackRecord("r1", 0, -1)), (r, FeedbackRecord("r1", 0, None, "Paris")),
                           (r, FeedbackRecord("r1", 0, None, "Paris."))))  # fmt: skip
    assert rows.rows == [{"prompt": CAPITAL, "completion": [{"role": "assistant", "content": "Paris."}]}]
    only_rating = sft_rows(judged((r, FeedbackRecord("r1", 0, 1))))
    assert only_rating.rows == [] and only_rating.skipped == {"no correction": 1}


def test_dpo_pairs_a_correction_over_its_answer_and_good_over_bad_for_the_same_prompt():
    a, b = response("a", ["Paris", "Lyon"]), response("b", ["Nice"])
    other = response("c", ["Berlin"], prompt=[{"role": "user", "content": "Capital of Germany?"}])
    export = dpo_rows(judged((a, FeedbackRecord("a", 0, 1)), (a, FeedbackRecord("a", 1, -1)),
                             (b, FeedbackRecord("b", 0, -1, "Paris")), (other, FeedbackRecord("c", 0, 1))))  # fmt: skip
    pairs = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in export.rows}
    assert pairs == {("Paris", "Nice"), ("Paris", "Lyon")}  # b's -1 pairs with a's +1 too, but repeats (Paris, Nice)
    assert all(r["prompt"] == CAPITAL for r in export.rows)
    assert export.skipped["rating without an opposite rating for the same prompt"] == 1  # Berlin


def test_kto_rows_from_ratings_and_corrections_on_plain_completions():
    r = response("r", ["5", "4"], prompt="2+2=", kind="completion")
    rows = kto_rows(judged((r, FeedbackRecord("r", 0, -1)), (r, FeedbackRecord("r", 1, None, " 4"))))
    assert {(x["completion"], x["label"]) for x in rows.rows} == {("5", False)}  # " 4" equals the answer "4"
    assert rows.skipped == {"correction equals the answer": 1}
    fixed = kto_rows(judged((r, FeedbackRecord("r", 0, None, "4"))))
    assert [(x["prompt"], x["completion"], x["label"]) for x in fixed.rows] == [
        ("2+2=", "4", True),
        ("2+2=", "5", False),
    ]


def test_exported_sft_rows_read_as_prompt_completion_data(tmp_path):
    store = FeedbackStore(str(tmp_path / "f.db"))
    store.record_response(response("r1", ["Lyon"]))
    store.record_response(response("r2", ["5"], prompt="2+2=", kind="completion"))
    store.add_feedback(FeedbackRecord("r1", 0, -1, "Paris"))
    store.add_feedback(FeedbackRecord("r2", 0, None, "4"))
    path, export, read = export_feedback(store, "sft", tmp_path / "out")
    split = read_split("train", path)
    assert read == 2 and split.format == "prompt_completion" and len(split.examples) == 2 and not split.problems
