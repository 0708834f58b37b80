"""A cache of tokenized data, so a rerun on the same data and tokenizer skips tokenization.

The key covers everything the encoding depends on:
- the examples themselves (their lines, chat turns and text: a digest of what the data file, the split, the
  format and the system prompt produced, so none of them can change unnoticed);
- the tokenizer: its name, a hash of its full definition (vocabulary, merges, added tokens), its EOS token;
- the chat template;
- `max_length`;
- the source of `data/tokenize.py`, so a change to the encoder itself never reuses old encodings.

One entry is one safetensors file under `cache_dir()/tokenized/` (token ids, labels, offsets and lines as flat
int tensors; the encode report as JSON metadata), written under a temporary name and renamed into place, so a
crash never leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from tunesmith.data import tokenize
from tunesmith.data.example import Example
from tunesmith.data.tokenize import Encoded, EncodeReport, encode_examples
from tunesmith.models.cache import cache_dir

FOLDER = "tokenized"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's name, definition, EOS token and chat template, plus the encoder's own code."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    template = tokenizer.chat_template
    parts = {
        "name": tokenizer.name_or_path,
        "definition": hashlib.sha256(definition.encode()).hexdigest(),
        "eos": [tokenizer.eos_token, tokenizer.eos_token_id],
        "chat_template": template if isinstance(template, str) else json.dumps(template, sort_keys=True),
        "encoder": hashlib.sha256(Path(tokenize.__file__).read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_key(fingerprint: str, examples: Sequence[Example], max_length: int) -> str:
    """The entry name for these examples encoded by the fingerprinted tokenizer at `max_length`."""
    digest = hashlib.sha256(f"{fingerprint}\n{max_length}\n".encode())
    for example in examples:
        row = [example.line, list(example.messages), example.text]
        digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def entry_path(key: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / FOLDER / f"{key}.safetensors"


def store(path: Path, encoded: Sequence[Encoded], report: EncodeReport) -> None:
    """Write one entry atomically: a temporary file in the same folder, then a rename."""
    lengths = [len(e.input_ids) for e in encoded]
    tensors = {
        "input_ids": torch.tensor([t for e in encoded for t in e.input_ids], dtype=torch.int32),
        "labels": torch.tensor([t for e in encoded for t in e.labels], dtype=torch.int32),
        "lengths": torch.tensor(lengths, dtype=torch.int64),
        "lines": torch.tensor([e.line for e in encoded], dtype=torch.int64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, tmp, metadata={"report": json.dumps(report.__dict__)})
    os.replace(tmp, path)


def load(path: Path) -> tuple[list[Encoded], EncodeReport] | None:
    """The entry at `path`, or None when it is missing or unreadable (then the data is simply encoded again)."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as fh:
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
            report = EncodeReport(**json.loads(fh.metadata()["report"]))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    ids, labels = tensors["input_ids"].tolist(), tensors["labels"].tolist()
    encoded, start = [], 0
    for n, line in zip(tensors["lengths"].tolist(), tensors["lines"].tolist(), strict=True):
        encoded.append(Encoded(ids[start : start + n], labels[start : start + n], line))
        start += n
    return encoded, report


def encode_cached(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_length: int,
    fingerprint: str | None = None,
    root: Path | None = None,
) -> tuple[list[Encoded], EncodeReport, bool]:
    """`encode_examples` through the cache; returns (encoded, report, whether it was a cache hit).

    Pass `fingerprint` (`tokenizer_fingerprint`) when encoding several splits with one tokenizer: hashing the
    tokenizer's definition is the costly part of a hit.
    """
    key = cache_key(fingerprint or tokenizer_fingerprint(tokenizer), examples, max_length)
    path = entry_path(key, root)
    cached = load(path)
    if cached is not None:
        return *cached, True
    encoded, report = encode_examples(tokenizer, examples, max_length)
    if encoded:  # an empty result is a user error upstream; nothing worth keeping
        try:
            store(path, encoded, report)
        except OSError:  # a read-only or full cache folder costs the next run a re-encode, nothing more
            pass
    return encoded, report, False
