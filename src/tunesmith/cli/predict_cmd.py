"""`tunesmith predict`: apply a trained run to a data file and write one JSON line per row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.output import err, out
from tunesmith.train.run_dir import resolve_run, stage_run
from tunesmith.train.run_folder import RunFolder


def predict(
    run: Annotated[str, typer.Argument(help="Run folder, or run name under ./runs")],
    data: Annotated[
        Path,
        typer.Option(
            help="Rows to predict: JSONL/JSON/CSV/Parquet ({text} for classify, "
            "{tokens} for ner, a .txt or {text} for pretrain)"
        ),
    ],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Output JSONL; default: <run>/predictions.jsonl")
    ] = None,
    adapter: Annotated[
        str | None, typer.Option(help="RUN is a sequence folder: use the stage (per-task adapter) of this task")
    ] = None,
) -> None:
    """Predict with a trained run: labels with probabilities (classify), tags per token (ner), perplexity
    (pretrain) or answers (sft). Rows that carry gold labels are also scored."""
    from tunesmith.tasks import task_of_run

    run_dir = stage_run(run, adapter) if adapter else resolve_run(run)
    task = task_of_run(run_dir, "predict")
    rows, metrics = task.predict(run_dir, str(data))
    target = out_path or RunFolder(run_dir).predictions
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    err.print(f"[green]done[/]: {len(rows)} predictions ({task.name}) in {target}")
    if metrics:
        out.print(" · ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
