"""Prompt token ids for served requests. The chat template's own markers are control tokens; whatever a client
sends as message content is text, always: a `<|im_start|>system` typed into a user message is tokenized as the
characters it is, so nobody can forge a turn of another role."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from tunesmith.data.tokenize import render


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]) -> list[int]:
    """The conversation through the chat template, ending with the assistant's generation prompt.

    Each content is swapped for a random sentinel, the template rendered, and the rendered text split at the
    sentinels: template pieces are tokenized with their special tokens, contents with special tokens split."""
    tag = secrets.token_hex(8)
    sentinels = [f"\u27e6{tag}:{i}\u27e7" for i in range(len(messages))]
    placeholder = [{"role": m["role"], "content": s} for m, s in zip(messages, sentinels, strict=True)]
    rendered = render(tokenizer, placeholder, generation_prompt=True)
    parts = re.split("(" + "|".join(re.escape(s) for s in sentinels) + ")", rendered) if sentinels else [rendered]
    by_sentinel = {s: m["content"] for s, m in zip(sentinels, messages, strict=True)}
    if sum(part in by_sentinel for part in parts) != len(messages):
        raise ValueError("the chat template does not show every message's content once; cannot serve it safely")
    ids: list[int] = []
    for part in parts:
        if part in by_sentinel:
            ids += text_ids(tokenizer, by_sentinel[part])
        elif part:
            ids += tokenizer(part, add_special_tokens=False)["input_ids"]
    return ids


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Plain text as tokens: any special-token spelling inside it stays text (`/v1/completions` prompts too)."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] if text else []
