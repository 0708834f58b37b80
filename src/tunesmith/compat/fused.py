"""Fused elementwise work for CPU training (`train.fused_ops`).

With the matmuls at this CPU's peak and attention as batched matmuls (`train.attention`), much of the rest of a
training step is elementwise work, and it is memory-bound: the model's RMSNorm alone runs ~16 passes over fp32
copies of the activations, forward and backward. Measured on smollm2-135m (docs/performance.md): one decoder
layer -9 to -12% (`python bench/fused_ops.py`), the whole model's forward + backward +12.9%, the SFT bench
376 -> 411 tokens/s.

What is fused:
- `rmsnorm`: every module whose class is an `…RMSNorm`, through its own `forward`;
- `rotary`: the modeling module's own `apply_rotary_pos_emb`;
- `gated_mlp`: `act_fn(gate_proj(x)) * up_proj(x)` of MLPs with those four parts;
- `lora_addmm`: PEFT's plain LoRA layers add `scale · (dropout(x) Aᵀ) Bᵀ` to the base output in one `addmm`.

The first three are the model's own code compiled by `torch.compile` (inductor, dynamic shapes, so one kernel
serves every batch shape and every layer), not rewritten formulas. Before training, the whole model runs on small
random batches with the fused ops and with its own code; unless the loss and gradients agree, the model's own
code trains. That pass also compiles the kernels on the layouts the model really passes, before the training
clock starts; inductor caches them on disk (cold ~20 s, warm ~3-5 s here, the check included).
Replacements run only while gradients are on; validation and generation run the model's own code. Everything
still ours is restored when training ends; setting up, checking or restoring never raises (a failure is one
warning line, and the model's own code trains), so no run is lost to a library that changed underneath.
Small models (< 20 M parameters) skip all this: compiling costs more than it saves.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.compat.patches import Checked, Patches, one_line, reference_pass

# What the fused ops were built and checked against; another version is still checked numerically before use.
CHECKED_ON = (
    Checked("torch", ">=2.13,<2.14"),
    Checked("transformers", ">=5.24,<5.26"),
    Checked("peft", ">=0.21,<0.22"),
)

_MIN_PARAMETERS = 20_000_000  # below this, compiling (seconds) costs more than a whole run saves


@dataclass
class FusedOps:
    """What `fused_training_ops` installed, and the seconds it took (compilation and checks)."""

    kernels: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # not applicable here -> why
    failed: dict[str, str] = field(default_factory=dict)  # applicable, but did not build or match -> why
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)  # training calls that took each fused op
    restore_problems: list[str] = field(default_factory=list)  # filled when the block ends; never raised


class MismatchError(RuntimeError):
    """A fused replacement did not reproduce the original's outputs or gradients."""


def _compiled(fn: Callable) -> Callable:
    return torch.compile(fn, dynamic=True)


def _loss_and_grads(model: nn.Module, ids: torch.Tensor, bf16: bool) -> tuple[float, torch.Tensor]:
    """A smooth scalar of the model's first output (the mean log-sum-exp of its logits) and its gradient for the
    trainable parameters, as one vector (returned, not accumulated into `.grad`)."""
    # torch's autocast, not train.precision's: compat sits below train (docs/architecture.md)
    with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids)[0].float().logsumexp(-1).mean()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, trainable, allow_unused=True) if trainable else ()
    flat = [(torch.zeros_like(p) if g is None else g).float().flatten() for g, p in zip(grads, trainable, strict=True)]
    return float(loss.detach()), torch.cat(flat) if flat else torch.zeros(1)


def _check_model(model: nn.Module, bf16: bool) -> None:
    """The fused model gives its own code's loss and gradient direction on small random batches, or MismatchError.

    In bf16 the two differ by rounding alone (the fused kernels round once, the model's code after every op): on
    smollm2-135m, 0.4-1.0% in the loss and gradient cosines of 0.9988-0.9996. A wrong formula is far outside
    that. It runs in eval mode, so dropout and embedding noise cannot tell the two passes apart. This is also
    the compilation, on the layouts the model really passes (views of projections, a first norm without
    gradient, a batch of one row), so no kernel compiles after the training clock starts."""
    vocab = model.get_input_embeddings().num_embeddings
    loss_tol, min_cosine = (2e-2, 0.98) if bf16 else (1e-4, 0.9999)
    was_training = model.training
    model.eval()  # no dropout or embedding noise (NEFTune): both passes must see the same function
    with torch.random.fork_rng(devices=[]):  # the run's own random stream stays untouched
        try:
            _compare_on_random_rows(model, vocab, bf16, loss_tol, min_cosine)
        finally:
            model.train(was_training)


