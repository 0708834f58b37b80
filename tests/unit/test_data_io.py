"""Reading data files and turning rows into training examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data import FORMATS, Example, detect_format, load_examples, read_records, summarize_rejected
from tunesmith.data.formats import register
from tunesmith.errors import DataError, UserError

pytestmark = pytest.mark.unit

ALPACA_REAL = Path("/work/shared/data/alpaca/alpaca_sample_2000.jsonl")
SST2_DEV_REAL = Path("/work/shared/data/sst2/dev.jsonl")

ROWS = {
    "alpaca": [
        {"instruction": "Add.", "input": "2 + 2", "output": "4"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        {"instruction": "Say yo.", "output": "yo"},
    ],
    "prompt_completion": [{"prompt": "2 + 2 =", "completion": "4"}, {"prompt": "Sky?", "completion": "blue"}],
    "chat": [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
                {"role": "assistant", "content": "d"},
            ]
        },
    ],
    "text_label": [{"text": "great film", "label": 1}, {"text": "dull", "label": 0}],
    "text": [{"text": "Once upon a time."}, {"text": "The end."}],
}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """Write one JSON value per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write raw lines (each ends with a newline)."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def error_of(path: Path, **kwargs: object) -> DataError:
    """The DataError raised by a strict load."""
    with pytest.raises(DataError) as info:
        load_examples(path, **kwargs)
    return info.value


# --- Example ---------------------------------------------------------------------------------------------


def test_example_target_and_prompt_messages() -> None:
    turns = tuple(ROWS["chat"][1]["messages"])
    example = Example(line=3, messages=turns)
    assert example.target == "d"
    assert example.prompt_messages == turns[:4]
    text = Example(line=1, text="raw")
    assert text.target is None and text.prompt_messages == ()


def test_example_needs_exactly_one_of_messages_and_text() -> None:
    with pytest.raises(ValueError):
        Example(line=1)
    with pytest.raises(ValueError):
        Example(line=1, messages=({"role": "assistant", "content": "x"},), text="y")


# --- formats, round trip ----------------------------------------------------------------------------------


def test_registry_rejects_duplicates_and_is_in_detection_order() -> None:
    assert list(FORMATS) == ["chat", "alpaca", "preference", "prompt_completion", "text_label", "tokens_tags", "text"]
    with pytest.raises(ValueError, match="already registered"):
        register(FORMATS["alpaca"])


@pytest.mark.parametrize("name", list(ROWS))
def test_each_format_detected_and_loaded(tmp_path: Path, name: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS[name])
    data = load_examples(path)
    assert data.format == name
    assert len(data.examples) == len(ROWS[name]) and data.rejected == []
    assert [example.line for example in data.examples] == list(range(1, len(ROWS[name]) + 1))
    assert load_examples(path, format=name).examples == data.examples


def test_alpaca_conversion(tmp_path: Path) -> None:
    examples = load_examples(write_jsonl(tmp_path / "a.jsonl", ROWS["alpaca"])).examples
    assert examples[0].messages == ({"role": "user", "content": "Add.\n\n2 + 2"}, {"role": "assistant", "content": "4"})
    assert examples[1].messages[0]["content"] == "Say hi."
    assert examples[2].messages[0]["content"] == "Say yo." and examples[2].target == "yo"


def test_prompt_completion_strings_and_conversational(tmp_path: Path) -> None:
    rows = [
        {"prompt": "2 + 2 =", "completion": "4"},
        {
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "completion": [{"role": "assistant", "content": "a"}],
        },
    ]
    examples = load_examples(write_jsonl(tmp_path / "p.jsonl", rows)).examples
    assert examples[0].messages == ({"role": "user", "content": "2 + 2 ="}, {"role": "assistant", "content": "4"})
    assert [turn["role"] for turn in examples[1].messages] == ["system", "user", "assistant"]
    assert examples[1].target == "a"


def test_chat_keeps_only_role_and_content(tmp_path: Path) -> None:
    row = {"messages": [{"role": "user", "content": "q", "name": "x"}, {"role": "assistant", "content": "a", "w": 1}]}
    example = load_examples(write_jsonl(tmp_path / "c.jsonl", [row])).examples[0]
    assert example.messages == ({"role": "user", "content": "q"}, {"role": "assistant", "content": "a"})


@pytest.mark.parametrize(("label", "expected"), [(1, "1"), ("pos", "pos"), (True, "True"), (0.5, "0.5")])
def test_text_label_label_types(tmp_path: Path, label: object, expected: str) -> None:
    example = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "label": label}])).examples[0]
    assert example.messages == ({"role": "user", "content": "x"}, {"role": "assistant", "content": expected})


