"""`tunesmith feedback export`: what people said about served answers, as SFT, DPO or KTO training rows."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.output import err, out

app = typer.Typer(help="Turn feedback on served answers into training data.", no_args_is_help=True)


class ExportFormat(StrEnum):
    sft = "sft"
    dpo = "dpo"
    kto = "kto"


@app.command("export")
def export(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for <format>.jsonl and export_report.json")],
    db: Annotated[
        str, typer.Option(help="Feedback database: the SQLite file `tunesmith serve` wrote, or a URL")
    ] = "feedback.db",
    format: Annotated[ExportFormat, typer.Option(help="sft: corrections; dpo: pairs; kto: single judgements")] = (
        ExportFormat.sft
    ),
    eval_files: Annotated[
        list[Path] | None, typer.Option("--eval", help="Evaluation file checked for leakage (repeatable)")
    ] = None,
) -> None:
    """Write the rows, then check them (`data check`): duplicates, and leakage into the evaluation files."""
    from tunesmith.feedback.export import export_report

    report = export_report(db, format.value, out_dir, eval_files or [])
    path = Path(report["file"])
    err.print(
        f"{report['feedback_rows']} feedback row(s) → {report['rows']} {format.value} row(s) in {path}"
        + "".join(f" · skipped {count} ({why})" for why, count in report["skipped"].items())
    )
    for check in report["checks"]:
        counts = ", ".join(f"{code} {n}" for code, n in check["counts"].items()) or "no findings"
        err.print(f"data check against {check['against'] or 'itself'}: {counts}")
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    out.print(str(path))
