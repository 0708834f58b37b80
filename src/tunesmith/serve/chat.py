"""`tunesmith chat`: a terminal REPL that uses the chat template and streams tokens as they come."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from threading import Thread
from typing import Protocol, TextIO

from transformers import TextIteratorStreamer

from tunesmith.data.tokenize import render
from tunesmith.errors import UserError
from tunesmith.evaluate.generate import Decoding, cut_at_stop
from tunesmith.methods.loading import LoadedModel
from tunesmith.output import err
from tunesmith.train.precision import inference, use_bf16

COMMANDS = "/reset clears the conversation, /exit quits"
FEEDBACK_COMMANDS = "/good or /bad rates the last answer, /fix TEXT corrects it"
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


class FeedbackSink(Protocol):
    """Where `/good`, `/bad` and `/fix` go: the server that answered, or a local feedback database."""

    def note(self, messages: list[dict[str, str]], answer: str) -> None: ...  # the exchange just made

    def send(self, rating: int | None, correction: str | None) -> str: ...  # stores; says where


def repl(reply: Reply, system: str | None = None, feedback: FeedbackSink | None = None) -> None:
    """Read user turns from stdin until /exit or EOF; the history is kept for context. `reply` answers a turn:
    the model in this process (`local_reply`) or a running server (`serve.remote.RemoteChat`). `/fix TEXT` also
    puts TEXT in the history in place of the answer, so the conversation goes on from the corrected one."""
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    err.print(f"[dim]chatting; {COMMANDS}{'; ' + FEEDBACK_COMMANDS if feedback else ''}[/]")
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            err.print()
            return
        command = line.strip()
        if command in {"/exit", "/quit"}:
            return
        if command == "/reset":
            history = history[:1] if system else []
            continue
        if command.split(" ", 1)[0] in {"/good", "/bad", "/fix"}:
            _feedback(command, history, feedback)
            continue
        if not command:
            continue
        history.append({"role": "user", "content": line})
        sys.stdout.write("bot> ")
        answer = reply(history)
        if feedback is not None:
            feedback.note(list(history), answer)
        history.append({"role": "assistant", "content": answer})


def _feedback(command: str, history: list[dict[str, str]], feedback: FeedbackSink | None) -> None:
    """Rate (or correct) the last answer; a mistake here is said and the chat goes on."""
    name, _, text = command.partition(" ")
    if feedback is None:
        err.print("[yellow]feedback is off here[/]")
    elif not history or history[-1]["role"] != "assistant":
        err.print("[yellow]there is no answer to rate yet[/]")
    elif name == "/fix" and not text.strip():
        err.print("[yellow]/fix needs the corrected answer: /fix TEXT[/]")
    else:
        try:
            rating = {"/good": 1, "/bad": -1}.get(name)
            correction = text.strip() if name == "/fix" else None  # words after /good or /bad are not an answer
            err.print(f"[green]✓[/] {feedback.send(rating, correction)}")
        except UserError as exc:
            err.print(f"[red]✗[/] {exc}")
            return
        if name == "/fix":
            history[-1] = {"role": "assistant", "content": text.strip()}


def local_reply(loaded: LoadedModel, decoding: Decoding = CHAT_DECODING) -> Reply:
    return lambda messages: stream_reply(loaded, messages, decoding)
