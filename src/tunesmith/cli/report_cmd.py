"""`tunesmith report` and `tunesmith compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.output import err, out
from tunesmith.errors import UserError
from tunesmith.train.run_dir import resolve_run


def report(
    run: Annotated[str, typer.Argument(help="Run folder, run name under ./runs, or a sequence folder")],
    output: Annotated[Path | None, typer.Option("--out", help="Write here instead of runs/<run>/report.html")] = None,
) -> None:
    """One self-contained HTML page: loss curves, metrics and baselines, forgetting, bias, data and config (for a
    sequence folder: the retention matrix, its heat map and the per-task curves)."""
    from tunesmith.evaluate.report.html import write_report
    from tunesmith.evaluate.report.sequence_page import is_sequence, write_sequence_page

    if is_sequence(Path(run)):
        out.print(str(write_sequence_page(Path(run), output)))
        return
    path = write_report(resolve_run(run), output)
    out.print(str(path))


def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run folders or run names")],
    output: Annotated[Path, typer.Option("--out", help="HTML file with the table and a plot")] = Path("compare.html"),
) -> None:
    """Headline numbers of several runs side by side: a table here, and an HTML page with the table and a plot."""
    from tunesmith.evaluate.report.compare import compare_html, compare_rows, compare_table

    if len(runs) < 2:
        raise UserError("compare needs at least two runs")
    columns, rows = compare_rows([resolve_run(r) for r in runs])
    out.print(compare_table(columns, rows))
    output.write_text(compare_html(columns, rows), encoding="utf-8")
    err.print(f"saved {output}")
