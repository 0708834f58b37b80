"""Fuzz the data loader with malformed files: only UserErrors may escape, and no row may be lost."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data import FORMATS, Example, load_examples
from tunesmith.errors import DataError, UserError

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ["instruction", "input", "output", "prompt", "completion", "messages", "text", "label", "role", "content"]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
turns = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["system", "user", "assistant", "human", "", "USER"]) | json_values,
        "content": st.text(max_size=12) | json_values,
    },
)
field_values = json_values | st.text(max_size=20) | st.lists(turns, max_size=4)
known_dicts = st.dictionaries(st.sampled_from(KEYS), field_values, max_size=5)
VALID_ROWS = [
    {"instruction": "i", "input": "x", "output": "o"},
    {"prompt": "p", "completion": "c"},
    {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]},
    {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
    {"text": "t", "label": 1},
    {"text": "t"},
]
valid_dicts = st.sampled_from(VALID_ROWS)
mutated_dicts = st.tuples(valid_dicts, st.sampled_from(KEYS), field_values).map(lambda t: {**t[0], t[1]: t[2]})


def json_line(value: object) -> bytes:
    """A value as one JSONL line (lone surrogates kept as JSON escapes)."""
    return json.dumps(value).encode("utf-8")


lines = st.one_of(
    valid_dicts.map(json_line),
    mutated_dicts.map(json_line),
    st.binary(max_size=30),
    json_values.map(json_line),
    known_dicts.map(json_line),
    known_dicts.map(json_line).map(lambda line: line[: len(line) // 2]),
    st.sampled_from([b"", b"   ", b"\r", b"\t \r", b"\xef\xbb\xbf", b"\xff\xfe", b"{}", b"[" * 3000]),
)


def non_blank_lines(data: bytes) -> int:
    """The number of lines the loader must account for: those with more than JSON whitespace."""
    return sum(1 for line in data.removeprefix(b"\xef\xbb\xbf").split(b"\n") if line.strip(b" \t\r\n"))


def check_data_error(error: DataError) -> None:
    """Every data problem is one line, located, and coded."""
    assert isinstance(error.line, int) and error.line >= 1
    assert error.code and error.code.isidentifier()
    assert "\n" not in str(error)


def check_example(example: Example) -> None:
    """A loaded example satisfies the Example contract."""
    if example.text is not None:
        assert isinstance(example.text, str) and example.text.strip() and example.messages == ()
        return
    assert all(set(turn) == {"role", "content"} for turn in example.messages)
    assert all(turn["role"] in ("system", "user", "assistant") for turn in example.messages)
    assert all(isinstance(turn["content"], str) for turn in example.messages)
    assert isinstance(example.target, str)


def load_both_ways(path: Path, fmt: str) -> None:
    """Load strictly and leniently; check what comes back, allowing only UserErrors out."""
    try:
        data = load_examples(path, format=fmt, skip_invalid=True)
    except DataError as exc:
        check_data_error(exc)
    except UserError:
        pass
    else:
        if path.suffix == ".jsonl":
            assert len(data.examples) + len(data.rejected) == non_blank_lines(path.read_bytes())
        assert data.examples and data.format in FORMATS
        for error in data.rejected:
            check_data_error(error)
        for example in data.examples:
            check_example(example)
    try:
        strict = load_examples(path, format=fmt, skip_invalid=False)
    except DataError as exc:
        check_data_error(exc)
    except UserError:
        pass
    else:
        assert strict.rejected == []
        for example in strict.examples:
            check_example(example)


@FUZZ
@given(body=st.lists(lines, min_size=1, max_size=12), fmt=st.sampled_from(["auto", *FORMATS]))
def test_fuzz_jsonl(tmp_path_factory: pytest.TempPathFactory, body: list[bytes], fmt: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_bytes(b"\n".join(body))
    load_both_ways(path, fmt)


@FUZZ
@given(
    rows=st.lists(valid_dicts | mutated_dicts | known_dicts | json_values, max_size=8),
    fmt=st.sampled_from(["auto", *FORMATS]),
)
def test_fuzz_json_array(tmp_path_factory: pytest.TempPathFactory, rows: list[object], fmt: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "data.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    load_both_ways(path, fmt)


cells = st.text(alphabet=st.sampled_from('ab ,"\n\r\t\x00é'), max_size=8) | st.sampled_from(["a", "1", "label"])


@FUZZ
@given(
    header=st.sampled_from([["text", "label"], ["instruction", "input", "output"], ["prompt", "completion"]])
    | st.lists(st.sampled_from(KEYS) | cells, min_size=1, max_size=4, unique=True),
    rows=st.lists(st.lists(cells, max_size=5), max_size=6),
    ragged=st.booleans(),
    garbage=st.binary(max_size=12) | st.just(b""),
    fmt=st.sampled_from(["auto", *FORMATS]),
    suffix=st.sampled_from([".csv", ".tsv"]),
)
def test_fuzz_csv(
    tmp_path_factory: pytest.TempPathFactory,
    header: list[str],
    rows: list[list[str]],
    ragged: bool,
    garbage: bytes,
    fmt: str,
    suffix: str,
) -> None:
    if not ragged:
        rows = [(row + ["a"] * len(header))[: len(header)] for row in rows]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",")
    writer.writerows([header, *rows])
    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
    path.write_bytes(buffer.getvalue().encode("utf-8", errors="surrogatepass") + garbage)
    load_both_ways(path, fmt)
