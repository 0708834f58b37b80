"""The CPU training attention: batched-matmul causal attention equals SDPA, and applies only where it may."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tunesmith.compat import attention
from tunesmith.compat.attention import NAME, cpu_causal_attention, matmul_attention, matmul_causal_attention
from tunesmith.data.batching import collate
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.train.numerics import token_loss_sum

pytestmark = pytest.mark.unit


def _qkv(batch=3, heads=6, kv_heads=2, length=11, dim=8, dtype=torch.float32):
    torch.manual_seed(0)
    make = lambda h: torch.randn(batch, h, length, dim, dtype=dtype, requires_grad=True)  # noqa: E731
    return make(heads), make(kv_heads), make(kv_heads)


def _grads_of(fn, tensors):
    out = fn(*tensors)
    out.backward(torch.ones_like(out) + torch.arange(out.numel()).view_as(out) % 3)
    grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return out.detach(), grads


@pytest.mark.parametrize("block", [128, 4])  # one block; blocks of 4 query positions, the last one partial
@pytest.mark.parametrize("kv_heads", [1, 2, 6])
def test_matmul_attention_equals_sdpa_forward_and_backward(kv_heads, block, monkeypatch):
    monkeypatch.setattr(attention, "_QUERY_BLOCK", block)
    q, k, v = _qkv(kv_heads=kv_heads)
    ours, our_grads = _grads_of(lambda q, k, v: matmul_causal_attention(q, k, v, 0.3), (q, k, v))
    reference, ref_grads = _grads_of(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True), (q, k, v)
    )
    assert torch.allclose(ours, reference, atol=1e-5)
    for mine, theirs in zip(our_grads, ref_grads, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_matmul_attention_in_bf16_stays_close_to_float64():
    q, k, v = _qkv(batch=2, heads=9, kv_heads=3, length=300, dim=64, dtype=torch.bfloat16)
    exact = F.scaled_dot_product_attention(
        *(t.detach().double() for t in (q, k, v)), is_causal=True, scale=0.125, enable_gqa=True
    )
    ours = matmul_causal_attention(q, k, v, 0.125).detach().double()
    assert float((ours - exact).norm() / exact.norm()) < 2e-2


@pytest.mark.parametrize("block", [128, 4])
def test_queries_after_a_cached_prefix_see_all_of_it(block, monkeypatch):
    """Keys of P earlier positions come first; query i (position P + i) sees keys 0..P + i."""
    monkeypatch.setattr(attention, "_QUERY_BLOCK", block)
    q, k, v = _qkv(length=11)
    q = q[:, :, 5:].detach()  # the last 6 positions query all 11 keys
    k, v = k.detach(), v.detach()
    allowed = torch.ones(11, 11, dtype=torch.bool).tril()[5:]
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=0.3, enable_gqa=True)
    torch.testing.assert_close(matmul_causal_attention(q, k, v, 0.3), reference, atol=1e-5, rtol=1e-5)
    out, _ = cpu_causal_attention(
        _Causal(), q, k, v, allowed[None, None], scaling=0.3, **{attention.AFTER_PREFIX: True}
    )
    torch.testing.assert_close(out.transpose(1, 2), reference, atol=1e-5, rtol=1e-5)


class _Causal(torch.nn.Module):
    is_causal = True


def test_masks_caches_and_non_causal_modules_go_to_sdpa(monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "sdpa_attention_forward", lambda *a, **kw: calls.append(kw) or ("sdpa", None))
    q, k, v = _qkv()
    mask = torch.ones(3, 1, 11, 11, dtype=torch.bool)
    assert cpu_causal_attention(_Causal(), q, k, v, mask)[0] == "sdpa"
    assert cpu_causal_attention(torch.nn.Module(), q, k, v, None)[0] == "sdpa"  # no is_causal: not known causal
    assert cpu_causal_attention(_Causal(), q, k, v, None, dropout=0.1)[0] == "sdpa"
    assert cpu_causal_attention(_Causal(), q, k[:, :, :5], v[:, :, :5], None)[0] == "sdpa"  # a KV cache
    assert cpu_causal_attention(_Causal(), q, k, v, None, softcap=30.0)[0] == "sdpa"
    assert len(calls) == 5
    with torch.inference_mode():  # forward-only passes take the batched matmuls too
        assert cpu_causal_attention(_Causal(), q, k, v, None)[0].shape == (3, 11, 6, 8)
    out, _ = cpu_causal_attention(_Causal(), q, k, v, None, scaling=0.3)
    assert out.shape == (3, 11, 6, 8)  # (batch, length, heads, dim), as transformers expects


@pytest.fixture
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def _batch(tiny_tokenizer):
    rows = [
        Example(line=i, messages=({"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "ok " * i}))
        for i in range(1, 6)
    ]
    return collate(encode_examples(tiny_tokenizer, rows, 64)[0], tiny_tokenizer.pad_token_id)


def test_matmul_attention_switches_the_model_and_restores_it(model, tiny_tokenizer, monkeypatch):
    used = []
    fast_path = attention.matmul_causal_attention
    monkeypatch.setattr(attention, "matmul_causal_attention", lambda *a: used.append(1) or fast_path(*a))
    assert model.config._attn_implementation == "sdpa"
    batch = _batch(tiny_tokenizer)
    model.train()
    reference, n = token_loss_sum(model, batch)
    with matmul_attention(model) as on:
        assert on and model.config._attn_implementation == NAME
        fast, _ = token_loss_sum(model, batch)
    assert model.config._attn_implementation == "sdpa"
    assert len(used) == model.config.num_hidden_layers  # every layer took the fast path (right padding: no mask)
    assert torch.allclose(fast, reference, atol=1e-5 * n)
    with matmul_attention(model, enabled=False) as on:
        assert not on and model.config._attn_implementation == "sdpa"


def test_a_model_on_eager_attention_is_left_alone(tiny_model_dir):
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    with matmul_attention(eager) as on:
        assert not on and eager.config._attn_implementation == "eager"
