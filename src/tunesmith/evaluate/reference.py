"""The general reference corpus of the forgetting audit: a user file, or the base model's own answers to diverse
built-in prompts, generated once and cached under the tunesmith cache (key: model, prompts and settings)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.evaluate.generate import Decoding, generate_all
from tunesmith.models.cache import cache_dir
from tunesmith.train.run_dir import write_json

# Everyday knowledge, reasoning, writing, coding and advice: what a general assistant should still do after tuning.
PROBE_PROMPTS = (
    "Explain why the sky is blue.",
    "What is photosynthesis?",
    "Write a short poem about the sea.",
    "Give three tips for staying healthy.",
    "What is the capital of Japan, and what is it known for?",
    "Describe how a bicycle works.",
    "Write a Python function that reverses a string.",
    "What are the main causes of climate change?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "How do vaccines work?",
    "Translate 'good morning, how are you?' into French.",
    "What is the difference between weather and climate?",
    "Suggest a name for a new coffee shop.",
    "Explain what a prime number is, with examples.",
    "Write a polite email declining a meeting invitation.",
    "What happened during the French Revolution?",
    "How does a computer store information?",
    "What should I pack for a weekend camping trip?",
    "Explain gravity to a ten-year-old.",
    "What are the benefits of reading books?",
    "If I have 3 apples and buy 5 more, then eat 2, how many do I have?",
    "Describe the water cycle.",
    "What is machine learning?",
    "Give me a simple recipe for pancakes.",
    "Why do we have seasons on Earth?",
    "Write a haiku about autumn leaves.",
    "What is the role of the heart in the human body?",
    "How can I improve my sleep?",
    "Explain the rules of chess briefly.",
    "What is the difference between a virus and a bacterium?",
)


def cache_key(model_name: str, prompts: tuple[str, ...], new_tokens: int) -> str:
    payload = json.dumps({"model": model_name, "prompts": prompts, "new_tokens": new_tokens, "decoding": "greedy"})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def generated_reference(
    base: nn.Module | Callable[[], nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    model_name: str,
    new_tokens: int,
    batch_size: int = 16,
    cache_root: Path | None = None,
) -> tuple[list[Example], str]:
    """(prompt, base answer) conversations for PROBE_PROMPTS; generated on first use, then read from the cache.
    `base` may be a loader, called only when the answers are not cached yet."""
    path = (cache_root or cache_dir()) / "audit" / f"reference-{cache_key(model_name, PROBE_PROMPTS, new_tokens)}.json"
    if path.is_file():
        answers = json.loads(path.read_text())["answers"]
    else:
        conversations = [[{"role": "user", "content": p}] for p in PROBE_PROMPTS]
        model = base if isinstance(base, nn.Module) else base()
        answers = generate_all(model, tokenizer, conversations, Decoding(new_tokens), batch_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"model": model_name, "new_tokens": new_tokens, "prompts": PROBE_PROMPTS, "answers": answers})
    examples = [
        Example(line=i + 1, messages=({"role": "user", "content": p}, {"role": "assistant", "content": a}))
        for i, (p, a) in enumerate(zip(PROBE_PROMPTS, answers, strict=True))
    ]  # an empty answer still scores the end-of-turn token the base chose
    return examples, f"base-model answers ({model_name}) to {len(PROBE_PROMPTS)} built-in prompts (cached: {path})"


def user_reference(path: str, max_rows: int) -> tuple[list[Example], str]:
    """A user's general corpus: any data file; text rows are scored whole, chat rows on their answers."""
    loaded = load_examples(path, max_rows=max_rows)
    return loaded.examples, f"{path} ({loaded.format}, {len(loaded.examples)} rows)"
