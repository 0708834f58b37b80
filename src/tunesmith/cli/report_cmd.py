"""`tunesmith report` and `tunesmith compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.output import err, out
from tunesmith.errors import UserError
from tunesmith.train.run_dir import resolve_run


def report(
    run: Annotated[str, typer.Argument(help="Run folder, or run name under ./runs")],
    output: Annotated[Path | None, typer.Option("--out", help="Write here instead of runs/<run>/report.html")] = None,
) -> None:
    """One self-contained HTML page: loss curves, metrics and baselines, forgetting, bias, data and config."""
    from tunesmith.evaluate.report.html import write_report

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
