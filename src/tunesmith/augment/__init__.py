"""Data augmentation for training files: noise, synonyms and LLM paraphrases of the input side only."""

from __future__ import annotations

from tunesmith.augment.augmenters import AUGMENTERS, register
from tunesmith.augment.base import Augment, AugmentConfig, Augmenter
from tunesmith.augment.leak import assert_no_val_leak, input_key
from tunesmith.augment.runner import (
    METHOD_FIELD,
    SOURCE_FIELD,
    AugmentReport,
    augment_file,
    augment_rows,
    resolve_methods,
)

__all__ = [
    "AUGMENTERS",
    "METHOD_FIELD",
    "SOURCE_FIELD",
    "Augment",
    "AugmentConfig",
    "AugmentReport",
    "Augmenter",
    "assert_no_val_leak",
    "augment_file",
    "augment_rows",
    "input_key",
    "register",
    "resolve_methods",
]
