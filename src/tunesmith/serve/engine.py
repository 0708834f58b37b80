"""Continuous batching: every request in flight is decoded in one batch, one token per step, with a shared KV cache.

Each step is one forward pass over the decoding rows' next tokens and pieces of the prompts that joined
(`serve/ragged.py`): a new request's prompt is computed inside the steps (at most `prefill_tokens` prompt tokens
a step, a long prompt over several), so it never stalls the batch for a pass of its own. When its prompt is done,
its keys and values are left-padded into the batch cache and it decodes with the others; it leaves the step it
finishes (its row is dropped from the cache), so a short answer never waits for a long one. Rows are
left-padded: every row's newest token sits in the last column, and each row carries its own position ids. The
loop runs in one thread of its own (torch ops release the GIL); callers submit requests from any thread and
receive events through `Handle`. A step that fails ends the requests in it with `error`; the engine goes on.

Several LoRA adapters on one base (`adapters`): each request names its adapter (or `BASE`), and a step runs
tokens of different adapters together (PEFT's mixed-adapter batches: the base matmuls once for all tokens, each
adapter's on its own tokens).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.compat.packed_linear import packed_linears
from tunesmith.errors import UserError
from tunesmith.evaluate.generate import cut_at_stop
from tunesmith.serve.batch_cache import BatchCache, Layers
from tunesmith.serve.prefix_cache import PrefixCache
from tunesmith.serve.ragged import Chunk, RaggedModel, StepPlan, ragged_model, unservable_reason
from tunesmith.serve.sampling import Sampling, next_tokens
from tunesmith.train.precision import inference

log = logging.getLogger(__name__)
PREFILL_TOKENS = 128  # prompt tokens a step computes at most: bounds how much a new prompt slows the others' step


class QueueFull(Exception):
    """The engine's waiting queue is at its bound; the caller should retry later."""


@dataclass
class Event:
    """What a request produced since the last event: new text, and at the end why it finished."""

    text: str
    finish_reason: str | None = None  # stop | length | cancelled | error
    completion_tokens: int = 0


@dataclass
class Handle:
    """A submitted request. Events go to `on_event` when given (e.g. an asyncio queue's thread-safe put), else to
    a thread-safe queue that `events()` reads. `cancel()` frees its batch slot at the next step."""

    id: int
    prompt_tokens: int
    on_event: Callable[[Event], None] | None = None
    _queue: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False

    def emit(self, event: Event) -> None:
        (self.on_event or self._queue.put)(event)

    def cancel(self) -> None:
        self.cancelled = True

    def events(self, timeout: float | None = None):
        """Events until the last one (blocking); for callers without an event loop."""
        while True:
            event = self._queue.get(timeout=timeout)
            yield event
            if event.finish_reason is not None:
                return

    def result(self, timeout: float | None = None) -> Event:
        """The whole text and the finish reason, once finished."""
        parts, last = [], Event("")
        for last in self.events(timeout):
            parts.append(last.text)
        return Event("".join(parts), last.finish_reason, last.completion_tokens)


BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


@dataclass
class _Row:
    handle: Handle
    sampling: Sampling
    prompt_len: int
    generator: torch.Generator | None
    adapter: str | None = None
    tokens: list[int] = field(default_factory=list)  # generated so far; the last one is not yet fed to the model
    sent: int = 0  # characters of the answer already emitted

    @property
    def position(self) -> int:
        """Position id of the newest token (the prompt holds positions 0 .. prompt_len-1)."""
        return self.prompt_len + len(self.tokens) - 1


@dataclass
class _Filling:
    """An admitted request whose prompt is being computed, a chunk per step; `done` prompt tokens have their keys
    and values in `layers` (a reused prefix counts as done)."""

    handle: Handle
    prompt: list[int]
    sampling: Sampling
    adapter: str | None
    done: int
    layers: Layers


@dataclass(frozen=True)
class EngineStats:
    waiting: int
    active: int
    steps: int
    generated_tokens: int
    reused_prompt_tokens: int = 0  # prompt tokens not computed again: their prefix's keys and values were kept


