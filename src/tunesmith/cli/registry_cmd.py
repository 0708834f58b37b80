"""`tunesmith registry`: register finished runs as model versions, promote one to champion, roll back, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tunesmith.cli.output import err, out

app = typer.Typer(help="Versions of your models: lineage, champion, rollback.", no_args_is_help=True)

Db = Annotated[
    str | None, typer.Option("--db", help="Registry database: a SQLite file or a URL (default: the cache folder)")
]
Store = Annotated[Path | None, typer.Option("--store", help="Weight store folder (default: beside a SQLite file)")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _open(db: str | None, store: Path | None):  # noqa: ANN202 - a Registry; imported lazily (fast CLI start)
    from tunesmith.model_registry.store import Registry

    return Registry(db, store)


def _name_version(ref: str) -> tuple[str, int | None]:
    from tunesmith.model_registry.store import parse_ref

    return parse_ref(ref)


@app.command("add")
def add(
    run: Annotated[str, typer.Argument(help="Finished run folder, or run name under ./runs")],
    name: Annotated[str, typer.Option("--name", help="Model name in the registry")],
    parent: Annotated[int | None, typer.Option(help="Version this run was trained from")] = None,
    db: Db = None,
    store: Store = None,
) -> None:
    """Register a run as the next version of NAME (stage: candidate), copying its weights to the store."""
    from tunesmith.train.run_dir import resolve_run

    version = _open(db, store).add(resolve_run(run), name, parent)
    out.print(f"{version.label} registered as candidate (weights {version.weights_hash[:12]})", highlight=False)


@app.command("list")
def list_versions(
    name: Annotated[str | None, typer.Argument(help="Only this model")] = None,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """Every version: stage, base model, method, headline numbers, when it was added."""
    versions = _open(db, None).list(name)
    if as_json:
        rows = [
            {k: getattr(v, k) for k in ("name", "version", "stage", "parent_version", "base_model", "method")}
            | {"created": v.created.isoformat()}
            for v in versions
        ]
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table(title="model registry")
    for col in ("version", "stage", "parent", "base model", "method", "val loss", "added"):
        table.add_column(col)
    for v in versions:
        loss = (v.lineage.get("validation") or {}).get("tuned_val_loss")
        table.add_row(
            v.label,
            v.stage,
            str(v.parent_version or "-"),
            v.base_model,
            v.method,
            f"{loss:.4f}" if isinstance(loss, int | float) else "-",
            v.created.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME (its champion) or NAME:VERSION")],
    db: Db = None,
) -> None:
    """One version with its whole lineage, as JSON."""
    name, version = _name_version(ref)
    v = _open(db, None).get(name, version)
    fields = {k: getattr(v, k) for k in v.__dataclass_fields__ if k != "created"} | {"created": v.created.isoformat()}
    out.print(json.dumps(fields, indent=2, default=str), markup=False)


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Model name")],
    version: Annotated[int, typer.Argument(help="Version to make the champion")],
    note: Annotated[str | None, typer.Option(help="Why (kept in the history)")] = None,
    db: Db = None,
) -> None:
    """Make VERSION the champion of NAME; the previous champion is archived (rollback brings it back)."""
    registry = _open(db, None)
    before = registry.champion(name)
    registry.promote(name, version, note)
    was = f" (was {before.label}, now archived)" if before and before.version != version else ""
    out.print(f"{name}:{version} is the champion{was}", highlight=False)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name")],
    note: Annotated[str | None, typer.Option(help="Why (kept in the history)")] = None,
    db: Db = None,
) -> None:
    """Bring back the champion before the current one; the current one is archived."""
    registry = _open(db, None)
    current = registry.get(name)
    restored = registry.rollback(name, note)
    out.print(f"{restored.label} is the champion again ({current.label} archived)", highlight=False)


@app.command("diff")
def diff(
    name: Annotated[str, typer.Argument(help="Model name")],
    a: Annotated[int, typer.Argument(help="First version")],
    b: Annotated[int, typer.Argument(help="Second version")],
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """What changed from version A to B: config keys, data files, and the numbers (B − A)."""
    from tunesmith.model_registry.diff import diff as version_diff

    registry = _open(db, None)
    found = version_diff(registry.get(name, a), registry.get(name, b))
    if as_json:
        out.print(json.dumps(found, indent=2, default=str), markup=False)
        return
    table = Table(title=f"{name}: {a} → {b}")
    for col in ("what", f"v{a}", f"v{b}", "change"):
        table.add_column(col)
    for key, (old, new) in found["config"].items():
        table.add_row(f"config {key}", str(old), str(new), "")
    for key, (old, new) in found["data"].items():
        table.add_row(f"data {key} sha256", str(old)[:12], str(new)[:12], "")
    for key, n in found["numbers"].items():
        change = "-" if n["change"] is None else f"{n['change']:+.4f}"
        table.add_row(key, *(f"{x:.4f}" if x is not None else "-" for x in (n["a"], n["b"])), change)
    out.print(table)
    if not found["weights_changed"]:
        err.print("the two versions have the same weights")


@app.command("history")
def history(name: Annotated[str, typer.Argument(help="Model name")], db: Db = None) -> None:
    """Every add, promote and rollback of NAME, oldest first."""
    for event in _open(db, None).history(name):
        previous = f" (champion before: {event['previous_champion']})" if event["previous_champion"] else ""
        note = f" — {event['note']}" if event["note"] else ""
        when = event["created"].strftime("%Y-%m-%d %H:%M:%S")
        out.print(
            f"{when}  {event['action']:<8} {name}:{event['version']}{previous}{note}", highlight=False, markup=False
        )


@app.command("verify")
def verify(
    ref: Annotated[str, typer.Argument(help="NAME (its champion) or NAME:VERSION")],
    db: Db = None,
    store: Store = None,
) -> None:
    """Check a version's stored weights against their content hash and print their folder."""
    name, version = _name_version(ref)
    out.print(str(_open(db, store).weights(name, version)), markup=False)
