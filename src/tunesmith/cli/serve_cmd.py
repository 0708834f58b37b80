"""`tunesmith serve`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer


def serve(
    model: Annotated[str, typer.Argument(help="Run folder/name, catalog name, Hub id or local model folder")],
    host: Annotated[str, typer.Option(help="Address to listen on; a non-local one needs API keys")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    keys_file: Annotated[
        Path | None,
        typer.Option(help="API keys, one per line (name:key); re-read when it changes. Or set $TUNESMITH_API_KEYS"),
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            help="Serve LoRA adapters on MODEL's base together, chosen by the request's `model`: NAME=PATH (a run "
            "or adapter folder; repeatable), or NAME alone for a task's stage when MODEL is a sequence folder"
        ),
    ] = None,
    max_batch: Annotated[int, typer.Option(min=1, max=256, help="Requests decoded together")] = 16,
    max_queue: Annotated[int, typer.Option(min=0, help="Requests waiting beyond the batch; more get 429")] = 64,
    max_tokens: Annotated[int, typer.Option(min=1, help="Cap (and default) of a request's max_tokens")] = 1024,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute per API key (default: no limit)")] = None,
    tpm: Annotated[
        int | None, typer.Option(min=1, help="Tokens per minute per key: prompt + max_tokens reserved, unused returned")
    ] = None,
    concurrent: Annotated[int | None, typer.Option(min=1, help="Requests in flight at once per key")] = None,
    feedback_db: Annotated[
        str, typer.Option(help="Where responses and feedback are kept: a SQLite file or a URL (postgresql://...)")
    ] = "feedback.db",
    no_feedback: Annotated[bool, typer.Option("--no-feedback", help="Log no responses; no /v1/feedback")] = False,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models)."""
    from tunesmith.serve.app import Limits
    from tunesmith.serve.limits import KeyLimits
    from tunesmith.serve.server import ServeOptions
    from tunesmith.serve.server import serve as run_server
    from tunesmith.train.run_dir import stage_run

    adapters = list(adapter or [])
    target = model
    if len(adapters) == 1 and "=" not in adapters[0] and (Path(model) / "sequence.json").is_file():
        target, adapters = str(stage_run(model, adapters[0])), []  # one stage alone: merged, at the base's speed
    limits = Limits(max_tokens=max_tokens)
    key_limits = KeyLimits(rpm, tpm, concurrent)
    options = ServeOptions(host, port, keys_file, max_batch, max_queue, limits, key_limits, adapters=tuple(adapters))
    run_server(target, replace(options, feedback_db=None if no_feedback else feedback_db))
