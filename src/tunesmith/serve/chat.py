"""`tunesmith chat`: a terminal REPL that uses the chat template and streams tokens as they come."""

from __future__ import annotations

import sys
from threading import Thread

import torch
from transformers import TextIteratorStreamer

from tunesmith.data.tokenize import render
from tunesmith.methods.loading import LoadedModel
from tunesmith.output import err
from tunesmith.train.precision import autocast, use_bf16

COMMANDS = "/reset clears the conversation, /exit quits"


def stream_reply(
    loaded: LoadedModel,
    messages: list[dict[str, str]],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    out=sys.stdout,
) -> str:
    """Generate the assistant's next turn, writing tokens to `out` as they arrive; returns the full text."""
    tok = loaded.tokenizer
    enc = tok(render(tok, messages, generation_prompt=True), return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    kwargs = dict(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        max_new_tokens=max_new_tokens,
        streamer=streamer,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        use_cache=True,
        **sampling,
    )

    def work() -> None:
        with torch.no_grad(), autocast(use_bf16("auto")):
            loaded.model.generate(**kwargs)

    thread = Thread(target=work, daemon=True)
    thread.start()
    pieces = []
    for piece in streamer:
        pieces.append(piece)
        out.write(piece)
        out.flush()
    thread.join()
    out.write("\n")
    return "".join(pieces).strip()


def repl(loaded: LoadedModel, system: str | None = None, max_new_tokens: int = 256, temperature: float = 0.0) -> None:
    """Read user turns from stdin until /exit or EOF; the history is kept for context."""
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
        history.append({"role": "assistant", "content": stream_reply(loaded, history, max_new_tokens, temperature)})
