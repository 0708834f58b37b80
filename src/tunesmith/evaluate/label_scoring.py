"""Label likelihood: how probable each candidate label is as the answer to a conversation.

For a classification-style SFT model (text_label rows: user = text, assistant = label), the score of label y
for prompt x is log p(y + end-of-turn | x), summed over exactly the tokens training puts a loss on: every
candidate is encoded with `tokenize.encode_examples`, the training encoder. A softmax over the candidates'
scores gives probabilities; the argmax is the prediction that classification accuracy counts.

The prompt is shared by all candidates, so it runs once per batch: its key/value cache is repeated for the K
candidates and only the few label tokens run K times (one forward for all candidates of the batch). PEFT prompt
and prefix tuning add their virtual tokens inside every forward call, so a second call on a cache would see
them twice; those models score each prompt + candidate as one whole sequence instead.

Prompts also share a beginning with each other: the chat template's system turn (smollm2's default one is about
half of an SST-2 prompt's ~60 tokens). `SharedPrefix` runs the tokens every prompt begins with once, and each
batch's prefill starts after them.

`prefill` and `score_candidates` are the two halves, so `prompt_pass` can continue generating from the same
cache. Everything here runs inside `train.precision.inference` (no autograd, eval mode, bf16 weights once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Cache, DynamicCache, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from tunesmith.compat.attention import AFTER_PREFIX
from tunesmith.data.batching import eval_batches
from tunesmith.data.example import Example
from tunesmith.data.tokenize import Encoded, encode_examples
from tunesmith.errors import UserError
from tunesmith.train.numerics import IGNORE_INDEX, is_prompt_learning
from tunesmith.train.precision import inference

NO_TRUNCATION = 1 << 30


@dataclass(frozen=True)
class Candidates:
    """One prompt with all its candidate answers as token ids: a shared prefix plus one suffix per label.

    `targets[c][j]` is the token that suffix position j must predict (IGNORE_INDEX where training takes no loss),
    so the suffix starts at the last prompt token, whose logits predict the first label token.
    """

    prefix: list[int]
    suffixes: list[list[int]]
    targets: list[list[int]]


def _last_answer_only(encoded: Encoded) -> Encoded:
    """The example with targets on its last assistant turn only (the candidate label)."""
    labels = list(encoded.labels)
    end = max(j for j, t in enumerate(labels) if t != IGNORE_INDEX)
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    labels[:start] = [IGNORE_INDEX] * start
    return Encoded(encoded.input_ids, labels, encoded.line)


def encode_candidates(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Sequence[dict[str, str]],
    labels: Sequence[str],
    max_length: int | None = None,
) -> Candidates:
    """Encode `prompt` + each label as training does and split off the prefix the candidates share."""
    examples = [Example(line=0, messages=(*prompt, {"role": "assistant", "content": label})) for label in labels]
    encoded, report = encode_examples(tokenizer, examples, max_length or NO_TRUNCATION)
    if len(encoded) != len(labels) or report.truncated_lines:
        raise UserError(f"a prompt is too long for max_length={max_length}: its label tokens would be cut off")
    encoded = [_last_answer_only(e) for e in encoded]  # earlier assistant turns (few-shot examples) are context
    first_target = min(next(j for j, t in enumerate(e.labels) if t != IGNORE_INDEX) for e in encoded)
    common = 0
    while common < first_target and len({e.input_ids[common] for e in encoded}) == 1:
        common += 1
    cut = min(common, first_target - 1)  # the token before the first label token runs with the suffix
    if cut < 1:
        raise UserError("the chat template renders nothing before the answer; cannot score labels")
    return Candidates(
        prefix=encoded[0].input_ids[:cut],
        suffixes=[e.input_ids[cut:] for e in encoded],
        targets=[e.labels[cut + 1 :] + [IGNORE_INDEX] for e in encoded],
    )


def _right_padded(rows: Sequence[list[int]], fill: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), fill, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def _summed_target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of its targets (IGNORE_INDEX positions count zero)."""
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return (logp * (targets != IGNORE_INDEX)).sum(-1)


