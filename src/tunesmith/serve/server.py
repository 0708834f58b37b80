"""`tunesmith serve`: load the model once (a tuned adapter folded into its base, so it answers at the base's
speed), start the batching engine, and run the API under uvicorn until Ctrl-C."""

from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path

from tunesmith.databases import masked
from tunesmith.errors import UserError
from tunesmith.output import err
from tunesmith.serve.app import Limits, ModelEntry, Served, create_app
from tunesmith.serve.engine import Engine
from tunesmith.serve.feedback_log import FeedbackLog
from tunesmith.serve.keys import ENV_VAR, KeyStore
from tunesmith.serve.limits import KeyLimits


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    keys_file: Path | None = None
    max_batch: int = 16
    max_queue: int = 64
    limits: Limits = Limits()
    key_limits: KeyLimits = KeyLimits()
    feedback_db: str | None = "feedback.db"  # None: no response log, no /v1/feedback
    adapters: tuple[str, ...] = ()  # NAME=PATH or a sequence's stage NAME: several adapters on one base


def is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_served(target: str, options: ServeOptions) -> tuple[Served, KeyStore | None]:
    """The keys (checked first: a refusal costs no model load), then the model and its engine."""
    from tunesmith.methods.loading import can_merge, load_any
    from tunesmith.train.precision import use_bf16
    from tunesmith.train.run_dir import find_run

    keys = KeyStore.from_environment(options.keys_file)
    if keys is None and not is_local(options.host):
        raise UserError(
            f"refusing to listen on {options.host} without API keys: pass --keys-file FILE or set ${ENV_VAR}, "
            "or listen on 127.0.0.1"
        )
    if options.adapters:
        return _several_adapters(target, options), keys
    loaded = load_any(target)
    model = loaded.model.merge_and_unload() if can_merge(loaded.model) else loaded.model
    engine = Engine(model.eval(), loaded.tokenizer, options.max_batch, options.max_queue, bf16=use_bf16("auto"))
    run = find_run(target)
    name = run.name if run is not None else target
    window = int(getattr(model.config, "max_position_embeddings", 2048))
    return Served(name, engine, window, int(time.time()), model_version(target, run)), keys


def _several_adapters(target: str, options: ServeOptions) -> Served:
    """One engine over the base with every adapter loaded unmerged; each adapter and the base is a model id."""
    from tunesmith.serve import adapters
    from tunesmith.train.precision import use_bf16

    serve_plan = adapters.plan(target, list(options.adapters))
    model, tokenizer = adapters.load(serve_plan)
    names = frozenset(source.name for source in serve_plan.adapters)
    engine = Engine(model, tokenizer, options.max_batch, options.max_queue, bf16=use_bf16("auto"), adapters=names)
    entries = [ModelEntry(serve_plan.base, adapters.BASE, serve_plan.base)]
    for source in serve_plan.adapters:
        version = model_version(str(source.folder), source.run) if source.run else _folder_hash(source.folder)
        entries.append(ModelEntry(source.name, source.name, version, source.name))
    default = next(e for e in entries if e.id == serve_plan.default)
    others = tuple(e for e in entries if e is not default)
    window = int(getattr(model.config, "max_position_embeddings", 2048))
    created = int(time.time())
    return Served(default.id, engine, window, created, default.version, default.adapter, others, default.engine_adapter)


def model_version(target: str, run: Path | None) -> str:
    """A run's exported weights' content hash (the same name can hold another model after a retrain); else the
    name it was loaded by."""
    files = [] if run is None else sorted(run.glob("adapter/*.safetensors")) or sorted(run.glob("model/*.safetensors"))
    return _files_hash(files) if files else target


def _folder_hash(folder: Path) -> str:
    return _files_hash(sorted(folder.glob("*.safetensors"))) or str(folder)


def _files_hash(files: list[Path]) -> str:
    if not files:
        return ""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def serve(target: str, options: ServeOptions) -> None:
    import uvicorn

    from tunesmith.feedback.store import FeedbackStore

    served, keys = build_served(target, options)  # a refusal (no keys on a public address) creates no database
    try:
        feedback = FeedbackLog(FeedbackStore(options.feedback_db)) if options.feedback_db else None
    except BaseException:
        served.engine.close()
        raise
    app = create_app(served, keys, options.limits, options.key_limits, feedback)
    where = f"http://{options.host}:{options.port}/v1"
    guard = f"{len(keys)} API key(s)" if keys is not None else "no API key (local only)"
    log = (
        f"responses and feedback → {masked(feedback.store.url).removeprefix('sqlite:///')}"
        if feedback
        else "no feedback"
    )
    names = ", ".join(served.models)
    err.print(f"serving [bold]{names}[/] at {where} · {guard} · batch up to {options.max_batch} · {log}")
    err.print("Ctrl-C stops")
    try:
        uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)
    finally:
        served.engine.close()
        if feedback is not None:
            feedback.close()
