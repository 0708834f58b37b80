"""Prompt prefixes already computed: a new request's prefill starts after the longest prefix it shares with a
recent prompt, reusing that prompt's keys and values.

Chat prompts begin alike: the template's system turn (smollm2's default one is 30 of a typical 47 prompt tokens)
and, in a conversation, every earlier turn. A prefix's keys and values do not depend on what follows it (causal
attention), so the reused ones are those the full prefill would compute, up to floating-point rounding.
"""

from __future__ import annotations

from collections import OrderedDict

from tunesmith.serve.batch_cache import Layers

MIN_SHARED = 8  # shorter shared prefixes are not worth the copy
MAX_KEPT_TOKENS = 4096  # all kept prompts together (smollm2-135m: 47 MB in bf16; a 7B model with 8 KV heads: 0.5 GB)


class PrefixCache:
    def __init__(self, entries: int = 8, max_tokens: int = MAX_KEPT_TOKENS) -> None:
        self.entries, self.max_tokens = entries, max_tokens
        self._kept: OrderedDict[tuple[int, ...], Layers] = OrderedDict()
        self.reused_tokens = 0

    def lookup(self, prompt: list[int]) -> tuple[int, Layers]:
        """(n, keys and values of the first n prompt tokens) for the longest kept prefix; (0, []) when none is
        worth it.
        At least the prompt's last token is left to compute: its logits choose the first answer token."""
        best, best_key = 0, None
        for key in self._kept:
            shared = min(_shared_length(key, prompt), len(prompt) - 1)
            if shared > best:
                best, best_key = shared, key
        if best < MIN_SHARED or best_key is None:
            return 0, []
        self._kept.move_to_end(best_key)
        self.reused_tokens += best
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in self._kept[best_key]]

    def keep(self, prompt: list[int], layers: Layers) -> None:
        """Remember a prompt's keys and values (those of its prefill, before any answer token)."""
        if len(prompt) > self.max_tokens or self.entries == 0:
            return
        self._kept[tuple(prompt)] = list(layers)
        self._kept.move_to_end(tuple(prompt))
        while len(self._kept) > self.entries or sum(map(len, self._kept)) > self.max_tokens:
            self._kept.popitem(last=False)  # the least recently used


def _shared_length(a: tuple[int, ...], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