def _compare_on_random_rows(model: nn.Module, vocab: int, bf16: bool, loss_tol: float, min_cosine: float) -> None:
    for rows in (2, 1):
        ids = torch.randint(vocab, (rows, 7), generator=torch.Generator().manual_seed(rows))
        with reference_pass():
            want_loss, want_grad = _loss_and_grads(model, ids, bf16)
        loss, grad = _loss_and_grads(model, ids, bf16)
        cosine = float(F.cosine_similarity(grad, want_grad, dim=0)) if want_grad.any() else 1.0
        if abs(loss - want_loss) > loss_tol * abs(want_loss) or cosine < min_cosine:
            raise MismatchError(
                f"on {rows} random row(s) the fused model gave loss {loss:.4f} (its own code {want_loss:.4f}) "
                f"and a gradient cosine of {cosine:.4f}"
            )


def _fuse_rmsnorm(model: nn.Module, patches: Patches) -> str | None:
    """Replaced on the class, not the instances: a library that resets instance `forward`s while training
    (kernels' re-kernelization on every `train()`/`eval()`) then falls back to ours, not to the slow path."""
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm") and hasattr(m, "weight")]
    if not norms:
        return "no RMSNorm modules"
    for cls in {type(m) for m in norms}:
        original = cls.forward
        patches.set(cls, "forward", patches.grad_only(_compiled(original), original))
    return None


def _fuse_rotary(model: nn.Module, patches: Patches) -> str | None:
    attention = next((m for m in model.modules() if hasattr(m, "q_proj") and hasattr(m, "k_proj")), None)
    if attention is None:
        return "no attention modules with q_proj and k_proj"
    modeling = sys.modules[type(attention).__module__]
    original = getattr(modeling, "apply_rotary_pos_emb", None)
    if original is None:
        return f"{modeling.__name__} has no apply_rotary_pos_emb"
    patches.set(modeling, "apply_rotary_pos_emb", patches.grad_only(_compiled(original), original))
    return None


