"""`tunesmith chat`."""

from __future__ import annotations

from typing import Annotated

import typer


def chat(
    model: Annotated[str, typer.Argument(help="Run folder/name, catalog name, Hub id or local model folder")],
    prompt: Annotated[str | None, typer.Option(help="Answer this one prompt and exit (for scripts)")] = None,
    system: Annotated[str | None, typer.Option(help="System message")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=4096)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=5.0, help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0, help="Nucleus sampling (with --temperature > 0)")] = 1.0,
    stop: Annotated[
        list[str] | None, typer.Option(help=r"Stop string (repeatable; \n and \t read as newline and tab); not shown")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampled replies")] = 0,
    adapter: Annotated[
        str | None, typer.Option(help="MODEL is a sequence folder: chat with the stage (per-task adapter) of this task")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Chat with a running server (its /v1 base URL) instead; MODEL is its model id or '-'"),
    ] = None,
    feedback_db: Annotated[
        str, typer.Option(help="Where /good, /bad and /fix go (without --url): a SQLite file or a URL")
    ] = "feedback.db",
) -> None:
    """Chat with a model in the terminal, or with a running server (--url); output streams as it is generated.
    /good, /bad and /fix TEXT rate or correct the last answer (kept for `tunesmith feedback export`)."""
    from tunesmith.errors import UserError
    from tunesmith.evaluate.generate import Decoding
    from tunesmith.methods.loading import load_any, merged_for_inference
    from tunesmith.serve.chat import local_reply, repl, stream_reply
    from tunesmith.serve.chat_feedback import LocalFeedback
    from tunesmith.serve.server import model_version
    from tunesmith.tasks import task_of_run
    from tunesmith.train.run_dir import find_run, stage_run

    if stop and "" in stop:
        raise UserError("--stop: a stop string cannot be empty")
    stops = tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in stop or ())
    decoding = Decoding(max_new_tokens, temperature, top_p, stops, seed)
    if url is not None:
        _chat_remote(url, None if model == "-" else model, prompt, system, decoding)
        return
    if adapter:
        model = str(stage_run(model, adapter))
    run = find_run(model)
    if run is not None:
        task_of_run(run, "chat")
    loaded = load_any(model)
    with merged_for_inference(loaded.model):  # a tuned adapter answers at its base's speed
        if prompt is not None:
            messages = [{"role": "system", "content": system}] if system else []
            stream_reply(loaded, [*messages, {"role": "user", "content": prompt}], decoding)
            return
        feedback = LocalFeedback(
            feedback_db, run.name if run else model, model_version(model, run), loaded.tokenizer, decoding
        )
        repl(local_reply(loaded, decoding), system, feedback)


def _chat_remote(url: str, model: str | None, prompt: str | None, system: str | None, decoding) -> None:
    from tunesmith.serve.chat import repl
    from tunesmith.serve.remote import RemoteChat

    chat = RemoteChat(url, decoding, model)
    if prompt is None:
        repl(chat, system, feedback=chat)
        return
    chat([*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": prompt}])
