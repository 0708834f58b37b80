"""What classify and ner share: a pre-trained body with a new classification head, and the label mapping.

The head is always new: whatever head the checkpoint had (an lm_head, another task's classifier) is replaced by
one sized for our labels, initialised from `run.seed`, and kept in fp32 because it trains even on a bf16 base.
The label mapping lives in the model config (`id2label` / `label2id`) and in `task.json` next to the export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.batching import eval_batches
from tunesmith.errors import UserError
from tunesmith.methods import METHODS
from tunesmith.methods.base import ModelBuilders
from tunesmith.methods.peft_task import CLASSIFIER_HEADS
from tunesmith.models import model_source, resolve_model
from tunesmith.tasks.base import TASK_FILE
from tunesmith.tasks.pooling import set_pooling
from tunesmith.train.precision import autocast
from tunesmith.train.run_folder import RunFolder

Kind = Literal["sequence", "token"]
HEAD_NAMES = tuple(CLASSIFIER_HEADS)
DECODER_HEAD = "score"  # transformers' decoder classifiers (Llama, Mistral, Qwen, GPT-2) name their head so
ParamGroups = Callable[[nn.Module, Any], list[dict]]


def _auto_class(kind: Kind) -> Any:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForSequenceClassification if kind == "sequence" else AutoModelForTokenClassification


def head_name(model: nn.Module) -> str:
    """The attribute name of a transformers model's classification head (PEFT wrappers looked through)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in HEAD_NAMES:
        if isinstance(getattr(base, name, None), nn.Module):
            return name
    raise UserError(f"{type(base).__name__} has no classification head named {' or '.join(HEAD_NAMES)}")


def head_of(model: nn.Module) -> nn.Module:
    """The classification head module of a transformers model (PEFT wrappers looked through)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, head_name(model))


def with_head_lr(build: ParamGroups, lr: float) -> ParamGroups:
    """`build`'s optimizer groups, with the head's parameters split into groups of their own at `lr`.

    Each split group keeps its weight decay (and name), so only the rate differs; the scheduler scales it
    like every other group's."""

    def groups(model: nn.Module, train_cfg: Any) -> list[dict]:
        head = {id(p) for p in head_of(model).parameters()}
        out = []
        for group in build(model, train_cfg):
            body = [p for p in group["params"] if id(p) not in head]
            own = [p for p in group["params"] if id(p) in head]
            if body:
                out.append({**group, "params": body})
            if own:
                name = {"name": f"{group['name']}.head"} if "name" in group else {}
                out.append({**group, "params": own, "lr": lr, **name})
        return out

    return groups


def _fresh_head(head: nn.Module, std: float) -> None:
    """Re-initialise every linear layer of the head in fp32: N(0, std) weights, zero bias."""
    head.float()
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def load_head_model(
    cfg: Config, kind: Kind, labels: list[str], pad_token_id: int, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """`cfg.model.name` with a new `kind` classification head for `labels` (safetensors weights only)."""
    auto = _auto_class(kind)
    ref = resolve_model(cfg.model.name)
    kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "dtype": dtype,
        "use_safetensors": True,
        "trust_remote_code": cfg.model.trust_remote_code,
        "ignore_mismatched_sizes": True,  # a checkpoint's own head of another size is replaced, not an error
    }
    try:
        if model_source(cfg.model.name) == "hub":
            from tunesmith.models.hub import load_from_hub

            model = load_from_hub(auto.from_pretrained, ref, **kwargs)
        else:
            model = auto.from_pretrained(ref, **kwargs)
    except (ValueError, KeyError) as err:
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UserError(f"'{cfg.model.name}' cannot take a {kind} classification head: {first}") from err
    # Decoders classify from the last non-padding token, which they find through pad_token_id.
    model.config.pad_token_id = pad_token_id
    _fresh_head(head_of(model), getattr(model.config, "initializer_range", 0.02))
    return model


def write_task_file(folder: Path, task: str, labels: list[str]) -> None:
    """Save the task and label set with the exported weights (an adapter folder has no model config)."""
    (folder / TASK_FILE).write_text(json.dumps({"task": task, "labels": labels}, indent=2) + "\n")


def read_labels(folder: Path) -> list[str]:
    """The label set saved by `write_task_file`."""
    path = folder / TASK_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {TASK_FILE}; was this run trained with task classify or ner?")
    return list(json.loads(path.read_text())["labels"])


def load_trained(run_dir: Path, cfg: Config, kind: Kind) -> tuple[nn.Module, PreTrainedTokenizerBase, list[str]]:
    """The tuned classifier of a finished run, loaded the way its method exported it (`Method.load`): the
    whole model, or the adapter on a base given a fresh head for the saved labels."""
    labels: list[str] = []

    def base(tokenizer: PreTrainedTokenizerBase) -> nn.Module:
        labels[:] = read_labels(RunFolder(run_dir).adapter)
        return _pooled(load_head_model(cfg, kind, labels, tokenizer.pad_token_id), kind, cfg)

    def saved(folder: Path) -> nn.Module:
        labels[:] = read_labels(folder)
        model = _auto_class(kind).from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
        return _pooled(model, kind, cfg)

    model, tokenizer = METHODS[cfg.method.name].load(run_dir, ModelBuilders(base, saved))
    model.eval()
    return model, tokenizer, labels


def _pooled(model: nn.Module, kind: Kind, cfg: Config) -> nn.Module:
    if kind == "sequence":  # the head was trained on this sentence vector, not on the checkpoint's pooler
        set_pooling(model, cfg.task.pooling)
    return model


def batched_logits(
    model: nn.Module,
    examples: Sequence[Any],
    collate: Callable[[Sequence[Any], int], dict[str, torch.Tensor]],
    pad_id: int,
    batch_size: int,
    bf16: bool,
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor], torch.Tensor]]:
    """(example indices, batch, fp32 logits) per length-sorted batch, in eval mode without gradients.

    `forward` computes a batch's logits; default: the model called with the ids and attention mask."""
    forward = forward or (lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in eval_batches([len(e.input_ids) for e in examples], batch_size):
                batch = collate([examples[i] for i in idx], pad_id)
                with autocast(bf16):
                    logits = forward(model, batch)
                yield idx, batch, logits.float()
    finally:
        model.train(was_training)