def test_text_format(tmp_path: Path) -> None:
    example = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "  keep spacing \n"}])).examples[0]
    assert example.text == "  keep spacing \n" and example.messages == () and example.target is None


# --- file types ---------------------------------------------------------------------------------------


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS["alpaca"], indent=2), encoding="utf-8")
    data = load_examples(path)
    assert data.format == "alpaca" and [example.line for example in data.examples] == [1, 2, 3]


def test_json_array_non_object_item_is_row_problem(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text": "a"}, 5, {"text": "b"}]), encoding="utf-8")
    rows, problems = read_records(path)
    assert [line for line, _ in rows] == [1, 3]
    assert [(p.line, p.code) for p in problems] == [(2, "not_an_object")]


def test_json_file_must_be_an_array(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [{"text": "a"}]}), encoding="utf-8")
    error = error_of(path)
    assert error.code == "not_an_array" and "data" in error.problem


def test_json_file_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": }\n]', encoding="utf-8")
    error = error_of(path)
    assert (error.line, error.code) == (3, "invalid_json")


def test_ndjson_and_uppercase_extension(tmp_path: Path) -> None:
    assert load_examples(write_jsonl(tmp_path / "d.ndjson", ROWS["text"])).format == "text"
    assert load_examples(write_jsonl(tmp_path / "D.JSONL", ROWS["text"])).format == "text"


def test_csv_round_trip_and_multiline_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        'instruction,input,output\n"Write\na poem",,"roses\nare red"\n\nAdd.,"1,2",3\r\n',
        encoding="utf-8",
    )
    data = load_examples(path)
    assert data.format == "alpaca"
    assert [example.line for example in data.examples] == [2, 6]
    assert data.examples[0].messages[0]["content"] == "Write\na poem"
    assert data.examples[0].target == "roses\nare red"
    assert data.examples[1].messages[0]["content"] == "Add.\n\n1,2"


def test_csv_line_number_after_multiline_row_in_error(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"a\nb\nc",1\n"",0\n', encoding="utf-8")
    error = error_of(path)
    assert (error.line, error.code) == (5, "empty_field")


def test_tsv_round_trip(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.tsv", ["text\tlabel", "good , fun . \t1", "bad\t0"])
    data = load_examples(path)
    assert data.format == "text_label" and [example.line for example in data.examples] == [2, 3]
    assert data.examples[0].messages[0]["content"] == "good , fun . " and data.examples[0].target == "1"


def test_csv_header_is_stripped_and_unnamed_columns_dropped(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.csv", ["\ufeff, text ,label", "0,hi,1"])
    rows, problems = read_records(path)
    assert rows == [(2, {"text": "hi", "label": "1"})] and problems == []


def test_csv_wrong_field_count_and_duplicate_header(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.csv", ["text,label", "a,1", "b,c,2", "d"])
    _, problems = read_records(path)
    assert [(p.line, p.code) for p in problems] == [(3, "wrong_field_count"), (4, "wrong_field_count")]
    dup = write_lines(tmp_path / "dup.csv", ["text,text", "a,b"])
    with pytest.raises(DataError, match="invalid_header"):
        read_records(dup)


def test_csv_invalid_encoding_per_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nok,1\nbad \xff byte,0\nfine,1\n")
    data = load_examples(path, skip_invalid=True)
    assert [example.line for example in data.examples] == [2, 4]
    assert [(p.line, p.code) for p in data.rejected] == [(3, "invalid_encoding")]


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS["chat"]), path)
    data = load_examples(path)
    assert data.format == "chat" and [example.line for example in data.examples] == [1, 2]
    assert data.examples[1].target == "d"


def test_parquet_nulls_are_missing_fields(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "input": [None, "x"], "output": ["1", None]}), path)
    data = load_examples(path, skip_invalid=True)
    assert data.examples[0].messages[0]["content"] == "a"
    assert [(p.line, p.code) for p in data.rejected] == [(2, "missing_field")]


def test_corrupt_parquet_is_data_error(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    assert error_of(path).code == "invalid_parquet"


# --- whole-file errors --------------------------------------------------------------------------------


def test_missing_file_is_user_error_not_data_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found") as info:
        load_examples(tmp_path / "nope.jsonl")
    assert not isinstance(info.value, DataError)


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("hello\n")
    with pytest.raises(UserError, match=r"\.jsonl.*\.parquet|\.parquet.*\.jsonl") as info:
        read_records(path)
    assert ".csv" in str(info.value) and ".tsv" in str(info.value)


@pytest.mark.parametrize(("name", "content"), [("e.jsonl", ""), ("b.jsonl", "\n  \n\n"), ("h.csv", "text,label\n")])
def test_empty_file_has_no_rows(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match="no rows"):
        load_examples(path)


def test_unknown_format_name_suggests(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS["text"])
    with pytest.raises(UserError, match='Did you mean "alpaca"') as info:
        load_examples(path, format="alpacca")
    assert all(name in str(info.value) for name in FORMATS)


def test_undetectable_format_lists_fields_found(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}] * 3)
    with pytest.raises(UserError) as info:
        load_examples(path)
    message = str(info.value)
    assert "cannot tell the data format from the fields found (question, answer)" in message
    assert "alpaca {instruction, input?, output}" in message and "set data.format" in message


