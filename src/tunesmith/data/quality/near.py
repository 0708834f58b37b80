"""Near-duplicate search: MinHash signatures and LSH banding from datasketch, confirmed by exact Jaccard.

Texts are compared as sets of character 3-grams of their normalised form (`text.normalize`). 3-grams were
chosen by measurement (docs/data-quality.md): on copies with one to three word edits or typos, 94-99% stay at
Jaccard >= 0.8, against 18-59% for word 2- and 3-gram shingles; word 1-grams do as well on word edits but
treat every typo as a new word. Longer n-grams (5) lose recall on short texts.

LSH only proposes candidate pairs. Its banding is tuned for recall (a pair exactly at the threshold becomes a
candidate with probability >= 99%), and every candidate is then confirmed by the exact Jaccard similarity of
the two 3-gram sets, so the extra candidates cost time but never produce a false finding.

Texts too short for one typo to stay above the threshold are left out (`min_shingles`): for them a "near
duplicate" at 0.8 is mostly a different text ("say the number 3" / "say the number 4"); exact checks still
cover them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence

from datasketch import LeanMinHash, MinHash, MinHashLSH
from scipy.cluster.hierarchy import DisjointSet

NGRAM = 3
RECALL_AT_THRESHOLD = 0.99
SEED = 1  # MinHash permutations: fixed, so results are the same on every run


def shingles(text: str) -> set[str]:
    """The set of character 3-grams of an (already normalised) text."""
    return {text[i : i + NGRAM] for i in range(len(text) - NGRAM + 1)}


def jaccard(a: str | set[str], b: str) -> float:
    """Exact Jaccard similarity of the 3-gram sets of two texts (`a` may be given as its 3-gram set)."""
    sa, sb = shingles(a) if isinstance(a, str) else a, shingles(b)
    common = len(sa & sb)
    union = len(sa) + len(sb) - common
    return common / union if union else 1.0


def min_shingles(threshold: float) -> int:
    """The fewest 3-grams a text needs so that one changed character keeps it at `threshold`.

    One substitution replaces up to n of the m 3-grams, so the similarity is (m - n) / (m + n), which is at
    least t when m >= n(1 + t) / (1 - t): 27 for t = 0.8.
    """
    if threshold >= 1:
        return 2**62
    return math.ceil(round(NGRAM * (1 + threshold) / (1 - threshold), 9))  # round: 27.000000000000004 is 27


def banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH (bands, rows per band): the most rows per band that still finds a pair at `threshold` 99% of the time.

    More rows per band mean fewer chance candidates; fewer rows mean higher recall. datasketch's own optimum
    weighs both equally, which finds only ~40% of pairs right at 0.8.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= RECALL_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


class Sketcher:
    """MinHash signatures and LSH indexes, each computed once and shared by every check that needs it."""

    def __init__(self, threshold: float, num_perm: int):
        self.threshold, self.num_perm = threshold, num_perm
        self.min_grams = min_shingles(threshold)
        self._signatures: dict[str, LeanMinHash | None] = {}
        self._indexes: dict[tuple[tuple[int, str], ...], NearIndex] = {}
        self._sketch: MinHash | None = None  # one MinHash whose permutations are set up once, then reused

    def sign(self, texts: Iterable[str]) -> list[LeanMinHash | None]:
        """The signature of each text, or None for a text too short to compare (`min_shingles`)."""
        texts = list(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self._signatures]
        if todo and self._sketch is None:
            self._sketch = MinHash(num_perm=self.num_perm, seed=SEED, hashfunc=zlib.crc32)
        for text in todo:
            grams = shingles(text) if len(text) - NGRAM + 1 >= self.min_grams else set()
            if len(grams) < self.min_grams:
                self._signatures[text] = None
                continue
            self._sketch.clear()
            self._sketch.update_batch([gram.encode("utf-8") for gram in grams])
            self._signatures[text] = LeanMinHash(self._sketch)
        return [self._signatures[t] for t in texts]

    def index(self, items: Sequence[tuple[int, str]]) -> NearIndex:
        """The LSH index of `(key, text)` items (built on first use, then reused for the same items)."""
        frozen = tuple(items)
        if frozen not in self._indexes:
            index = NearIndex(self)
            index.add(frozen)
            self._indexes[frozen] = index
        return self._indexes[frozen]

    def has_index(self, items: Sequence[tuple[int, str]]) -> bool:
        """True when `index(items)` would reuse an index already built."""
        return tuple(items) in self._indexes


class NearIndex:
    """Texts indexed by LSH under int keys; candidates are confirmed by exact Jaccard."""

    def __init__(self, sketcher: Sketcher):
        self.sketcher, self.threshold = sketcher, sketcher.threshold
        self.lsh = MinHashLSH(num_perm=sketcher.num_perm, params=banding(sketcher.threshold, sketcher.num_perm))
        self.texts: dict[int, str] = {}

    def add(self, items: Sequence[tuple[int, str]]) -> None:
        """Index the comparable texts among `(key, text)`."""
        signed = zip(items, self.sketcher.sign(text for _, text in items), strict=True)
        with self.lsh.insertion_session() as session:
            for (key, text), signature in signed:
                if signature is not None:
                    session.insert(key, signature, check_duplication=False)
                    self.texts[key] = text

    def candidates(self, text: str) -> list[int]:
        """Indexed keys sharing an LSH band with `text` (unconfirmed)."""
        signature = self.sketcher.sign([text])[0]
        return [] if signature is None else list(self.lsh.query(signature))

    def matches(self, text: str) -> list[tuple[int, float]]:
        """Indexed keys whose texts are confirmed near duplicates of `text`, in key order, with similarity."""
        candidates = self.candidates(text)
        if not candidates:
            return []
        grams = shingles(text)
        found = [(key, jaccard(grams, self.texts[key])) for key in sorted(candidates)]
        return [(key, similarity) for key, similarity in found if similarity >= self.threshold]


def merge_near(items: Sequence[tuple[int, str]], sketcher: Sketcher, groups: DisjointSet) -> None:
    """Merge in `groups` every two keys of `items` whose texts are near duplicates (keys must be in `groups`).

    A candidate pair already in one group is not confirmed again: it cannot change the groups, and it keeps
    a large cluster of copies from costing a comparison per pair.
    """
    index = sketcher.index(items)
    for key, text in index.texts.items():
        grams: set[str] | None = None
        for other in index.candidates(text):
            if other != key and not groups.connected(key, other):
                grams = grams if grams is not None else shingles(text)
                if jaccard(grams, index.texts[other]) >= sketcher.threshold:
                    groups.merge(key, other)


def first_matches(
    queries: Sequence[tuple[int, str]], targets: Sequence[tuple[int, str]], sketcher: Sketcher
) -> dict[int, tuple[int, float]]:
    """For each query key with a near duplicate among the targets: (smallest such target key, similarity).

    The targets are indexed when they already are or are the smaller side; otherwise the queries are. The
    answer is the same either way.
    """
    sketcher.sign(text for _, text in (*queries, *targets))  # all at once, before the per-text lookups
    if sketcher.has_index(targets) or len(targets) <= len(queries):
        index = sketcher.index(targets)
        found = {}
        for key, text in queries:
            hits = index.matches(text)
            if hits:
                found[key] = hits[0]
        return found
    index = sketcher.index(queries)
    best: dict[int, tuple[int, float]] = {}
    for target_key, text in sorted(targets):
        for key, similarity in index.matches(text):
            best.setdefault(key, (target_key, similarity))
    return best
