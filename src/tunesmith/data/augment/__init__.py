"""Data augmentation for training files: noise, synonyms and LLM paraphrases of the input side only."""

from __future__ import annotations

from tunesmith.data.augment.base import Augment, AugmentConfig, Method
from tunesmith.data.augment.leak import assert_no_val_leak, input_key
from tunesmith.data.augment.methods import AUGMENTERS, register
from tunesmith.data.augment.runner import (
    METHOD_FIELD,
    SOURCE_FIELD,
    AugmentReport,
    augment_file,
    augment_rows,
    resolve_methods,
    write_jsonl,
)

__all__ = [
    "AUGMENTERS",
    "METHOD_FIELD",
    "SOURCE_FIELD",
    "Augment",
    "AugmentConfig",
    "AugmentReport",
    "Method",
    "assert_no_val_leak",
    "augment_file",
    "augment_rows",
    "input_key",
    "register",
    "resolve_methods",
    "write_jsonl",
]