@dataclass
class Prefilled:
    """A batch of prompt prefixes after one forward: right-padded ids, their mask and the key/value cache (whose
    padding columns sit between each prefix and whatever runs next; the mask hides them)."""

    ids: torch.Tensor
    mask: torch.Tensor
    cache: Cache

    def select(self, rows: Sequence[int], copies: int = 1) -> Prefilled:
        """Only these rows, from a cache that holds each row `copies` times in a row (as after scoring K
        candidates). The cache is changed in place and shared."""
        index = torch.tensor(rows)
        self.cache.batch_select_indices(index * copies)
        return Prefilled(self.ids[index], self.mask[index], self.cache)


MIN_SHARED = 8  # shorter common beginnings are not worth a separate forward


@dataclass(frozen=True)
class SharedPrefix:
    """The tokens every prompt of an evaluation begins with, and their keys and values (a batch of one)."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    def cache_for(self, rows: int) -> DynamicCache:
        """A cache holding the shared tokens for `rows` rows (views; the first update copies them)."""
        return DynamicCache(
            ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self.layers]
        )


def shared_length(encoded: Sequence[Candidates]) -> int:
    """How many tokens all prefixes begin with, leaving each at least one token of its own."""
    if not encoded:
        return 0
    first, length = encoded[0].prefix, min(len(c.prefix) for c in encoded) - 1
    for c in encoded[1:]:
        length = next((j for j in range(length) if c.prefix[j] != first[j]), length)
    return length


def shared_prefix(model: nn.Module, encoded: Sequence[Candidates]) -> SharedPrefix | None:
    """The common beginning of all prompts run once, leaving each prompt at least one token of its own; None when
    it is short, or when the model's cache is not plain full attention (a sliding window's mask is not causal)."""
    length = shared_length(encoded)
    if length < MIN_SHARED or is_prompt_learning(model):
        return None
    first = encoded[0].prefix
    cache = model(input_ids=torch.tensor([first[:length]]), use_cache=True, logits_to_keep=1).cache
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return SharedPrefix(first[:length], [(layer.keys, layer.values) for layer in layers])


def prefill(
    model: nn.Module, batch: Sequence[Candidates], pad_id: int, shared: SharedPrefix | None = None
) -> Prefilled:
    """The prefixes of a batch in one forward, keeping only their cache (no logits are needed); with `shared`,
    the forward runs only the tokens after the shared ones, on their cache.

    Right padding and no mask: under causal attention a real token never sees the padding after it, so the
    positions and outputs are training's, and the attention needs no mask (`compat.attention`'s batched
    matmuls take it; a padding mask would send it to the fused kernel, 2-3x slower here)."""
    mask = _right_padded([[1] * len(c.prefix) for c in batch], 0)
    if shared is None:
        ids = _right_padded([c.prefix for c in batch], pad_id)
        return Prefilled(ids, mask, model(input_ids=ids, use_cache=True, logits_to_keep=1).cache)
    start = len(shared.ids)
    rest = _right_padded([c.prefix[start:] for c in batch], pad_id)
    positions = torch.arange(start, start + rest.shape[1]).expand(len(batch), -1)
    out = model(
        input_ids=rest,
        position_ids=positions,
        cache=shared.cache_for(len(batch)),
        use_cache=True,
        logits_to_keep=1,
        **{AFTER_PREFIX: True},
    )
    ids = torch.cat([torch.tensor(shared.ids).expand(len(batch), -1), rest], dim=1)
    return Prefilled(ids, mask, out.cache)


def score_candidates(model: nn.Module, prefilled: Prefilled, batch: Sequence[Candidates], pad_id: int) -> torch.Tensor:
    """Summed label log-probabilities, shape [len(batch), K]: every candidate suffix in one forward on the
    prefixes' cache repeated K times. The cache is cut back to the prefixes afterwards (row i at index i·K)."""
    k = len(batch[0].suffixes)
    prefilled.cache.batch_repeat_interleave(k)
    suffixes = [s for c in batch for s in c.suffixes]
    suffix_ids = _right_padded(suffixes, pad_id)
    suffix_mask = _right_padded([[1] * len(s) for s in suffixes], 0)
    targets = _right_padded([t for c in batch for t in c.targets], IGNORE_INDEX)
    lengths = torch.tensor([len(c.prefix) for c in batch]).repeat_interleave(k)
    suffix_positions = lengths[:, None] + torch.arange(suffix_ids.shape[1])[None, :]
    scored = targets.ne(IGNORE_INDEX).any(0).nonzero()[:, 0]  # columns with a target: logits only there
    logits = model(
        input_ids=suffix_ids,
        attention_mask=torch.cat([prefilled.mask.repeat_interleave(k, 0), suffix_mask], dim=1),
        position_ids=suffix_positions,
        cache=prefilled.cache,
        use_cache=True,
        logits_to_keep=scored,
    ).logits.float()
    prefilled.cache.crop(-suffix_ids.shape[1])
    return _summed_target_logprobs(logits, targets[:, scored]).view(len(batch), k)


