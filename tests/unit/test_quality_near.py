"""Normalisation and the near-duplicate engine (MinHash LSH + exact Jaccard confirmation)."""

from __future__ import annotations

import pytest
from scipy.cluster.hierarchy import DisjointSet

from tunesmith.data.example import Example
from tunesmith.data.quality.near import Sketcher, banding, first_matches, jaccard, merge_near, min_shingles
from tunesmith.data.quality.text import normalize, views

pytestmark = pytest.mark.unit

A = "the committee reviewed every proposal carefully before the annual meeting"


def test_normalize_folds_case_punctuation_and_whitespace():
    assert normalize("  Hello,   WORLD!! ") == normalize("hello world") == "hello world"
    assert normalize("it's") == normalize("it 's") == "it s"
    assert normalize("Ｆｕｌｌ width") == "full width"


def test_views_leave_out_system_turns():
    example = Example(
        line=1,
        messages=(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there!"},
            {"role": "assistant", "content": "Hello."},
        ),
    )
    seen = views(example)
    assert (seen.input, seen.output, seen.whole) == ("hi there", "hello", "hi there hello")
    raw = views(Example(line=2, text="Raw TEXT."))
    assert raw.input == raw.whole == "raw text" and raw.output is None


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
def test_banding_finds_pairs_at_the_threshold(threshold):
    bands, rows = banding(threshold, 128)
    assert bands * rows <= 128
    assert 1 - (1 - threshold**rows) ** bands >= 0.99


def test_short_texts_are_only_compared_exactly():
    assert min_shingles(0.8) == 27
    sketcher = Sketcher(0.8, 128)
    assert sketcher.sign(["say the number 3"]) == [None]
    assert first_matches([(0, "say the number 3")], [(1, "say the number 4")], sketcher) == {}


def test_near_copies_are_merged_and_others_are_not():
    texts = [
        A,
        A.replace("annual", "yearly"),
        A.replace("carefully", "carefuly"),
        "a completely different sentence here",
    ]
    groups = DisjointSet(range(len(texts)))
    merge_near(list(enumerate(texts)), Sketcher(0.8, 128), groups)
    assert groups.connected(0, 1) and groups.connected(0, 2) and not groups.connected(0, 3)
    assert jaccard(texts[0], texts[1]) >= 0.8 > jaccard(texts[0], texts[3])


def test_first_matches_is_the_same_whichever_side_is_indexed():
    sketcher = Sketcher(0.8, 128)
    queries = [(0, A.replace("meeting", "meetings")), (1, "nothing like the others at all, really not")]
    few = [(5, A)]
    many = few + [(i, f"filler sentence number {i} with some words in it") for i in range(6, 12)]
    assert first_matches(queries, few, sketcher) == first_matches(queries, many, sketcher)
    key, similarity = first_matches(queries, many, sketcher)[0]
    assert key == 5 and similarity >= 0.8
