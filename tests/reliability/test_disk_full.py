"""Scenario 4, disk full while saving (RLIMIT_FSIZE, as `ulimit -f` does): one `error:` line naming the path,
exit 2, no staging or temporary debris, earlier checkpoints byte-identical, status `failed`."""

from __future__ import annotations

import json
import resource

import pytest
from reliability_helpers import cli, last_error_line, tree_hashes

pytestmark = pytest.mark.integration
LIMIT = 100_000  # bytes: above the small JSON files, below full fine-tuning's weights (~0.4 MB) and optimizer


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.parametrize(
    "where,extra",
    [
        ("checkpoint", ["train.save_every=1", "train.eval_every=1000"]),  # the checkpoint writer fails first
        ("best weights", ["train.save_every=1000", "train.eval_every=3"]),  # best/ fails first
    ],
)
def test_disk_full_while_saving(where, extra, tmp_path, sets_for):
    first = cli("train", "--set", "method.name=full", *sets_for("full", "train.max_steps=2", "train.save_every=2"))
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs" / "full"
    before = tree_hashes(run / "checkpoints")
    args = sets_for("full", "train.max_steps=4", *extra)
    result = cli("train", "--resume", "--set", "method.name=full", *args, preexec_fn=_limit_file_size)
    line = last_error_line(result)
    assert result.returncode == 2 and "could not write" in line and str(run) in line and "intact" in line, line
    assert tree_hashes(run / "checkpoints") == before  # the complete checkpoint is untouched
    debris = [p for p in run.rglob("*") if p.name.startswith(".staging") or ".tmp-" in p.name]
    assert debris == []
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    again = cli("train", "--resume", "--set", "method.name=full", *args)  # space back: the run goes on
    assert again.returncode == 0, again.stderr
