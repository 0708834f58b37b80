"""`registry diff NAME v1 v2`: what changed between two versions: config keys, data files, and the numbers."""

from __future__ import annotations

from typing import Any

from tunesmith.model_registry.store import Version


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (`train.lr`), the form `--set` takes."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _numbers(v: Version) -> dict[str, float]:
    """The version's comparable numbers: validation loss and metrics, tuned eval metrics, forgetting."""
    lin = v.lineage
    out: dict[str, float] = {}
    validation = lin.get("validation") or {}
    if isinstance(validation.get("tuned_val_loss"), int | float):
        out["val loss"] = validation["tuned_val_loss"]
    for key, value in (validation.get("metrics") or {}).items():
        out[key] = value
    tuned = ((lin.get("eval") or {}).get("systems") or {}).get("tuned") or {}
    for key, value in (tuned.get("metrics") or {}).items():
        out[f"eval {key}"] = value
    forgetting = (lin.get("audit") or {}).get("forgetting") or {}
    if isinstance((forgetting.get("perplexity") or {}).get("change"), int | float):
        out["reference perplexity change"] = forgetting["perplexity"]["change"]
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}


def diff(a: Version, b: Version) -> dict[str, Any]:
    """Config keys, data files (by SHA-256) and numbers that differ from `a` to `b`, with b − a for numbers."""
    data_a = {k: (f or {}).get("sha256") for k, f in (a.lineage.get("data") or {}).items()}
    data_b = {k: (f or {}).get("sha256") for k, f in (b.lineage.get("data") or {}).items()}
    numbers_a, numbers_b = _numbers(a), _numbers(b)
    return {
        "versions": [a.label, b.label],
        "config": _changed(_flat(a.lineage.get("config") or {}), _flat(b.lineage.get("config") or {})),
        "data": _changed(data_a, data_b),
        "weights_changed": a.weights_hash != b.weights_hash,
        "numbers": {
            k: {"a": numbers_a.get(k), "b": numbers_b.get(k), "change": numbers_b[k] - numbers_a[k]}
            if k in numbers_a and k in numbers_b
            else {"a": numbers_a.get(k), "b": numbers_b.get(k), "change": None}
            for k in sorted(numbers_a.keys() | numbers_b.keys())
        },
    }
