"""Preference pairs for `task: dpo`: each row's prompt with its chosen and its rejected answer, tokenized alike.

Both sides are the conversation through the chat template with the loss on the final answer only
(`tokenize.encode_chat`), each cut to `data.max_length` tokens. A pair is dropped (and listed) when either side
keeps no answer token after the cut. The reference model's log-probabilities of both answers are filled in once
before training (`ref_chosen`, `ref_rejected`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from transformers import PreTrainedTokenizerBase

from tunesmith.data.example import Example
from tunesmith.data.tokenize import Encoded, EncodeReport, encode_examples


@dataclass
class PreferencePair:
    chosen: Encoded
    rejected: Encoded
    line: int
    ref_chosen: float | None = None  # the reference model's summed log-prob of the chosen answer
    ref_rejected: float | None = None

    @property
    def length(self) -> int:
        """Padded tokens the pair takes in a batch: both sides at the longer one's length."""
        return 2 * max(len(self.chosen.input_ids), len(self.rejected.input_ids))


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_length: int
) -> tuple[list[PreferencePair], EncodeReport]:
    """Encode each example's chosen and rejected conversations; the report counts pairs and both sides' tokens."""
    rejected_side = [replace(e, messages=e.rejected_messages, rejected=None) for e in examples]
    chosen_enc, chosen_report = encode_examples(tokenizer, [replace(e, rejected=None) for e in examples], max_length)
    rejected_enc, rejected_report = encode_examples(tokenizer, rejected_side, max_length)
    by_line = {e.line: e for e in rejected_enc}
    report = EncodeReport(examples_in=len(examples))
    report.truncated_lines = sorted(set(chosen_report.truncated_lines) | set(rejected_report.truncated_lines))
    pairs = []
    for chosen in chosen_enc:
        rejected = by_line.get(chosen.line)
        if rejected is None:
            continue
        pairs.append(PreferencePair(chosen, rejected, chosen.line))
        report.tokens += len(chosen.input_ids) + len(rejected.input_ids)
        report.trainable_tokens += chosen.n_trainable + rejected.n_trainable
    kept = {p.line for p in pairs}
    report.dropped_no_target_lines = [e.line for e in examples if e.line not in kept]
    report.encoded = len(pairs)
    return pairs, report