def test_detect_format_needs_fields_in_most_rows() -> None:
    rows = [(1, {"text": "a", "label": 1}), (2, {"text": "b"}), (3, {"text": "c"})]
    assert detect_format(rows, "x") == "text"
    assert detect_format([{"instruction": "i", "output": "o", "text": "t"}], "x") == "alpaca"
    with pytest.raises(UserError):
        detect_format([], "x")


# --- row problems: every code from a planted fault --------------------------------------------------------

BAD_ROWS = [
    ("alpaca", {"instruction": "i"}, "missing_field"),
    ("alpaca", {"instruction": "  ", "output": "o"}, "empty_field"),
    ("alpaca", {"instruction": "i", "input": 3, "output": "o"}, "wrong_type"),
    ("alpaca", {"instruction": ["i"], "output": "o"}, "wrong_type"),
    ("prompt_completion", {"prompt": "p", "completion": ""}, "empty_field"),
    ("prompt_completion", {"prompt": "p", "completion": [{"role": "assistant", "content": "a"}]}, "wrong_type"),
    (
        "prompt_completion",
        {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "user", "content": "a"}]},
        "no_assistant_turn",
    ),
    ("chat", {"messages": []}, "empty_field"),
    ("chat", {"messages": "hi"}, "wrong_type"),
    ("chat", {"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]}, "unknown_role"),
    ("chat", {"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "y"}]}, "wrong_type"),
    ("chat", {"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, "missing_field"),
    ("chat", {"messages": ["hi", {"role": "assistant", "content": "y"}]}, "wrong_type"),
    ("chat", {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}, "no_assistant_turn"),
    (
        "chat",
        {"messages": [{"role": "user", "content": "\ud800"}, {"role": "assistant", "content": "y"}]},
        "invalid_encoding",
    ),
    ("text_label", {"text": "t", "label": [1]}, "wrong_type"),
    ("text_label", {"text": "t", "label": {"a": 1}}, "wrong_type"),
    ("text_label", {"text": "t", "label": ""}, "empty_field"),
    ("text_label", {"text": "t", "label": None}, "missing_field"),
    ("text", {"text": 5}, "wrong_type"),
    ("text", {"body": "x"}, "missing_field"),
]


@pytest.mark.parametrize(("name", "row", "code"), BAD_ROWS)
def test_row_problem_codes(tmp_path: Path, name: str, row: dict, code: str) -> None:
    good = ROWS[name][0]
    path = write_jsonl(tmp_path / "d.jsonl", [good, row, good])
    error = error_of(path, format=name)
    assert (error.line, error.code) == (2, code)
    assert str(error).startswith(f"{path}:2: ") and str(error).endswith(f"[{code}]") and "\n" not in str(error)
    data = load_examples(path, format=name, skip_invalid=True)
    assert [example.line for example in data.examples] == [1, 3]
    assert [(p.line, p.code) for p in data.rejected] == [(2, code)]


def test_read_problem_codes_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"text": "a"}\n'  # 1
        b"\n"  # 2 blank
        b"   \r\n"  # 3 blank
        b'{"text": "b",}\n'  # 4 invalid_json
        b"[1, 2]\n"  # 5 not_an_object
        b'{"text": "caf\xe9"}\n'  # 6 invalid_encoding (latin-1 byte)
        b'"just a string"\n'  # 7 not_an_object
        b'{"text": "c"}\r\n'  # 8 good, CRLF
        + b"[" * 5000  # 9 invalid_json (too deep)
        + b"\n"
        + b"1" * 5000  # 10 invalid_json (too many digits for an int)
        + b'\n{"text": "d"}'  # 11 good, no final newline
    )
    rows, problems = read_records(path)
    assert [line for line, _ in rows] == [1, 8, 11]
    codes = [(p.line, p.code) for p in problems]
    assert codes == [
        (4, "invalid_json"),
        (5, "not_an_object"),
        (6, "invalid_encoding"),
        (7, "not_an_object"),
        (9, "invalid_json"),
        (10, "invalid_json"),
    ]
    assert "invalid JSON:" in problems[0].problem
    data = load_examples(path, skip_invalid=True)
    assert len(data.examples) + len(data.rejected) == 9
    assert error_of(path).line == 4


def test_strict_load_raises_first_problem_by_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ['{"text": "a"}', '{"text": ""}', "oops", '{"text": "b"}'])
    assert (error_of(path).line, error_of(path).code) == (2, "empty_field")
    path = write_lines(tmp_path / "e.jsonl", ['{"text": "a"}', "oops", '{"text": ""}'])
    assert (error_of(path).line, error_of(path).code) == (2, "invalid_json")


def test_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n')
    assert load_examples(path).examples[0].text == "a"


# --- skip_invalid, max_rows, system prompt ----------------------------------------------------------------


def test_skip_invalid_counts_add_up_and_max_rows(tmp_path: Path) -> None:
    lines = []
    for index in range(30):
        lines.append(
            json.dumps({"text": f"t{index}", "label": index % 2}) if index % 3 else '{"text": "x", "label": []}'
        )
        if index % 7 == 0:
            lines.append("")
    lines.insert(5, "{bad json")
    path = write_lines(tmp_path / "d.jsonl", lines)
    data = load_examples(path, skip_invalid=True)
    assert len(data.examples) + len(data.rejected) == 31
    assert len(data.rejected) == 11
    assert [p.line for p in data.rejected] == sorted(p.line for p in data.rejected)
    first5 = load_examples(path, skip_invalid=True, max_rows=5)
    assert first5.examples == data.examples[:5]
    assert [str(p) for p in first5.rejected] == [str(p) for p in data.rejected]
    with pytest.raises(UserError):
        load_examples(path, skip_invalid=True, max_rows=0)


def test_every_row_invalid_is_user_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ['{"text": ""}', '{"text": " "}'])
    with pytest.raises(UserError, match=r"all 2 rows are invalid.*line 1.*empty_field"):
        load_examples(path, skip_invalid=True)
    garbage = write_lines(tmp_path / "g.jsonl", ["nope", "[]"])
    with pytest.raises(UserError, match=r"all 2 rows are invalid.*invalid_json"):
        load_examples(garbage, skip_invalid=True)
    assert error_of(garbage).code == "invalid_json"


def test_system_prompt(tmp_path: Path) -> None:
    chat = load_examples(write_jsonl(tmp_path / "c.jsonl", ROWS["chat"]), system_prompt="SYS").examples
    assert chat[0].messages[0] == {"role": "system", "content": "SYS"} and len(chat[0].messages) == 3
    assert chat[1].messages[0] == {"role": "system", "content": "be brief"} and len(chat[1].messages) == 5
    for name in ("alpaca", "prompt_completion", "text_label"):
        example = load_examples(write_jsonl(tmp_path / f"{name}.jsonl", ROWS[name]), system_prompt="SYS").examples[0]
        assert example.messages[0] == {"role": "system", "content": "SYS"}
        assert example.prompt_messages[0]["content"] == "SYS"
    text = load_examples(write_jsonl(tmp_path / "t.jsonl", ROWS["text"]), system_prompt="SYS").examples[0]
    assert text.messages == () and text.text == "Once upon a time."
    plain = load_examples(write_jsonl(tmp_path / "p.jsonl", ROWS["alpaca"])).examples[0]
    assert plain.messages[0]["role"] == "user"


def test_summarize_rejected(tmp_path: Path) -> None:
    assert summarize_rejected([]) == "no rows rejected"
    lines = ['{"text": ""}'] * 3 + ["bad"] * 2 + ['{"text": "ok"}']
    data = load_examples(write_lines(tmp_path / "d.jsonl", lines), skip_invalid=True)
    report = summarize_rejected(data.rejected, limit=2)
    assert report.splitlines()[0] == "5 rows rejected (empty_field 3, invalid_json 2):"
    assert f"{tmp_path / 'd.jsonl'}:1: " in report and "[empty_field]" in report
    assert report.splitlines()[-1] == "  ... and 3 more"


# --- real data --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not ALPACA_REAL.exists(), reason="shared alpaca sample not present")
def test_real_alpaca_sample() -> None:
    data = load_examples(ALPACA_REAL)
    assert data.format == "alpaca" and len(data.examples) == 2000 and data.rejected == []
    assert all(example.target for example in data.examples)


@pytest.mark.skipif(not SST2_DEV_REAL.exists(), reason="shared sst2 dev set not present")
def test_real_sst2_dev() -> None:
    data = load_examples(SST2_DEV_REAL)
    assert data.format == "text_label" and len(data.examples) == 872
    assert {example.target for example in data.examples} == {"0", "1"}
