"""The retention summary of a task sequence against hand-computed values."""

from __future__ import annotations

import pytest

from tunesmith.evaluate.retention import retention_summary

MATRIX = [[0.8, 0.3, 0.1], [0.6, 0.9, 0.2], [0.5, 0.7, 0.95]]  # R[stage][task]
BASE = [0.5, 0.25, 0.05]
METRICS = ["accuracy", "perplexity", "accuracy"]


def test_average_backward_forward_transfer_and_forgetting():
    summary = retention_summary(MATRIX, BASE, ["accuracy"] * 3)
    assert summary["average"] == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert summary["bwt"] == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)
    assert summary["fwt"] == pytest.approx(((0.3 - 0.25) + (0.2 - 0.05)) / 2)
    assert summary["forgetting_per_task"] == pytest.approx([0.8 - 0.5, 0.9 - 0.7])  # best earlier score - final
    assert summary["forgetting"] == pytest.approx(0.25)


def test_a_lower_is_better_metric_counts_a_rise_as_forgetting():
    matrix = [[0.8, 10.0], [0.7, 5.0]]  # task 2 scored by perplexity: 10 before its stage, 5 after
    summary = retention_summary(matrix, [0.5, 12.0], ["accuracy", "perplexity"])
    assert summary["fwt"] == pytest.approx(-(10.0 - 12.0))  # perplexity fell before its own stage: a gain
    assert summary["bwt"] == pytest.approx(0.7 - 0.8)
    rose = retention_summary([[0.8, 10.0, 0.1], [0.8, 5.0, 0.2], [0.8, 8.0, 0.3]], [0.5, 12.0, 0.0], METRICS)
    assert rose["forgetting_per_task"] == pytest.approx([0.0, 8.0 - 5.0])  # perplexity back up from 5 to 8
    assert rose["bwt"] == pytest.approx((0.0 - (8.0 - 5.0)) / 2)


def test_a_ragged_matrix_is_refused():
    with pytest.raises(ValueError, match="2x2"):
        retention_summary([[0.1, 0.2]], [0.0, 0.0], ["accuracy", "accuracy"])
