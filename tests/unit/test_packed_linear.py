"""Linears on MKL-packed weights give `F.linear`'s numbers for every row count, and are undone after the block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunesmith.compat.packed_linear import available, packed_linears

pytestmark = pytest.mark.unit


@pytest.mark.skipif(not available(), reason="this torch build has no MKL packed sgemm")
@pytest.mark.parametrize("rows", [1, 3, 4, 7, 8, 9])
def test_packed_linear_equals_the_plain_one_for_any_row_count_and_is_undone(rows):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 5, bias=False))
    x = torch.randn(rows, 1, 40)
    with torch.inference_mode():
        expected = model(x)
        with packed_linears(model, 8) as count:
            assert count == 2 and "forward" in vars(model[0])
            got = model(x)
    assert torch.allclose(got, expected, atol=1e-5) and got.shape == expected.shape
    assert "forward" not in vars(model[0]) and "forward" not in vars(model[2])


def test_bf16_weights_are_left_alone():
    model = nn.Linear(8, 8).to(torch.bfloat16)
    with packed_linears(model, 8) as count:
        assert count == 0


@pytest.mark.skipif(not available(), reason="this torch build has no MKL packed sgemm")
def test_packed_calls_are_counted_and_an_instance_forward_set_by_someone_else_is_left():
    from tunesmith.compat.packed_linear import packed_calls

    model = nn.Linear(8, 8)
    before = packed_calls()
    with torch.inference_mode(), packed_linears(model, 4):
        model(torch.randn(4, 8))
        model(torch.randn(1, 8))  # below half the rows: the plain product
        assert packed_calls() == before + 1
        model.forward = lambda x: x  # e.g. a library re-kernelizing the model meanwhile
    assert vars(model).get("forward") is not None


def test_nothing_is_packed_when_the_copy_would_take_over_half_the_available_memory(monkeypatch):
    import tunesmith.compat.packed_linear as packed_linear

    model = nn.Linear(64, 64)  # 16 KB of fp32 weight
    monkeypatch.setattr(packed_linear, "available_bytes", lambda: 20_000)
    with packed_linears(model, 8) as count:
        assert count == 0 and "forward" not in vars(model)
