"""`tunesmith eval`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tunesmith.cli.output import out
from tunesmith.train.run_dir import resolve_run, write_json
from tunesmith.train.run_folder import RunFolder


def eval_run(
    run: Annotated[str, typer.Argument(help="Run folder, or run name under ./runs")],
    data: Annotated[
        str | None, typer.Option(help="Evaluate on this file instead of the run's validation split")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    cache: Annotated[
        bool, typer.Option(help="Reuse the base model's results on the same rows and settings from an earlier eval")
    ] = True,
) -> None:
    """Tuned vs base zero-shot and k-shot (eval.shots): task metrics, loss, perplexity. Saves eval.json in the run."""
    from tunesmith.evaluate.runner import evaluate_run
    from tunesmith.tasks import task_of_run

    run_dir = resolve_run(run)
    task_of_run(run_dir, "eval")
    report = evaluate_run(run_dir, data, use_cache=cache)
    write_json(RunFolder(run_dir).eval, report)
    if as_json:
        out.print(json.dumps(report, indent=2), markup=False)  # answers may contain [brackets]
    else:
        print_report(report)
        for sample in report["tuned"].get("predictions", [])[:3]:
            out.print(f"  line {sample['line']}: target={sample['target']!r} tuned={sample['answer']!r}", markup=False)


def print_report(report: dict) -> None:
    """The systems table, then what it rests on: per-class results, confusion, calibration, significance."""
    from tunesmith.evaluate import eval_table

    out.print(eval_table.report_table(report))
    for extra in (eval_table.per_class_table(report), eval_table.confusion_table(report)):
        if extra is not None:
            out.print(extra)
    if report.get("collapse_warning"):
        out.print(f"warning: {report['collapse_warning']}", style="bold yellow", highlight=False, markup=False)
    for line in (
        eval_table.significance_note(report),
        eval_table.calibration_note(report),
        eval_table.scoring_note(report),
        eval_table.throughput_note(report),
    ):
        if line:
            out.print(line, highlight=False)
