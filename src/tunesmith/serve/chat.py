"""`tunesmith chat`: a terminal REPL that uses the chat template and streams tokens as they come."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from threading import Thread
from typing import TextIO

from transformers import TextIteratorStreamer

from tunesmith.data.tokenize import render
from tunesmith.evaluate.generate import Decoding, cut_at_stop
from tunesmith.methods.loading import LoadedModel
from tunesmith.output import err
from tunesmith.train.precision import inference, use_bf16

COMMANDS = "/reset clears the conversation, /exit quits"
CHAT_DECODING = Decoding(max_new_tokens=256)  # greedy


class StopAwareWriter:
    """Writes streamed text, holding back the last few characters until they cannot start a stop string, so the
    stop string itself never reaches the terminal; after it, nothing more is written."""

    def __init__(self, out: TextIO, stop: Sequence[str]) -> None:
        self.out, self.stop, self.pending, self.written, self.stopped = out, tuple(stop), "", [], False
        self.hold = max((len(s) for s in self.stop), default=1) - 1

    def write(self, piece: str) -> None:
        if self.stopped:
            return
        self.pending += piece
        cut = cut_at_stop(self.pending, self.stop)
        if len(cut) < len(self.pending):
            self.stopped, self.pending = True, ""
            self._emit(cut)
        elif len(self.pending) > self.hold:
            split = len(self.pending) - self.hold
            self._emit(self.pending[:split])
            self.pending = self.pending[split:]

    def close(self) -> str:
        self._emit(self.pending)
        self.pending = ""
        return "".join(self.written)

    def _emit(self, text: str) -> None:
        if text:
            self.written.append(text)
            self.out.write(text)
            self.out.flush()


def stream_reply(
    loaded: LoadedModel,
    messages: list[dict[str, str]],
    decoding: Decoding = CHAT_DECODING,
    out: TextIO = sys.stdout,
) -> str:
    """Generate the assistant's next turn, writing text to `out` as it arrives; returns the full text."""
    tok = loaded.tokenizer
    enc = tok(render(tok, messages, generation_prompt=True), return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    failed: list[BaseException] = []

    def work() -> None:
        try:  # inference_mode is per thread: enter it where generate runs
            with inference(loaded.model, use_bf16("auto")), decoding.seeded():
                loaded.model.generate(
                    input_ids=enc["input_ids"],
                    attention_mask=enc["attention_mask"],
                    streamer=streamer,
                    **decoding.generate_kwargs(tok),
                )
        except BaseException as error:  # re-raised in the caller's thread; end the stream so it is not waited on
            failed.append(error)
            streamer.end()

    thread = Thread(target=work, daemon=True)
    thread.start()
    writer = StopAwareWriter(out, decoding.stop)
    for piece in streamer:
        writer.write(piece)
    thread.join()
    if failed:
        raise failed[0]
    text = writer.close()
    out.write("\n")
    return text.strip()


Reply = Callable[[list[dict[str, str]]], str]  # the conversation so far -> the streamed answer


def repl(reply: Reply, system: str | None = None) -> None:
    """Read user turns from stdin until /exit or EOF; the history is kept for context. `reply` answers a turn:
    the model in this process (`local_reply`) or a running server (`serve.remote.remote_reply`)."""
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    err.print(f"[dim]chatting; {COMMANDS}[/]")
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            err.print()
            return
        if line.strip() in {"/exit", "/quit"}:
            return
        if line.strip() == "/reset":
            history = history[:1] if system else []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        sys.stdout.write("bot> ")
        history.append({"role": "assistant", "content": reply(history)})


def local_reply(loaded: LoadedModel, decoding: Decoding = CHAT_DECODING) -> Reply:
    return lambda messages: stream_reply(loaded, messages, decoding)
