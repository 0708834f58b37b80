"""Scenario 9 of RELIABILITY.md: 1,000 fuzzed JSONL files through the data loader and the data checker.

Each Hypothesis example (derandomized, so the same 1,000 files every run) is a JSONL file of 1-12 lines drawn
from the unit fuzz test's line strategy (tests/unit/test_data_fuzz.py: valid rows of every format, mutated rows,
random bytes, random JSON, cut lines, blank lines, BOMs) plus the nastier lines below (huge rows, deep nesting,
1e999 / NaN, lone surrogates, NUL bytes, chat-template markers and Jinja in content, duplicate keys, CR line
ends). Each file goes through
- `load_examples` strict and lenient (`data.skip_invalid`), as training reads data, and
- `check_files` with the tiny tokenizer (schema, duplicates, leakage, labels, token lengths), as
  `tunesmith data check` and the pre-training check do,
with a format drawn from auto and every registered one.

Asserted for every file: nothing but `UserError` escapes; each call finishes in under 5 s (and SIGALRM turns a
hang into a failure after 20 s); every non-blank line is accounted for exactly once, as an example or as a bad
line with its 1-based line number and an identifier-like error code; the checker reports exactly the lines the
lenient loader rejected; the strict loader stops at the first of them, with the same line and code.
"""

from __future__ import annotations

import importlib.util
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.config import load_config
from tunesmith.data import FORMATS, load_examples
from tunesmith.data.quality.check import check_files
from tunesmith.errors import DataError, UserError

pytestmark = pytest.mark.integration
EXAMPLES = 1000
PER_CALL_S = 5.0
HANG_S = 20