class Engine:
    """Owns the model while serving. `submit` is thread-safe; `close` cancels what is left and stops the loop."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_batch: int = 16,
        max_queue: int = 64,
        bf16: bool = True,
        eos_ids: set[int] | None = None,
        adapters: frozenset[str] = frozenset(),
        prefill_tokens: int = PREFILL_TOKENS,
        packed: bool = True,
    ) -> None:
        """`adapters`: the PEFT adapter names of `model` that requests may choose (empty: one model, no choice).
        `prefill_tokens`: prompt tokens computed per step at most, beside the decoding rows. `packed`: fp32
        decode steps multiply weights packed once for `max_batch` rows (`compat.packed_linear`)."""
        if (reason := unservable_reason(model)) is not None:
            raise UserError(f"this model cannot be served: {reason}")
        self.model, self.tokenizer, self.bf16 = model, tokenizer, bf16
        self.max_batch, self.max_queue, self.prefill_tokens = max_batch, max_queue, max(1, prefill_tokens)
        self.eos_ids = eos_ids if eos_ids is not None else end_token_ids(model, tokenizer)
        self.adapters, self.packed = adapters, packed and not bf16
        self._waiting: deque[tuple[Handle, list[int], Sampling, str | None]] = deque()
        self._wake = threading.Condition()
        self._rows: list[_Row] = []
        self._filling: list[_Filling] = []
        self._cache = BatchCache()
        self._prefixes: dict[str | None, PrefixCache] = {}  # per adapter: its keys and values are its own
        self._ids = itertools.count(1)
        self._closed = False
        self._steps = self._generated = 0
        self._thread = threading.Thread(target=self._loop, name="tunesmith-engine", daemon=True)
        self._thread.start()

    def submit(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        on_event: Callable[[Event], None] | None = None,
        adapter: str | None = None,
    ) -> Handle:
        """Queue a request (for `adapter`, one of `adapters` or BASE, when the engine serves several); raises
        QueueFull when `max_queue` requests are already waiting for a slot."""
        if not prompt_ids:
            raise ValueError("empty prompt")
        if (adapter is None) != (not self.adapters) or (adapter is not None and adapter not in self.adapters | {BASE}):
            raise ValueError(f"adapter {adapter!r}: this engine serves {sorted(self.adapters) or 'one model'}")
        handle = Handle(next(self._ids), len(prompt_ids), on_event)
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are waiting")
            self._waiting.append((handle, prompt_ids, sampling, adapter))
            self._wake.notify()
        return handle

    def stats(self) -> EngineStats:
        reused = sum(prefixes.reused_tokens for prefixes in list(self._prefixes.values()))
        active = len(self._rows) + len(self._filling)
        return EngineStats(len(self._waiting), active, self._steps, self._generated, reused)

    def close(self, timeout: float = 30.0) -> None:
        """Stop: requests still waiting or decoding end as `cancelled` at the next step."""
        with self._wake:
            self._closed = True
            for handle, *_ in self._waiting:
                handle.cancel()
            for request in [*self._rows, *self._filling]:
                request.handle.cancel()
            self._wake.notify()
        self._thread.join(timeout)

    # The loop: admit waiting requests into free slots, then one step for every row and prompt chunk.
    def _loop(self) -> None:
        try:
            packed = packed_linears(self.model, self.max_batch) if self.packed else contextlib.nullcontext()
            with inference(self.model, self.bf16), packed, ragged_model(self.model) as ragged:
                while True:
                    with self._wake:
                        while not self._closed and not self._waiting and not self._rows and not self._filling:
                            self._wake.wait()
                        if self._closed and not self._waiting and not self._rows and not self._filling:
                            return
                    self._admit()
                    self._guarded_step(ragged)
        except BaseException:  # noqa: BLE001 - every waiting caller must hear of it, then it propagates
            self._fail_in_flight()
            self._fail_waiting()
            raise

    def _admit(self) -> None:
        while len(self._rows) + len(self._filling) < self.max_batch:
            with self._wake:
                if not self._waiting:
                    return
                handle, prompt_ids, sampling, adapter = self._waiting.popleft()
            if handle.cancelled:
                handle.emit(Event("", "cancelled"))
                continue
            done, layers = self._prefixes.setdefault(adapter, PrefixCache()).lookup(prompt_ids)
            self._filling.append(_Filling(handle, prompt_ids, sampling, adapter, done, layers))

    def _guarded_step(self, ragged: RaggedModel) -> None:
        """One step; a failure ends the requests in flight with `error` and the engine serves the next ones."""
        self._drop_cancelled_fillings()
        if not self._rows and not self._filling:
            return
        try:
            self._step(ragged)
        except Exception:  # noqa: BLE001 - logged; a bad step must not take the server down with it
            log.exception("decode step failed; the %d requests in it end with an error", self.stats().active)
            self._fail_in_flight()

    def _drop_cancelled_fillings(self) -> None:
        for filling in [f for f in self._filling if f.handle.cancelled]:
            filling.handle.emit(Event("", "cancelled"))
            self._filling.remove(filling)

    def _step(self, ragged: RaggedModel) -> None:
        decoding = self._rows
        tokens = [row.tokens[-1] for row in decoding]
        positions = [row.position for row in decoding]
        adapters = [row.adapter for row in decoding]
        keep, chunks, finishing = list(range(len(decoding))), [], []
        budget = self.prefill_tokens
        for filling in self._filling:
            length = min(budget, len(filling.prompt) - filling.done)
            if length <= 0:
                break
            tokens += filling.prompt[filling.done : filling.done + length]
            positions += range(filling.done, filling.done + length)
            adapters += [filling.adapter] * length
            chunks.append(Chunk(length, filling.layers))
            filling.done += length
            budget -= length
            if filling.done == len(filling.prompt):
                keep.append(len(tokens) - 1)
                finishing.append(filling)
        plan = StepPlan(len(decoding), self._cache, self._cache.step_mask() if decoding else None, chunks)
        logits = ragged.logits(plan, tokens, positions, keep, **self._adapter_names(adapters))
        self._steps += 1
        if decoding:
            assert plan.mask is not None
            self._cache.accept_step(plan.mask)
            rows = self._rows
            self._advance(next_tokens(logits[: len(rows)], [r.sampling for r in rows], [r.generator for r in rows]))
        for index, filling in enumerate(finishing, start=len(decoding)):
            self._start_decoding(filling, logits[index : index + 1])

    def _start_decoding(self, filling: _Filling, logits: torch.Tensor) -> None:
        """A prompt is done: keep its keys and values for later prompts, join the batch, choose its first token."""
        self._filling.remove(filling)
        self._prefixes[filling.adapter].keep(filling.prompt, filling.layers)
        generator = filling.sampling.generator()
        self._cache.join(filling.layers, len(filling.prompt))
        self._rows.append(_Row(filling.handle, filling.sampling, len(filling.prompt), generator, filling.adapter))
        self._advance(next_tokens(logits, [filling.sampling], [generator]))

    def _adapter_names(self, names: list[str | None]) -> dict[str, Any]:
        return {"adapter_names": names} if self.adapters else {}

    def _advance(self, chosen: list[int]) -> None:
        """Append each row's new token (the last rows when fewer tokens than rows: a prefill), emit text, and drop
        the rows that finished."""
        start = len(self._rows) - len(chosen)
        finished = []
        for offset, token in enumerate(chosen):
            index = start + offset
            row = self._rows[index]
            reason = self._append(row, token)
            if reason is not None:
                finished.append(index)
        if finished:
            keep = [i for i in range(len(self._rows)) if i not in set(finished)]
            self._rows = [self._rows[i] for i in keep]
            self._cache.keep(keep)

    def _append(self, row: _Row, token: int) -> str | None:
        """Record one new token of `row`; emit the text that can no longer change; return why it finished."""
        if row.handle.cancelled:
            self._finish(row, row.sent, "cancelled")
            return "cancelled"
        if token in self.eos_ids:
            return self._finish(row, None, "stop")
        row.tokens.append(token)
        self._generated += 1
        text = self._text(row)
        cut = cut_at_stop(text, row.sampling.stop)
        if len(cut) < len(text):
            return self._finish(row, len(cut), "stop", text=cut)
        if len(row.tokens) >= row.sampling.max_tokens:
            return self._finish(row, None, "length", text=text)
        safe = len(text) - row.sampling.hold()
        while safe > row.sent and text[safe - 1] == "\ufffd":  # half a multi-byte character: wait for the rest
            safe -= 1
        if safe > row.sent:
            row.handle.emit(Event(text[row.sent : safe]))
            row.sent = safe
        return None

    def _finish(self, row: _Row, end: int | None, reason: str, text: str | None = None) -> str:
        text = self._text(row) if text is None else text
        end = len(text) if end is None else end
        row.handle.emit(Event(text[row.sent : end], reason, completion_tokens=len(row.tokens)))
        row.sent = end
        return reason

    def _text(self, row: _Row) -> str:
        # No clean-up of spaces: text already streamed must stay a prefix of the text that follows.
        return self.tokenizer.decode(row.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _fail_in_flight(self) -> None:
        for row in self._rows:
            row.handle.emit(Event("", "error", completion_tokens=len(row.tokens)))
        for filling in self._filling:
            filling.handle.emit(Event("", "error"))
        self._rows, self._filling, self._cache = [], [], BatchCache()

    def _fail_waiting(self) -> None:
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
            self._closed = True
        for handle, *_ in waiting:
            handle.emit(Event("", "error"))


def end_token_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Tokens that end an answer: the tokenizer's EOS and the generation config's (a chat model's end-of-turn)."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    found: Any = getattr(config, "eos_token_id", None)
    for value in (tokenizer.eos_token_id, found):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids
