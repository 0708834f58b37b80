"""Render examples with the tokenizer's chat template and mark which tokens are trained.

Only assistant turns carry a loss (labels elsewhere are IGNORE_INDEX). Raw-text examples are trained on every
token and split into `max_length` blocks rather than truncated. Examples left without a trainable token after
truncation are dropped and counted, never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.errors import UserError
from tunesmith.models import load_tokenizer
from tunesmith.output import warn

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's cross-entropy default)

# No token of the vocabularies we know spans more characters than this, so the first `max_length` tokens of a
# conversation lie within its first `max_length * CHARS_PER_TOKEN` characters of content.
CHARS_PER_TOKEN = 64

# Used only when a tokenizer ships without a chat template (ChatML, as SmolLM2 and many others use).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Encoded:
    """One tokenized example: ids plus labels (IGNORE_INDEX where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]
    line: int

    @property
    def n_trainable(self) -> int:
        """Tokens that carry a loss (position 0 is never predicted)."""
        return sum(1 for t in self.labels[1:] if t != IGNORE_INDEX)


@dataclass
class EncodeReport:
    """What tokenization did to the rows: nothing is dropped without being counted and listed."""

    examples_in: int = 0
    encoded: int = 0
    truncated_lines: list[int] = field(default_factory=list)
    dropped_no_target_lines: list[int] = field(default_factory=list)
    tokens: int = 0
    trainable_tokens: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "examples_in": self.examples_in,
            "encoded": self.encoded,
            "truncated": len(self.truncated_lines),
            "truncated_lines": self.truncated_lines[:100],
            "dropped_no_trainable_tokens": len(self.dropped_no_target_lines),
            "dropped_lines": self.dropped_no_target_lines[:100],
            "tokens": self.tokens,
            "trainable_tokens": self.trainable_tokens,
        }


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give the tokenizer a ChatML template if it has none; returns True when one was added."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True


def with_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The tokenizer, given a ChatML template (with a warning) when it ships none."""
    if ensure_chat_template(tokenizer):
        warn("the tokenizer has no chat template; using ChatML")
    return tokenizer


def load_chat_tokenizer(cfg: Config) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a ChatML template when it ships none."""
    return with_chat_template(load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code))


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id batches are padded with: the pad token, else EOS."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise UserError("the tokenizer has neither a pad nor an eos token; cannot batch examples")
    return pid


def render(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    """The chat template applied as text (transformers renders it in a sandboxed Jinja environment)."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]) -> tuple[str, list]:
    """Render a conversation and return it with the character spans of each assistant turn.

    A span runs from the end of the generation prompt before the turn to the end of the turn as rendered, so it
    includes the template's end-of-turn marker: the model learns to stop.
    """
    full = render(tokenizer, messages, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(prefix)):
            raise ValueError("the chat template does not render conversations incrementally; cannot mask prompts")
        spans.append((len(prefix), len(upto)))
    return full, spans


def encode_chat(tokenizer: PreTrainedTokenizerBase, example: Example) -> Encoded:
    """Tokenize a conversation; labels cover assistant turns only, ending in EOS."""
    full, spans = assistant_spans(tokenizer, example.messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for j, (start, _end) in enumerate(enc["offset_mapping"]):
        if any(lo <= start < hi for lo, hi in spans):
            labels[j] = ids[j]
    eos = tokenizer.eos_token
    last_lo, last_hi = spans[-1]
    if eos and eos not in full[last_lo:last_hi] and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return Encoded(ids, labels, example.line)


def encode_text_blocks(tokenizer: PreTrainedTokenizerBase, example: Example, max_length: int) -> list[Encoded]:
    """Tokenize raw text plus EOS, trained on every token, cut into `max_length` blocks."""
    ids = list(tokenizer(example.text or "", add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return [
        Encoded(ids[i : i + max_length], ids[i : i + max_length], example.line) for i in range(0, len(ids), max_length)
    ]


def bounded(example: Example, max_length: int) -> Example:
    """The conversation cut to the content that can reach its first `max_length` tokens (`CHARS_PER_TOKEN`).

    Truncation keeps the first `max_length` tokens, so nothing training sees changes; but a 50 MB field is no
    longer tokenized in full only to be cut (it cost minutes and gigabytes). The same example when nothing is cut.
    """
    budget = max_length * CHARS_PER_TOKEN
    if example.text is not None or sum(len(m["content"]) for m in example.messages) <= budget:
        return example
    kept = []
    for message in example.messages:
        if budget <= 0:
            break
        kept.append({**message, "content": message["content"][:budget]})
        budget -= len(kept[-1]["content"])
    return replace(example, messages=tuple(kept))


def _encode_truncated(
    tokenizer: PreTrainedTokenizerBase, example: Example, max_length: int
) -> tuple[Encoded | None, bool]:
    """(a conversation's first `max_length` tokens, whether anything was cut); None when the cut left no
    assistant turn at all."""
    cut = bounded(example, max_length)
    if not any(m["role"] == "assistant" for m in cut.messages):
        return None, True
    enc = encode_chat(tokenizer, cut)
    truncated = cut is not example or len(enc.input_ids) > max_length
    return Encoded(enc.input_ids[:max_length], enc.labels[:max_length], enc.line), truncated


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_length: int
) -> tuple[list[Encoded], EncodeReport]:
    """Encode every example, truncating to `max_length` and dropping (and listing) those left with no target."""
    report = EncodeReport(examples_in=len(examples))
    out: list[Encoded] = []
    for example in examples:
        if example.text is not None:
            pieces = encode_text_blocks(tokenizer, example, max_length)
        else:
            enc, truncated = _encode_truncated(tokenizer, example, max_length)
            if truncated:
                report.truncated_lines.append(example.line)
            if enc is None:
                report.dropped_no_target_lines.append(example.line)
                continue
            pieces = [enc]
        for piece in pieces:
            if piece.n_trainable == 0:
                report.dropped_no_target_lines.append(example.line)
                continue
            out.append(piece)
            report.tokens += len(piece.input_ids)
            report.trainable_tokens += piece.n_trainable
    report.encoded = len(out)
    return out, report