def score_batch(
    model: nn.Module, batch: Sequence[Candidates], pad_id: int, shared: SharedPrefix | None = None
) -> torch.Tensor:
    """Summed label log-probabilities, shape [len(batch), K]: the prefixes in one forward, then every candidate
    suffix in a second forward on the prefixes' key/value cache."""
    return score_candidates(model, prefill(model, batch, pad_id, shared), batch, pad_id)


def score_batch_whole(model: nn.Module, batch: Sequence[Candidates], pad_id: int, shared: None = None) -> torch.Tensor:
    """`score_batch` without the shared cache: every prompt + candidate runs as one right-padded sequence."""
    k = len(batch[0].suffixes)
    rows = [c.prefix + s for c in batch for s in c.suffixes]
    ids = _right_padded(rows, pad_id)
    mask = _right_padded([[1] * len(r) for r in rows], 0)
    logits = model(input_ids=ids, attention_mask=mask).logits
    logits = logits[:, logits.shape[1] - ids.shape[1] :].float()  # prompt tuning puts its virtual tokens first
    starts = torch.tensor([len(c.prefix) for c in batch]).repeat_interleave(k)
    targets = _right_padded([t for c in batch for t in c.targets], IGNORE_INDEX)
    at = (starts[:, None] + torch.arange(targets.shape[1])[None, :]).clamp(max=ids.shape[1] - 1)
    picked = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1]))
    return _summed_target_logprobs(picked, targets).view(len(batch), k)


def encode_all(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[dict[str, str]]],
    labels: Sequence[str],
    max_length: int | None = None,
) -> list[Candidates]:
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise UserError(f"label scoring needs at least two distinct labels, got {list(labels)}")
    return [encode_candidates(tokenizer, prompt, labels, max_length) for prompt in prompts]


def label_logprobs(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[dict[str, str]]],
    labels: Sequence[str],
    batch_size: int = 16,
    max_length: int | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """log p(label + end-of-turn | prompt) for every prompt and candidate label: a [len(prompts), K] tensor.

    Prompts are length-sorted into batches (less padding); rows come back in the input order.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = encode_all(tokenizer, prompts, labels, max_length)
    scores = torch.empty((len(encoded), len(labels)))
    score = score_batch_whole if is_prompt_learning(model) else score_batch
    with inference(model, bf16):
        shared = shared_prefix(model, encoded)
        for idx in eval_batches([len(c.prefix) for c in encoded], batch_size):
            scores[idx] = score(model, [encoded[i] for i in idx], pad_id, shared)
    return scores


def label_probabilities(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[dict[str, str]]],
    labels: Sequence[str],
    batch_size: int = 16,
    max_length: int | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Softmax over the candidates of `label_logprobs`: each row sums to 1."""
    return torch.softmax(label_logprobs(model, tokenizer, prompts, labels, batch_size, max_length, bf16), dim=-1)


def accuracy_by_likelihood(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    labels: Sequence[str],
    batch_size: int = 16,
    bf16: bool = False,
) -> tuple[float, list[str]]:
    """Share of examples whose most likely label is their target, and the predicted label of each example."""
    unknown = sorted({e.target for e in examples if e.target not in labels}, key=str)
    if unknown:
        raise UserError(f"targets {unknown[:5]} are not among the candidate labels {list(labels)}")
    scores = label_logprobs(model, tokenizer, [e.prompt_messages for e in examples], labels, batch_size, bf16=bf16)
    predictions = [labels[i] for i in scores.argmax(-1).tolist()]
    hits = sum(p == e.target for p, e in zip(predictions, examples, strict=True))
    return (hits / len(examples) if examples else float("nan")), predictions
