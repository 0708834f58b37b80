"""`tunesmith sequence`: several tasks one after another (or jointly), every task scored after every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.options import SetOption
from tunesmith.cli.output import err, out


def sequence(
    config: Annotated[Path, typer.Argument(help="Sequence YAML, e.g. configs/sequence-three-tasks.yaml")],
    overrides: SetOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the sequence (run.name, or the newest of this config) where it stopped.")
    ] = False,
) -> None:
    """Train tasks in sequence and fill the retention matrix: every task's test score after every stage, with
    backward/forward transfer and forgetting. Writes runs/<name>/ (sequence.json, plots, one run per stage)."""
    from tunesmith.config.sequence import load_sequence
    from tunesmith.evaluate.report.sequence_plots import matrix_rows
    from tunesmith.evaluate.retention import retention_table
    from tunesmith.metrics import METRICS
    from tunesmith.recipes.sequence import read_state, run_sequence

    seq = load_sequence(config, overrides)
    folder = run_sequence(seq, str(config), resume=resume)
    state = read_state(folder)
    percent = [METRICS[s["metric"]].percent for s in state["base"]]
    out.print(retention_table(state["order"]["tasks"], matrix_rows(state), percent))
    summary = state["summary"]
    signed = {"bwt", "fwt"}
    numbers = [
        f"{k} {v:+.4f}" if k in signed else f"{k} {v:.4f}"
        for k, v in summary.items()
        if k != "train_seconds" and isinstance(v, float)
    ]
    out.print(" · ".join([*numbers, f"trained {summary['train_seconds']:.0f} s"]))
    err.print(f"[green]done[/]: {folder} (sequence.json, retention.png; `tunesmith report {folder}` for the page)")