def _unit_fuzz():
    """tests/unit/test_data_fuzz.py, loaded by path (tests are not a package)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_data_fuzz.py"
    spec = importlib.util.spec_from_file_location("reliability_unit_data_fuzz", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unit = _unit_fuzz()
NASTY = [
    b'{"prompt": "' + b"word " * 20_000 + b'", "completion": "x"}',  # a 100 kB row
    b'{"prompt": "p", "completion": "' + "\u00e9\u4e2d".encode() * 5_000 + b'"}',
    b"[" * 100_000,
    b'{"text": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    b'{"text": 1e999, "label": 1}',
    b'{"text": NaN, "label": Infinity}',
    b'{"prompt": "\\ud800", "completion": "\\udfff"}',
    b'{"text": "a\\ud83d", "label": "b"}',
    b'{"prompt": "a\\u0000b", "completion": "\\u0000"}',
    b'{"prompt": "a\x00b", "completion": "c"}',
    b'{"prompt": "p", "prompt": "q", "completion": "c"}',
    b'{"messages": [{"role": "user", "content": "<|im_start|>assistant\\nhi<|im_end|>"},'
    b' {"role": "assistant", "content": "<|im_end|><|endoftext|>"}]}',
    b'{"messages": [{"role": "user", "content": "{{ 7*7 }}{% for x in range(10**9) %}{% endfor %}"},'
    b' {"role": "assistant", "content": "{{ cycler.__init__.__globals__ }}"}]}',
    b'{"messages": [{"role": "assistant", "content": "only me"}]}',
    b'{"messages": []}',
    b'{"messages": [' + b'{"role": "user", "content": "u"}, ' * 500 + b'{"role": "assistant", "content": "a"}]}',
    b'{"instruction": "", "input": "", "output": ""}',
    b'{"instruction": "i", "output": "o", "__proto__": {"x": 1}}',
    b'{"tokens": ["a", "b"], "ner_tags": ["O"]}',
    b'{"tokens": [], "ner_tags": []}',
    b'{"text": "t", "label": [1, 2]}',
    b'{"text": "t", "label": {"a": 1}}',
    b'{"prompt": "p", "completion": "c"}\r',
    b"\x1e{}",
    b'\xef\xbb\xbf{"text": "bom in the middle"}',
    b"\xc0\xaf",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: invalid UTF-8
    b'{"prompt": 12345678901234567890123456789, "completion": true}',
    b'"just a string"',
    b"null",
]
# Valid rows with arbitrary text (any Unicode but lone surrogates, which JSON escapes anyway), so most files
# get past format detection and the checker's token-length pass sees strange content too.
texts = st.text(min_size=1, max_size=40) | st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": texts})
ROW_FAMILIES = [
    st.fixed_dictionaries({"prompt": texts, "completion": texts}),
    st.fixed_dictionaries({"instruction": texts, "output": texts}, optional={"input": texts}),
    st.fixed_dictionaries({"messages": st.lists(message, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"text": texts, "label": texts | st.integers(0, 3)}),
    st.fixed_dictionaries({"text": texts}),
]


@st.composite
def files(draw) -> list[bytes]:
    """1-12 lines: mostly rows of one format (so detection succeeds and the checker goes deep), with bad lines."""
    family = draw(st.sampled_from(ROW_FAMILIES)).map(unit.json_line)
    return draw(
        st.lists(st.one_of(unit.lines, st.sampled_from(NASTY), family, family, family), min_size=1, max_size=12)
    )


FORMAT_NAMES = ["auto", *FORMATS]


@contextmanager
def hang_guard(seconds: int):
    """Fail (TimeoutError) instead of hanging."""

    def alarm(_signum, _frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def timed(call, *args, **kwargs):
    """(result or the UserError raised, seconds); any other exception propagates and fails the example."""
    started = time.perf_counter()
    try:
        with hang_guard(HANG_S):
            result = call(*args, **kwargs)
    except UserError as exc:
        result = exc
    seconds = time.perf_counter() - started
    assert seconds < PER_CALL_S, f"{call.__name__} took {seconds:.1f} s"
    return result


def non_blank(data: bytes) -> set[int]:
    """The 1-based numbers of the lines the loader must account for."""
    body = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    return {n for n, line in enumerate(body, start=1) if line.strip(b" \t\r\n")}


_configs: dict[str, object] = {}


def check_config(fmt: str):
    if fmt not in _configs:
        _configs[fmt] = load_config(None, [f"data.format={fmt}", "data.max_length=64"])
    return _configs[fmt]


FIGURES = {"files": 0, "lines": 0, "bad_lines": 0, "loader_user_errors": 0, "checked": 0, "tokenized_rows": 0}


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,  # timed() bounds each call instead: Hypothesis' deadline would also count its own work
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(
    body=files(),
    fmt=st.one_of(st.just("auto"), st.just("auto"), st.sampled_from(FORMAT_NAMES)),  # auto half the time
)
def test_fuzzed_jsonl_through_loader_and_checker(tmp_path_factory, tiny_tokenizer, body, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    data = b"\n".join(body)
    path.write_bytes(data)
    expected = non_blank(data)
    FIGURES["files"] += 1
    FIGURES["lines"] += len(expected)

    lenient = timed(load_examples, path, format=fmt, skip_invalid=True)
    strict = timed(load_examples, path, format=fmt, skip_invalid=False)
    report = timed(check_files, {"train": str(path)}, check_config(fmt), tiny_tokenizer)

    bad: set[int] | None = None
    if not isinstance(lenient, UserError):
        good = [e.line for e in lenient.examples]
        bad_list = [e.line for e in lenient.rejected]
        for error in lenient.rejected:
            unit.check_data_error(error)
        for example in lenient.examples:
            unit.check_example(example)
        assert len(good) + len(bad_list) == len(expected)
        assert set(good) | set(bad_list) == expected and not set(good) & set(bad_list)
        bad = set(bad_list)
        FIGURES["bad_lines"] += len(bad)
        if lenient.rejected:
            first = min(lenient.rejected, key=lambda e: e.line)
            assert isinstance(strict, DataError), "strict loading accepted a file with bad lines"
            assert (strict.line, strict.code) == (first.line, first.code)
        else:
            assert not isinstance(strict, UserError)
            assert [e.line for e in strict.examples] == good
    else:
        FIGURES["loader_user_errors"] += 1
        assert isinstance(strict, UserError)
        assert "\n" not in str(lenient) and "\n" not in str(strict)
        if isinstance(strict, DataError):
            unit.check_data_error(strict)
            assert strict.line in expected

    if isinstance(report, UserError):
        assert "\n" not in str(report)
        return
    FIGURES["checked"] += 1
    FIGURES["tokenized_rows"] += report.lengths.get("train", {}).get("rows", 0)
    rows = [row for f in report.findings if f.kind == "schema" for row in f.rows]
    codes = {f.code for f in report.findings if f.kind == "schema"}
    assert all(code.isidentifier() for code in codes)
    reported = [row["line"] for row in rows]
    assert all(isinstance(line, int) and line in expected for line in reported)
    assert len(reported) == len(set(reported)), "a line reported twice"
    assert report.files["train"]["rows"] == len(expected)
    assert report.files["train"]["invalid"] == len(reported)
    if bad is not None:
        assert set(reported) == bad, "the checker and the loader disagree on the bad lines"


def test_fuzz_figures():
    """Runs after the fuzz test (file order): it really exercised 1,000 files and many bad lines."""
    if FIGURES["files"] == 0:
        pytest.skip("the fuzz test did not run in this session")
    print(f"fuzz: {FIGURES}")
    assert FIGURES["files"] >= EXAMPLES
    assert FIGURES["bad_lines"] > 1000 and FIGURES["checked"] > EXAMPLES // 2
