"""Several LoRA adapters on one base, served by one engine: `tunesmith serve TARGET --adapter NAME[=PATH] ...`.

TARGET is the base model (catalog name, Hub id, folder), a run (its own adapter is served too, under the run's
name), or a `tunesmith sequence` folder (then `--adapter NAME` alone names a task's stage). `NAME=PATH` adds the
adapter of a run folder, or a PEFT adapter folder (`adapter_config.json`), under the id NAME. Each id is a model
in `/v1/models`; the base is served as well, under its own name. Only LoRA-type adapters (LoRA, DoRA, QLoRA's
export) of the same base mix in one batch; anything else is a one-line error before any weights load.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import UserError
from tunesmith.serve.engine import BASE

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass(frozen=True)
class AdapterSource:
    name: str  # the model id clients ask for
    folder: Path  # the PEFT adapter folder
    run: Path | None  # the run it comes from (its weights' hash is the version)


@dataclass(frozen=True)
class ServePlan:
    base: str  # the base model every adapter was trained on
    adapters: tuple[AdapterSource, ...]
    default: str  # the id `model` defaults to in /health and the first in /v1/models


def _adapter_folder(path: Path, name: str) -> tuple[Path, Path | None]:
    """(PEFT adapter folder, run folder or None) of `path`, a run folder or an adapter folder."""
    from tunesmith.train.run_dir import find_run

    run = find_run(path)
    folder = run / "adapter" if run is not None else path
    if not (folder / "adapter_config.json").is_file():
        what = f"{path} is a run without an adapter (a whole model)" if run else f"{path} has no adapter_config.json"
        raise UserError(f"--adapter {name}: {what}; only LoRA-type adapters can be served together on one base")
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA":
        raise UserError(
            f"--adapter {name}: {folder} is a {config.get('peft_type')} adapter; only LoRA-type adapters (LoRA, "
            "DoRA, QLoRA's export) can share a batch"
        )
    return folder, run


def _base_of(source: AdapterSource) -> str | None:
    """The base model an adapter was trained on: its run's `model.name`, else the adapter config's record."""
    from tunesmith.methods.loading import run_config

    if source.run is not None:
        return run_config(source.run).model.name
    return json.loads((source.folder / "adapter_config.json").read_text()).get("base_model_name_or_path")


def _same_model(a: str, b: str) -> bool:
    from tunesmith.models import resolve_model

    def resolved(name: str) -> str:
        try:
            return str(Path(resolve_model(name)).resolve())
        except (UserError, OSError):
            return name

    return a == b or resolved(a) == resolved(b)


def plan(target: str, specs: list[str]) -> ServePlan:
    """What `tunesmith serve TARGET --adapter ...` serves; every mistake is a UserError naming the adapter."""
    from tunesmith.train.run_dir import find_run, stage_run

    sequence = (Path(target) / "sequence.json").is_file()
    sources: list[AdapterSource] = []
    run = None if sequence else find_run(target)
    if run is not None:
        folder, _ = _adapter_folder(run, run.name)
        sources.append(AdapterSource(run.name, folder, run))
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not _NAME.match(name):
            raise UserError(f"--adapter {spec!r}: a name is letters, digits and . _ : - (at most 64 characters)")
        if not sep and not sequence:
            raise UserError(f"--adapter {name}: give NAME=PATH (a run or adapter folder); NAME alone picks a stage "
                            "of a sequence folder, and the model is not one")  # fmt: skip
        folder, adapter_run = _adapter_folder(Path(path) if sep else stage_run(target, name), name)
        sources.append(AdapterSource(name, folder, adapter_run))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError(f"--adapter: the names {names} repeat; each adapter needs its own")
    base = _base_of(sources[0]) if (run is not None or sequence) else target
    if base is None:
        raise UserError(f"{sources[0].folder}: the adapter does not record its base model; serve it as BASE --adapter")
    for source in sources:
        trained_on = _base_of(source)
        if trained_on is not None and not _same_model(trained_on, base):
            raise UserError(f"--adapter {source.name} was trained on {trained_on}, not on the served base {base}")
    if base in names:
        raise UserError(f"--adapter {base}: the base model is served under that name already")
    return ServePlan(base, tuple(sources), run.name if run is not None else base)


def load(serve_plan: ServePlan):
    """The base with every adapter loaded under its name (not merged: they share the base), and its tokenizer."""
    from peft import PeftModel

    from tunesmith.data.tokenize import ensure_chat_template
    from tunesmith.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(serve_plan.base)
    ensure_chat_template(tokenizer)
    first, *rest = serve_plan.adapters
    try:
        model = PeftModel.from_pretrained(load_causal_lm(serve_plan.base), str(first.folder), adapter_name=first.name)
        for source in rest:
            model.load_adapter(str(source.folder), adapter_name=source.name)
    except (RuntimeError, ValueError, KeyError) as exc:  # shapes or modules that do not fit this base
        raise UserError(f"--adapter: cannot load onto {serve_plan.base}: {str(exc).splitlines()[0]}") from None
    return model.eval(), tokenizer


__all__ = ["BASE", "AdapterSource", "ServePlan", "load", "plan"]
