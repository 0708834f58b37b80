"""Load a run config: safe YAML, then `--set a.b=c` overrides, then typed validation.

Errors are one line and name the file and the key; unknown keys suggest the nearest valid one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config.components import DEFAULT_METHOD, method_configs
from tunesmith.config.schema import Config
from tunesmith.errors import UserError, did_you_mean


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping with the safe loader (no Python tags)."""
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{line}: invalid YAML: {problem}") from None
    except RecursionError:
        raise UserError(f"{path}: invalid YAML: nested too deeply for a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a mapping of sections (run, model, data, method, train, eval)")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (so 2, 1e-4, true, [a, b] work)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise UserError(f"--set {key.strip()}: the value is nested too deeply") from None
    set_value(data, key.strip(), value, f"--set {key}")


def set_value(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set the dotted `key` (e.g. train.lr) in a raw config mapping, creating sections on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"{source}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def _model_at(loc: tuple[Any, ...], data: dict[str, Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (for suggesting valid keys)."""
    model: type[BaseModel] | None = Config
    node: Any = data
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if model is None or not isinstance(part, str):
            return None
        if part == "method" and model is Config:  # the config class the method's name registered
            method = node.get("method", {}) if isinstance(node, dict) else {}
            model, node = method_configs().get(method.get("name", DEFAULT_METHOD)), method
            continue
        model, keyed = _section_of(getattr(model.model_fields.get(part), "annotation", None))
        node = node.get(part, {}) if isinstance(node, dict) else {}
        if keyed and parts:  # a mapping of free keys to sections (tune.space): skip the key
            key = parts.pop(0)
            node = node.get(key, {}) if isinstance(node, dict) else {}
    return model


def _section_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section class a field holds (itself, or inside Optional), and whether it is held as dict[str, it]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in get_args(annotation):
        inner, keyed = _section_of(arg) if arg is not str else (None, False)
        if inner is not None:
            return inner, keyed or get_origin(annotation) is dict
    return None, False


def _describe(error: dict[str, Any], data: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        model = _model_at(loc, data)
        hint = did_you_mean(str(loc[-1]), model.model_fields) if model else ""
        valid = ", ".join(model.model_fields) if model else ""
        return f"unknown key '{dotted}'.{hint}" + (f" Valid keys here: {valid}." if not hint and valid else "")
    if error["type"] == "method_name":
        return error["msg"]
    message = error["msg"].removeprefix("Value error, ")  # our validators' messages stand on their own
    return f"'{dotted}': {message}" if dotted else message


def validate(data: dict[str, Any], source: str) -> Config:
    """Validate a raw mapping into a `Config`, raising a one-line `UserError` on the first problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise UserError(f"{source}: {_describe(errors[0], data)}{more}") from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read YAML defaults from `path` (or none), apply overrides, and validate."""
    data = read_yaml(Path(path)) if path is not None else {}
    for assignment in overrides or []:
        apply_override(data, assignment)
    return validate(data, str(path) if path is not None else "config")


def dump_config(config: Config) -> str:
    """The resolved config as YAML, as saved in a run directory."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
