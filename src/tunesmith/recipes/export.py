"""`tunesmith export`: a tuned model in the format people run. `merged`: the adapter folded into the base
weights and saved as a plain Hugging Face folder (safetensors, config, tokenizer) that `from_pretrained` loads
with no PEFT; a whole-model run's own export is copied as it is.

The source is a run folder or a registry version (`NAME` for its champion, `NAME:VERSION`); a registry version
loads its stored, verified weights on the base model its lineage names. The folder is written beside its final
name and renamed into place. GGUF and Ollama formats (issue #21) are not built yet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tunesmith.errors import UserError
from tunesmith.methods.base import save_with_tokenizer
from tunesmith.methods.merge import whole_model_folder, write_atomically
from tunesmith.models import load_causal_lm


def _from_registry(ref: str, db: str | None, out: Path) -> Path:
    from peft import PeftModel
    from transformers import AutoTokenizer

    from tunesmith.model_registry.store import Registry, parse_ref

    registry = Registry(db)
    version = registry.get(*parse_ref(ref))
    stored = registry.weights(version.name, version.version)
    if not (stored / "adapter_config.json").is_file():  # a whole model: its folder is already the export
        return write_atomically(out, lambda folder: shutil.copytree(stored, folder))
    config = version.lineage.get("config") or {}
    trust = bool((config.get("model") or {}).get("trust_remote_code", False))
    base = load_causal_lm(version.base_model, dtype=torch.float32, trust_remote_code=trust)
    merged = PeftModel.from_pretrained(base, str(stored)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(stored)
    return write_atomically(out, lambda folder: save_with_tokenizer(merged, tokenizer, folder))


def export_merged(source: str, out: Path, db: str | None = None) -> Path:
    """The merged model of a run folder or registry version, written to `out` (which must not exist yet)."""
    from tunesmith.train.run_dir import find_run

    if out.exists():
        raise UserError(f"{out} exists; choose a new folder for the export")
    run = find_run(source)
    if run is None:
        if "/" in source or Path(source).exists():
            raise UserError(f"{source}: not a tunesmith run folder (no config.yaml)")
        return _from_registry(source, db, out)  # NAME or NAME:VERSION
    folder = whole_model_folder(run, out)
    if folder != out:  # a whole-model run: copy its export
        write_atomically(out, lambda target: shutil.copytree(folder, target))
    return out
