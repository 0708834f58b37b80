"""Base-model results of `tunesmith eval`, kept by content: a later eval of the same rows never rescores the base.

A base system's numbers depend only on the base model, the tokenizer, the prompts exactly as scored (a k-shot
prompt holds its shots), the targets, the eval plan and settings, the precision, and the code that scores. The key
is the SHA-256 of all of these: the model's name and its weight and config files (name, size, modification time),
the chat template, every prompt and target, the plan, `eval.*`, `data.max_length`, bf16 or not, the torch and
transformers versions, and `SCORING_VERSION` (raised whenever scoring changes what it computes). Any change gives a
new key; nothing is invalidated by hand. `tunesmith eval --no-cache` scores afresh (and refreshes the entry).

Entries are JSON files under `<cache>/eval/` (the newest 500), written atomically. An unreadable entry counts as
missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.evaluate.scoring import EvalPlan
from tunesmith.models.cache import cache_dir
from tunesmith.models.resolve import model_source, resolve_model

SCORING_VERSION = 4  # 2: one prompt pass (label scores, answers, loss from the label scores); 3: shared prefix
# once; 4: per-row predicted labels and confidences kept
MAX_ENTRIES = 500  # a few MB at most: an entry holds one system's scores and answers


def cache_folder() -> Path:
    return cache_dir() / "eval"


def model_fingerprint(name: str) -> list[Any]:
    """The model's name plus the name, size and modification time of each file in its folder (a Hub id that is
    not in a local folder: the name only, as its files are resolved by transformers' own cache)."""
    if model_source(name) == "hub":
        return [name]
    folder = Path(resolve_model(name, auto_pull=False))
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in {".safetensors", ".json"})
    return [name, *[[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]]


def base_key(
    cfg: Config,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Example],
    prompts: Sequence[Sequence[dict[str, str]]],
    plan: EvalPlan,
    bf16: bool,
    with_loss: bool,
) -> str:
    """The content key of one base system's scores (module docstring)."""
    content = {
        "scoring_version": SCORING_VERSION,
        "libraries": {name: metadata.version(name) for name in ("torch", "transformers")},
        "model": model_fingerprint(cfg.model.name),
        "chat_template": getattr(tokenizer, "chat_template", None),
        "vocab": len(tokenizer),
        "prompts": [list(p) for p in prompts],
        "rows": [[e.line, list(e.messages), e.target] for e in rows],
        "plan": [plan.metrics, plan.labels, plan.scoring, plan.generate, plan.max_new_tokens],
        "eval": cfg.eval.model_dump(mode="json"),
        "max_length": cfg.data.max_length,
        "bf16": bf16,
        "with_loss": with_loss,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def load(key: str) -> dict[str, Any] | None:
    path = cache_folder() / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save(key: str, scores: dict[str, Any]) -> None:
    """Keep `scores` under `key`; beyond `MAX_ENTRIES`, the least recently written entries go."""
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(scores, default=str))
    os.replace(tmp, folder / f"{key}.json")
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for old in entries[:-MAX_ENTRIES]:
        old.unlink(missing_ok=True)
