"""`tunesmith audit`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tunesmith.cli.output import err, out
from tunesmith.train.run_dir import resolve_run, write_json
from tunesmith.train.run_folder import RunFolder


def audit(
    run: Annotated[str, typer.Argument(help="Run folder, or run name under ./runs")],
    only: Annotated[str, typer.Option(help="all, forgetting or bias")] = "all",
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override an audit setting: --set audit.max_pairs=200")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Forgetting (reference perplexity, KL, earlier task) and bias (CrowS-Pairs, WinoBias, probes), base vs tuned.
    Saves audit.json in the run."""
    from tunesmith.errors import UserError
    from tunesmith.evaluate.audit import audit_table, run_audit
    from tunesmith.tasks import task_of_run

    if only not in ("all", "forgetting", "bias"):
        raise UserError(f"--only must be all, forgetting or bias, not {only!r}")
    run_dir = resolve_run(run)
    task_of_run(run_dir, "audit")
    report = run_audit(run_dir, overrides, only, log=lambda msg: err.print(f"[dim]{msg}[/]"))  # type: ignore[arg-type]
    path = RunFolder(run_dir).audit
    if only != "all" and path.is_file():  # keep the other part from an earlier audit
        report = {**json.loads(path.read_text()), **report}
    write_json(path, report)
    if as_json:
        out.print(json.dumps(report, indent=2))
        return
    out.print(audit_table(report))
    for flag in report.get("bias", {}).get("amplification", []):
        err.print(f"[yellow]bias amplified[/]: {flag}")
    err.print(f"saved {path}")
