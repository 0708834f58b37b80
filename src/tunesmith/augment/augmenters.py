"""The augmentation methods, registered one line each; a name registered twice is a bug."""

from __future__ import annotations

from tunesmith.augment.base import Augmenter
from tunesmith.augment.paraphrase import PARAPHRASE
from tunesmith.augment.synonyms import SYNONYMS
from tunesmith.augment.typos import TYPOS
from tunesmith.augment.word_dropout import WORD_DROPOUT
from tunesmith.augment.word_swap import WORD_SWAP
from tunesmith.registry import add_unique

AUGMENTERS: dict[str, Augmenter] = {}


def register(method: Augmenter) -> Augmenter:
    """Add `method` to `AUGMENTERS`; a taken name raises ValueError."""
    return add_unique(AUGMENTERS, method.name, method, "augmentation method")


register(TYPOS)
register(WORD_DROPOUT)
register(WORD_SWAP)
register(SYNONYMS)
register(PARAPHRASE)