def _gated(act: nn.Module, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return act(gate) * up


def _gated_forward(mlp: nn.Module, kernel: Callable) -> Callable:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return mlp.down_proj(kernel(mlp.act_fn, mlp.gate_proj(x), mlp.up_proj(x)))

    return forward


def _fuse_gated_mlp(model: nn.Module, patches: Patches) -> str | None:
    parts = ("gate_proj", "up_proj", "down_proj", "act_fn")
    mlps = [m for m in model.modules() if all(hasattr(m, p) for p in parts)]
    if not mlps:
        return "no MLPs with gate_proj, up_proj, down_proj and act_fn"
    kernel = _compiled(_gated)
    for mlp in mlps:
        patches.set(mlp, "forward", patches.grad_only(_gated_forward(mlp, kernel), mlp.forward))
    return None


def _plain_lora(layer: nn.Module) -> str | None:
    """The single active adapter of a PEFT LoRA Linear computing base(x) + scale·B(A(dropout(x))), else None."""
    adapters = getattr(layer, "active_adapters", None)
    if not adapters or len(adapters) != 1 or getattr(layer, "merged", True) or layer.disable_adapters:
        return None
    name = adapters[0]
    plain = (
        name in layer.lora_A
        and name not in getattr(layer, "lora_variant", {})
        and isinstance(layer.lora_dropout[name], nn.Identity | nn.Dropout)
        and layer.lora_B[name].bias is None
        and type(layer.base_layer) is nn.Linear
    )
    return name if plain else None


def _addmm_forward(layer: nn.Module, name: str, original: Callable) -> Callable:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        down, up = layer.lora_A[name].weight, layer.lora_B[name].weight
        same_dtype = x.dtype == down.dtype == layer.base_layer.weight.dtype
        if args or kwargs or _plain_lora(layer) != name or not (torch.is_autocast_enabled("cpu") or same_dtype):
            return original(x, *args, **kwargs)
        result = layer.base_layer(x)
        low_rank = F.linear(layer.lora_dropout[name](x), down)
        flat = torch.addmm(
            result.reshape(-1, result.shape[-1]), low_rank.reshape(-1, down.shape[0]), up.t(), alpha=layer.scaling[name]
        )
        return flat.view(result.shape)

    return forward


def _fuse_lora(model: nn.Module, patches: Patches) -> str | None:
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        return "peft is not installed"
    layers = [(m, name) for m in model.modules() if isinstance(m, LoraLinear) and (name := _plain_lora(m))]
    if not layers:
        return "no plain LoRA layers"
    for layer, name in layers:
        patches.set(layer, "forward", patches.grad_only(_addmm_forward(layer, name, layer.forward), layer.forward))
    return None


FUSED_OPS: dict[str, Callable[[nn.Module, Patches], str | None]] = {
    "rmsnorm": _fuse_rmsnorm,
    "rotary": _fuse_rotary,
    "gated_mlp": _fuse_gated_mlp,
    "lora_addmm": _fuse_lora,
}
_NEEDS_COMPILER = {"rmsnorm", "rotary", "gated_mlp"}


def _why_not_compile() -> str | None:
    """Why torch.compile cannot build CPU kernels here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version_info.major}.{sys.version_info.minor}"
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++ or clang++) on PATH for torch.compile"
    return None


def _why_not(model: nn.Module, enabled: bool) -> str | None:
    if not enabled:
        return "train.fused_ops=model"
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu":
        return "the model is not on the CPU"
    if sum(p.numel() for p in model.parameters()) < _MIN_PARAMETERS:
        return f"the model has < {_MIN_PARAMETERS // 1_000_000} M parameters: compiling would cost more than it saves"
    return None


def _install(
    model: nn.Module, bf16: bool, names: Collection[str] | None, reason: str | None, patches: Patches
) -> FusedOps:
    """Each applicable fused op, then the check of the whole model; a failure leaves the model's own code."""
    report = FusedOps()
    no_compiler = None if reason else _why_not_compile()
    for name, fuse in FUSED_OPS.items():
        if names is not None and name not in names:
            continue
        why, patches.op = reason or (no_compiler if name in _NEEDS_COMPILER else None), name
        try:
            why = why or fuse(model, patches)
        except Exception as exc:  # noqa: BLE001 - a kernel that fails to build or match leaves the model's own code
            report.failed[name] = one_line(exc)
            continue
        if why is None:
            report.kernels.append(name)
        else:
            report.skipped[name] = why
    if report.kernels:
        try:
            _check_model(model, bf16)
        except Exception as exc:  # noqa: BLE001 - a mismatch or a compile failure: the model's own code trains
            report.restore_problems += patches.restore()
            report.failed.update({name: one_line(exc) for name in report.kernels})
            report.kernels = []
    patches.calls.clear()  # from here on, the calls are training's
    return report


@contextlib.contextmanager
def fused_training_ops(
    model: nn.Module, enabled: bool, bf16: bool, names: Collection[str] | None = None
) -> Iterator[FusedOps]:
    """Within the block, training forward passes use the fused ops (of `names`, default all) that apply to
    `model` (module docstring). Setting up, checking and undoing them never raises: a failure is in the report
    (`failed`, `restore_problems`) and the model's own code runs."""
    patches, started = Patches(), time.perf_counter()
    try:
        report = _install(model, bf16, names, _why_not(model, enabled), patches)
    except Exception as exc:  # noqa: BLE001 - anything unforeseen in setting up: the model's own code trains
        report = FusedOps(failed={"setup": one_line(exc)}, restore_problems=patches.restore())
    report.seconds = time.perf_counter() - started
    try:
        yield report
    finally:
        report.calls = {name: patches.calls[name] for name in report.kernels}
        report.restore_problems += patches.restore()
