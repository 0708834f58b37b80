"""The search space: what each entry suggests, the shipped spaces per method, and the checks that run before any
trial (every key exists and takes every value of its range).

A trial's config is the study's config with the suggested values set, so it is validated like any other config.
When `method.name` is searched, the `method.*` keys apply only to the methods that have them (a conditional
space, which Optuna's define-by-run trials express directly).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import optuna

from tunesmith.config.components import method_configs
from tunesmith.config.load import set_value, validate
from tunesmith.config.schema import Config
from tunesmith.config.tune import ParamSpec
from tunesmith.errors import UserError

Suggest = Callable[[optuna.Trial, str, ParamSpec], Any]

SUGGEST: dict[str, Suggest] = {
    "log_uniform": lambda trial, key, p: trial.suggest_float(key, p.low, p.high, log=True),
    "uniform": lambda trial, key, p: trial.suggest_float(key, p.low, p.high, step=p.step),
    "int": lambda trial, key, p: trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log),
    "categorical": lambda trial, key, p: trial.suggest_categorical(key, p.choices),
}


def _spec(kind: str, low: float | None = None, high: float | None = None, **extra: Any) -> ParamSpec:
    return ParamSpec(type=kind, low=low, high=high, **extra)


_COMMON = {
    "train.lr": _spec("log_uniform", 5e-5, 5e-3),
    "train.warmup_ratio": _spec("uniform", 0.0, 0.2, step=0.05),
    "train.weight_decay": _spec("categorical", choices=[0.0, 0.01, 0.1]),
}
_LORA = {
    **_COMMON,
    "method.r": _spec("categorical", choices=[4, 8, 16, 32]),
    "method.alpha": _spec("categorical", choices=[8, 16, 32, 64]),
    "method.dropout": _spec("uniform", 0.0, 0.2, step=0.05),
}
_WHOLE_WEIGHTS = {**_COMMON, "train.lr": _spec("log_uniform", 5e-6, 2e-4)}
_VIRTUAL_TOKENS = {
    **_COMMON,
    "train.lr": _spec("log_uniform", 1e-3, 1e-1),
    "method.num_virtual_tokens": _spec("int", 4, 32, step=4),
}
# `space: auto`: ranges that cover what the method's users report working (docs/tuning.md), 6-7 dimensions.
AUTO_SPACES: dict[str, dict[str, ParamSpec]] = {
    "lora": _LORA,
    "qlora": _LORA,
    "full": _WHOLE_WEIGHTS,
    "freeze": {**_WHOLE_WEIGHTS, "method.freeze_layers": _spec("int", 0, 24)},
    "gradual_unfreeze": _WHOLE_WEIGHTS,
    "layerwise_lr_decay": {**_WHOLE_WEIGHTS, "method.decay": _spec("uniform", 0.6, 1.0, step=0.05)},
    "prompt_tuning": _VIRTUAL_TOKENS,
    "prefix_tuning": _VIRTUAL_TOKENS,
}

# Keys whose change would move the selection split or the study itself, not the model.
_NOT_SEARCHABLE = ("run.", "tune.", "data.val", "data.max_val_rows", "data.train", "eval.")


def resolve_space(cfg: Config) -> dict[str, ParamSpec]:
    """The configured space, or the shipped one for the config's method."""
    if cfg.tune.space is not None:
        return cfg.tune.space
    return dict(AUTO_SPACES.get(cfg.method.name, _COMMON))


def method_has(method_name: str, key: str) -> bool:
    """Whether `method.<field>` exists for this method (always true for keys outside `method.`)."""
    if not key.startswith("method."):
        return True
    config = method_configs().get(method_name)
    return config is not None and key.removeprefix("method.") in config.model_fields


def suggest_params(trial: optuna.Trial, space: dict[str, ParamSpec], method_name: str) -> dict[str, Any]:
    """The trial's values: method.name first (when searched), then every key that applies to that method."""
    params: dict[str, Any] = {}
    if "method.name" in space:
        params["method.name"] = SUGGEST[space["method.name"].type](trial, "method.name", space["method.name"])
    method = params.get("method.name", method_name)
    for key, spec in space.items():
        if key != "method.name" and method_has(method, key):
            params[key] = SUGGEST[spec.type](trial, key, spec)
    return params


def config_data(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The study's raw config with `params` set; a changed method keeps only the keys the new method has."""
    data = copy.deepcopy(base)
    method = params.get("method.name")
    if method is not None and isinstance(data.get("method"), dict) and data["method"].get("name") != method:
        data["method"] = {k: v for k, v in data["method"].items() if k != "name" and method_has(method, f"method.{k}")}
    for key, value in params.items():
        set_value(data, key, value, f"tune.space.{key}")
    return data


def _probe_values(spec: ParamSpec) -> list[Any]:
    """The values that must all validate: both ends of a range (rounded as the trial would), every choice."""
    if spec.type == "categorical":
        return list(spec.choices or [])
    if spec.type == "int":
        return [int(spec.low or 0), int(spec.high or 0)]
    return [float(spec.low or 0), float(spec.high or 0)]


def check_space(base: dict[str, Any], space: dict[str, ParamSpec], source: str) -> None:
    """Refuse, in one line naming the key, a space entry whose key does not exist or that a value of its range
    would make invalid. Runs before any trial, so a typo costs no compute."""
    methods = _probe_values(space["method.name"]) if "method.name" in space else [None]
    for key, spec in space.items():
        if key.startswith(_NOT_SEARCHABLE) or key == "method":
            raise UserError(
                f"{source}: tune.space.{key}: this key is not searchable (it would change the data the trials are "
                "compared on, or the study itself)"
            )
        applicable = [None] if key == "method.name" else [m for m in methods if m is None or method_has(m, key)]
        if not applicable:
            raise UserError(f"{source}: tune.space.{key}: none of the searched methods has this key")
        for value in _probe_values(spec):
            for method in applicable if key.startswith("method.") else applicable[:1]:
                params = {} if method is None else {"method.name": method}
                _check_one(base, {**params, key: value}, key, source)


def _check_one(base: dict[str, Any], params: dict[str, Any], key: str, source: str) -> None:
    try:
        validate(config_data(base, params), "config")
    except UserError as exc:
        problem = str(exc).removeprefix("config: ")
        raise UserError(f"{source}: tune.space.{key} = {params[key]!r}: {problem}") from None
