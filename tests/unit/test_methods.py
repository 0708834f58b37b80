"""Methods on tiny models: layer finding, what each method freezes, learning-rate groups, the unfreezing schedule,
the prompt-learning loss path, and the regularisation knobs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, BertConfig, BertModel, get_scheduler

from tunesmith.config import load_config
from tunesmith.config.components import METHOD_CONFIGS
from tunesmith.config.schema import TrainConfig
from tunesmith.data.batching import collate
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.errors import UserError
from tunesmith.methods import (
    METHODS,
    count_parameters,
    format_report,
    freeze,
    gradual_unfreeze,
    layerwise_lr,
    parameter_report,
    prefix_tuning,
    prompt_tuning,
    transformer_layers,
)
from tunesmith.methods.freeze import FreezeConfig
from tunesmith.methods.gradual_unfreeze import GradualUnfreezeConfig
from tunesmith.methods.layers import layer_groups
from tunesmith.methods.prefix_tuning import PrefixTuningConfig
from tunesmith.methods.prompt_tuning import PromptTuningConfig
from tunesmith.train.checkpoint import TrainState
from tunesmith.train.numerics import IGNORE_INDEX, shifted_targets, token_loss_sum
from tunesmith.train.regularization import add_neftune, set_dropout

pytestmark = pytest.mark.unit


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture
def batch(tiny_tokenizer):
    rows = [
        Example(
            line=i + 1,
            messages=({"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "yes " * (1 + i)}),
        )
        for i in range(4)
    ]
    data, _ = encode_examples(tiny_tokenizer, rows, 64)
    return collate(data, tiny_tokenizer.pad_token_id)


def tiny_bert() -> BertModel:
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    return BertModel(cfg)


def test_every_method_has_a_config_and_validates():
    assert set(METHODS) == set(METHOD_CONFIGS)
    for name, method in METHODS.items():
        cfg = load_config(None, [f"method.name={name}"])
        assert cfg.method.name == name and type(cfg.method) is method.config


def test_a_method_registers_its_own_config(monkeypatch):
    """A new method needs its file and one register line: the config accepts it and dumps every option."""
    from typing import Literal

    from tunesmith.config import dump_config
    from tunesmith.config.schema import MethodSection
    from tunesmith.methods import Method, register
    from tunesmith.methods.base import load_whole

    class ToyConfig(MethodSection):
        name: Literal["toy"] = "toy"
        strength: int = 3

    monkeypatch.setattr("tunesmith.methods.METHODS", dict(METHODS))
    monkeypatch.setattr("tunesmith.config.components.METHOD_CONFIGS", dict(METHOD_CONFIGS))
    register(Method("toy", ToyConfig, lambda m, c: m, lambda m, t, d: d, load_whole, frozen_base=False))
    cfg = load_config(None, ["method.name=toy", "method.strength=5"])
    assert isinstance(cfg.method, ToyConfig) and cfg.method.strength == 5
    assert "strength: 5" in dump_config(cfg)
    with pytest.raises(Exception, match="Did you mean"):
        load_config(None, ["method.name=toy", "method.strenght=5"])
    with pytest.raises(ValueError, match="already registered"):
        register(Method("toy", ToyConfig, lambda m, c: m, lambda m, t, d: d, load_whole, frozen_base=False))


def test_transformer_layers_for_llama_and_bert(model):
    assert transformer_layers(model) is model.model.layers
    bert = tiny_bert()
    assert transformer_layers(bert) is bert.encoder.layer
    groups = list(layer_groups(bert))
    assert groups == ["embeddings", "layers.0", "layers.1", "layers.2", "head"]
    assert all(".embeddings." in f".{n}" for n, _ in layer_groups(bert)["embeddings"])
    assert all(n.startswith("pooler.") for n, _ in layer_groups(bert)["head"])
    with pytest.raises(UserError, match="cannot find the transformer layers"):
        transformer_layers(torch.nn.Linear(2, 2))


def test_parameter_report_adds_up(model):
    freeze.apply(model, FreezeConfig(freeze_layers=1))
    report = parameter_report(model)
    assert (report["trainable"], report["trainable"] + report["frozen"]) == count_parameters(model)
    assert report["groups"]["embeddings"]["trainable"] == 0 and report["groups"]["layers.0"]["trainable"] == 0
    assert report["groups"]["layers.1"]["frozen"] == 0 and report["groups"]["head"]["frozen"] == 0
    assert format_report(report)[0].startswith("parameters: ")


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_rules(model):
    freeze.apply(model, FreezeConfig(freeze_layers=1, freeze_embeddings=True))
    assert _trainable(model) == {
        n for n, _ in model.named_parameters() if n.startswith(("model.layers.1.", "model.norm"))
    }
    cfg = FreezeConfig(freeze_embeddings=False, freeze_patterns=[r"mlp\."], train_patterns=[r"layers\.0\.mlp\.up"])
    freeze.apply(model, cfg)
    trainable = _trainable(model)
    assert "model.embed_tokens.weight" in trainable and "model.layers.0.mlp.up_proj.weight" in trainable
    assert "model.layers.1.mlp.down_proj.weight" not in trainable
    with pytest.raises(UserError, match="only 2 layers"):
        freeze.apply(model, FreezeConfig(freeze_layers=3))
    with pytest.raises(UserError, match="nothing would train"):
        freeze.apply(model, FreezeConfig(freeze_patterns=[".*"]))


def test_layerwise_lrs_decay_by_layer_and_keep_ratios_under_the_schedule(model):
    train = TrainConfig(lr=1e-3, warmup_ratio=0.5, weight_decay=0.1)
    groups = layerwise_lr.scaled_param_groups(model, train, decay=0.5)
    lr = {g["name"]: g["lr"] for g in groups}
    # 2 layers: head 1, top layer 0.5, bottom 0.25, embeddings (and the tied lm_head) 0.125.
    assert lr == pytest.approx(
        {
            "embeddings": 1.25e-4,
            "layers.0": 2.5e-4,
            "layers.0/no_decay": 2.5e-4,
            "layers.1": 5e-4,
            "layers.1/no_decay": 5e-4,
            "head/no_decay": 1e-3,
        }
    )
    assert {g["name"]: g["weight_decay"] for g in groups}["layers.0/no_decay"] == 0.0
    optimizer = torch.optim.AdamW(groups, lr=train.lr)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=4, num_training_steps=10)
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    now = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert 0 < now["head/no_decay"] < 1e-3
    for name, initial in lr.items():  # the LambdaLR scales every group by the same factor
        assert now[name] / now["head/no_decay"] == pytest.approx(initial / 1e-3)


def test_gradual_unfreeze_schedule(model):
    cfg = GradualUnfreezeConfig(every_steps=2)
    gradual_unfreeze.apply(model, cfg)
    hooks = gradual_unfreeze.METHOD.loop_hooks(model, cfg)
    held = {id(p) for g in hooks.param_groups(model, TrainConfig()) for p in g["params"]}
    assert held == {id(p) for p in model.parameters()}  # the optimizer holds every scheduled parameter up front
    opened = []
    for step in range(6):
        for hook in hooks.before_step:
            hook(TrainState(step=step))
        opened.append([g for g, named in layer_groups(model).items() if all(p.requires_grad for _, p in named)])
    top, two, everything = ["layers.1", "head"], ["layers.0", "layers.1", "head"], list(layer_groups(model))
    assert opened == [top, top, two, two, everything, everything]
    epochs = GradualUnfreezeConfig()  # default: one group per epoch
    assert [gradual_unfreeze.groups_open(TrainState(step=9, epoch=e), epochs) for e in range(3)] == [1, 2, 3]


def _manual_prompt_loss(peft_model, batch) -> torch.Tensor:
    """Prompt tuning by hand: prepend the soft prompt to the token embeddings, score the real tokens only."""
    base = peft_model.get_base_model()
    prompt = peft_model.prompt_encoder["default"].embedding.weight
    n_virtual, size = prompt.shape[0], batch["input_ids"].shape[0]
    embeds = torch.cat([prompt.expand(size, -1, -1), base.get_input_embeddings()(batch["input_ids"])], dim=1)
    mask = torch.cat([torch.ones(size, n_virtual, dtype=torch.long), batch["attention_mask"]], dim=1)
    logits = base(inputs_embeds=embeds, attention_mask=mask).logits[:, n_virtual:-1]
    targets = shifted_targets(batch["labels"])
    keep = targets != IGNORE_INDEX
    return F.cross_entropy(logits[keep], targets[keep], reduction="sum")


def test_prompt_tuning_loss_goes_through_the_soft_prompt(model, batch):
    plain, n_plain = token_loss_sum(model, batch)
    peft_model = prompt_tuning.apply(model, PromptTuningConfig(num_virtual_tokens=5, init_text="the quick fox"))
    loss, n = token_loss_sum(peft_model, batch)
    assert n == n_plain == int((shifted_targets(batch["labels"]) != IGNORE_INDEX).sum())
    assert torch.allclose(loss, _manual_prompt_loss(peft_model, batch), atol=1e-4)
    assert not torch.allclose(loss, plain, atol=1e-3)  # the prompt really was in the forward pass
    reference = peft_model(**batch).loss  # PEFT's own label handling: mean over the real, shifted labels
    assert torch.allclose(loss / n, reference, atol=1e-5)
    loss.backward()
    assert peft_model.prompt_encoder["default"].embedding.weight.grad.abs().sum() > 0


def test_prefix_tuning_loss_matches_peft(model, batch):
    peft_model = prefix_tuning.apply(model, PrefixTuningConfig(num_virtual_tokens=4))
    loss, n = token_loss_sum(peft_model, batch)
    assert torch.allclose(loss / n, peft_model(**batch).loss, atol=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in peft_model.parameters() if p.requires_grad)


def test_label_smoothing_in_training_only(model, batch):
    model.train()
    smoothed, n = token_loss_sum(model, batch, label_smoothing=0.1)
    logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits[:, :-1]
    targets = shifted_targets(batch["labels"])
    keep = targets != IGNORE_INDEX
    expected = F.cross_entropy(logits[keep], targets[keep], reduction="sum", label_smoothing=0.1)
    assert torch.allclose(smoothed, expected, atol=1e-4)
    model.eval()
    assert torch.allclose(token_loss_sum(model, batch, label_smoothing=0.1)[0], token_loss_sum(model, batch)[0])


def test_neftune_noise_only_while_training(model, batch):
    ids = batch["input_ids"]
    clean = model.get_input_embeddings()(ids)
    handle = add_neftune(model, alpha=5.0)
    model.train()
    noisy = model.get_input_embeddings()(ids)
    bound = 5.0 / (ids.shape[1] * clean.shape[-1]) ** 0.5
    assert 0 < (noisy - clean).abs().max() <= bound
    model.eval()
    assert torch.equal(model.get_input_embeddings()(ids), clean)
    handle.remove()
    model.train()
    assert torch.equal(model.get_input_embeddings()(ids), clean)


def test_dropout_override_reaches_config_and_modules(model):
    assert set_dropout(model, 0.2) == ["attention_dropout"]
    assert model.config.attention_dropout == 0.2
    assert all(layer.self_attn.attention_dropout == 0.2 for layer in model.model.layers)
    bert = tiny_bert()
    assert "hidden_dropout_prob" in set_dropout(bert, 0.3)
    assert all(m.p == 0.3 for m in bert.modules() if isinstance(m, torch.nn.Dropout))


def test_qlora_keeps_gradients_after_an_eval_pass(model, batch):
    """bitsandbytes repacks 4-bit weights on a no-grad eval pass; without the compat fix gradients become 0."""
    pytest.importorskip("bitsandbytes")
    from tunesmith.methods import qlora
    from tunesmith.methods.qlora import QLoraConfig

    peft_model = qlora.apply(model, QLoraConfig(r=4))
    peft_model.eval()
    with torch.no_grad():
        token_loss_sum(peft_model, batch)
    peft_model.train()
    token_loss_sum(peft_model, batch)[0].backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_prefix_from_text_equals_prepending_the_text(model, batch, tiny_tokenizer):
    text = "The quick brown fox"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    n_rows = batch["input_ids"].shape[0]
    prepended = {
        "input_ids": torch.cat([torch.tensor([ids] * n_rows), batch["input_ids"]], dim=1),
        "attention_mask": torch.cat([torch.ones(n_rows, len(ids), dtype=torch.long), batch["attention_mask"]], dim=1),
        "labels": torch.cat([torch.full((n_rows, len(ids)), IGNORE_INDEX), batch["labels"]], dim=1),
    }
    assert (batch["labels"][:, 0] == IGNORE_INDEX).all()  # so both ways score exactly the same tokens
    model.eval()
    with torch.no_grad():
        expected, _ = token_loss_sum(model, prepended)
        peft_model = prefix_tuning.apply(model, PrefixTuningConfig(num_virtual_tokens=len(ids), init_text=text))
        got, _ = token_loss_sum(peft_model, batch)
    assert torch.allclose(got, expected, atol=1e-4)
