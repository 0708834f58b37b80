"""The augmentation methods, registered one line each; a name registered twice is a bug."""

from __future__ import annotations

from tunesmith.data.augment.base import Method
from tunesmith.data.augment.paraphrase import PARAPHRASE
from tunesmith.data.augment.synonyms import SYNONYMS
from tunesmith.data.augment.typos import TYPOS
from tunesmith.data.augment.word_dropout import WORD_DROPOUT
from tunesmith.data.augment.word_swap import WORD_SWAP
from tunesmith.registry import add_unique

AUGMENTERS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method` to `AUGMENTERS`; a taken name raises ValueError."""
    return add_unique(AUGMENTERS, method.name, method, "augmentation method")


register(TYPOS)
register(WORD_DROPOUT)
register(WORD_SWAP)
register(SYNONYMS)
register(PARAPHRASE)
