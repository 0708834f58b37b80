"""Find a transformer's layer stack and split its parameters into groups, bottom to top.

The groups are what freezing, gradual unfreezing, layer-wise learning rates and the parameter report talk about:
`embeddings` (everything registered before the layer stack), `layers.0` … `layers.N-1`, `head` (everything
registered after it: final norm, lm_head or classifier) and, for PEFT prompt learning, `prompt`.

A tied lm_head (SmolLM2, the tiny test Llama) is the embedding matrix itself: it is one parameter, reported once,
under `embeddings`.
"""

from __future__ import annotations

from torch import nn

from tunesmith.errors import UserError

# Attribute names of the layer stack: Llama/Mistral/Qwen `model.layers`, BERT `encoder.layer`, GPT-2 `h`.
_STACK_NAMES = ("layers", "layer", "h", "blocks")
EMBEDDINGS, HEAD, PROMPT = "embeddings", "head", "prompt"
Named = list[tuple[str, nn.Parameter]]


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer layers (decoder `layers` or encoder `layer`), bottom first."""
    stacks = [
        module
        for name, module in unwrap(model).named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name.rsplit(".", 1)[-1] in _STACK_NAMES
    ]
    if not stacks:
        raise UserError(
            f"cannot find the transformer layers of {type(unwrap(model)).__name__} "
            f"(looked for a module list named {', '.join(_STACK_NAMES)}); use method full or lora"
        )
    return max(stacks, key=len)


def layer_groups(model: nn.Module) -> dict[str, Named]:
    """Named parameters per group, in order bottom to top: embeddings, layers.0…N-1, head (and prompt)."""
    layers = transformer_layers(model)
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    groups: dict[str, Named] = {EMBEDDINGS: [], **{f"layers.{i}": [] for i in range(len(layers))}, HEAD: []}
    past_layers = False
    for name, param in model.named_parameters():
        if id(param) in layer_of:
            groups[f"layers.{layer_of[id(param)]}"].append((name, param))
            past_layers = True
        elif "prompt_encoder" in name:
            groups.setdefault(PROMPT, []).append((name, param))
        else:
            # Modules register in forward order, so what comes before the stack feeds it and what comes after
            # reads its output.
            groups[HEAD if past_layers else EMBEDDINGS].append((name, param))
    return groups


def try_layer_groups(model: nn.Module) -> dict[str, Named]:
    """`layer_groups`, or one group `model` for architectures without a recognisable layer stack."""
    try:
        return layer_groups(model)
    except UserError:
        return {"model": list(model.named_parameters())}
