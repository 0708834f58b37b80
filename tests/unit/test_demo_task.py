"""The demo's generator and checker."""

from __future__ import annotations

import json

import pytest

from tunesmith.recipes import demo_task

pytestmark = pytest.mark.unit


def test_splits_share_no_input(tmp_path):
    paths = demo_task.write_splits(tmp_path, 50, 10, 10, seed=3)
    inputs = {name: {json.loads(line)["input"] for line in p.read_text().splitlines()} for name, p in paths.items()}
    assert [len(v) for v in inputs.values()] == [50, 10, 10]
    assert not (inputs["train"] & inputs["test"]) and not (inputs["val"] & inputs["test"])


def test_checker_accepts_any_json_layout_and_rejects_wrong_values():
    target = json.dumps({"customer": "Ana Costa", "item": "desk lamp", "quantity": 2, "city": "Oslo"})
    pretty = '{\n  "city": "Oslo", "customer": "Ana Costa",\n  "item": "desk lamp", "quantity": 2}'
    assert demo_task.same_order(pretty, target)
    assert not demo_task.same_order(pretty.replace("2}", '"2"}'), target)
    assert not demo_task.same_order("Sure! Here is the JSON", target)
