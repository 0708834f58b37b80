"""Lengths: tokens per example with the model's tokenizer and chat template, as training will see them.

`encode_examples` (the training path) decides what is truncated and what is left with no trainable token;
rows it truncated are encoded once more in full, so the histogram shows their real length. Without a
tokenizer (`--no-tokenizer`) the histogram counts words instead and no length finding is made.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tunesmith.data.example import Example
from tunesmith.data.quality.report import Finding, agree, plural
from tunesmith.errors import UserError

if TYPE_CHECKING:  # transformers is slow to import; `--no-tokenizer` never needs it
    from transformers import PreTrainedTokenizerBase

FIRST_EDGE = 16


def token_lengths(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_length: int, where: str
) -> tuple[list[int], dict[str, Any]]:
    """(untruncated tokens per example, the encode report as a dict)."""
    from tunesmith.data.tokenize import bounded, encode_chat, encode_examples

    try:
        encoded, report = encode_examples(tokenizer, examples, max_length)
    except ValueError as exc:
        raise UserError(f"{where}: cannot tokenize the data: {exc}") from None
    per_line: Counter[int] = Counter()
    for piece in encoded:
        per_line[piece.line] += len(piece.input_ids)
    cut = set(report.truncated_lines) | set(report.dropped_no_target_lines)
    lengths = []
    for example in examples:
        if example.line in cut and example.text is None:  # its real length, up to where it can matter
            lengths.append(len(encode_chat(tokenizer, _with_answer(bounded(example, max_length))).input_ids))
        else:
            lengths.append(per_line[example.line])
    info = report.as_dict()
    info["truncated_lines"], info["dropped_lines"] = report.truncated_lines, report.dropped_no_target_lines
    return lengths, info


def _with_answer(example: Example) -> Example:
    """`encode_chat` needs an assistant turn; a conversation cut before its answer gets an empty one."""
    if any(m["role"] == "assistant" for m in example.messages):
        return example
    return replace(example, messages=(*example.messages, {"role": "assistant", "content": ""}))


def word_lengths(examples: Sequence[Example]) -> list[int]:
    """Words per example (all turns, system included), when no tokenizer is used."""
    texts = (e.text if e.text is not None else " ".join(t["content"] for t in e.messages) for e in examples)
    return [len(text.split()) for text in texts]


def histogram(lengths: Sequence[int], limit: int | None, top: int | None = None) -> list[dict[str, Any]]:
    """Rows per length bucket: doubling edges from 16 up to `limit` (or `top`, or the longest row), then '> limit'."""
    top = limit or top or max(lengths, default=0)
    edges = [0]
    edge = FIRST_EDGE
    while edge < top:
        edges.append(edge)
        edge *= 2
    edges.append(top + 1)
    buckets = []
    for low, high in zip(edges, edges[1:], strict=False):
        buckets.append({"range": f"{low}-{high - 1}", "rows": sum(low <= n < high for n in lengths)})
    if limit is not None:
        buckets.append({"range": f"> {limit}", "rows": sum(n > limit for n in lengths)})
    return buckets


def summary(lengths: Sequence[int], unit: str, limit: int | None, top: int | None = None) -> dict[str, Any]:
    """Count, mean, median, p95, max and histogram of `lengths` (`top`: last bucket edge when no `limit`)."""
    ordered = sorted(lengths)
    return {
        "unit": unit,
        "rows": len(ordered),
        "mean": round(statistics.fmean(ordered), 1) if ordered else 0,
        "median": ordered[len(ordered) // 2] if ordered else 0,
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0,
        "max": ordered[-1] if ordered else 0,
        "histogram": histogram(ordered, limit, top),
    }


def length_findings(split: str, info: dict[str, Any], max_length: int) -> list[Finding]:
    """Rows cut to data.max_length, and rows left with no trainable token after the cut."""
    findings = []
    for code, key, what in (
        ("over_max_length", "truncated_lines", f"is|are longer than data.max_length={max_length} (truncated)"),
        ("no_trainable_tokens", "dropped_lines", "has|have no trainable token left after truncation (dropped)"),
    ):
        lines = info[key]
        if lines:
            rows = [{"line": line} for line in lines]
            findings.append(
                Finding(
                    "length", code, split, len(lines), f"{plural(len(lines), 'row')} {agree(len(lines), what)}", rows
                )
            )
    return findings
