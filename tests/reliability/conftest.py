"""Fixtures of tests/reliability."""

from __future__ import annotations

import pytest
from reliability_helpers import tiny_sets


@pytest.fixture
def sets_for(tiny_model_dir, qa_data, tmp_path):
    """A config file and `--set` options for a tiny run named `name` under tmp_path/runs."""
    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  max_steps: 4\n")

    def build(name: str, *extra: str) -> list[str]:
        args = tiny_sets(tiny_model_dir, qa_data, tmp_path / "runs", name, *extra)
        return [str(config), *(x for a in args for x in ("--set", a))]

    return build
