"""`tunesmith export`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.output import out


class ExportFormat(StrEnum):
    merged = "merged"


def export(
    source: Annotated[str, typer.Argument(help="Run folder (or name under ./runs), or registry NAME[:VERSION]")],
    to: Annotated[Path, typer.Option("--out", help="New folder for the exported model")],
    format: Annotated[
        ExportFormat, typer.Option(help="merged: the adapter folded into the base, a plain safetensors model folder")
    ] = ExportFormat.merged,
    db: Annotated[str | None, typer.Option("--db", help="Registry database, for a NAME[:VERSION] source")] = None,
) -> None:
    """Write a tuned model as a plain Hugging Face model folder that loads without PEFT."""
    from tunesmith.recipes.export import export_merged

    folder = export_merged(source, to, db)
    out.print(f"wrote {folder} ({format.value}: load it with AutoModelForCausalLM.from_pretrained)", highlight=False)
