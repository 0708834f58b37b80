"""`tunesmith train`, `resume` and `validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tunesmith.cli.options import SetOption
from tunesmith.cli.output import err, out
from tunesmith.config import dump_config, load_config
from tunesmith.train.run_dir import resolve_run
from tunesmith.train.run_folder import RunFolder

if TYPE_CHECKING:
    from tunesmith.recipes.summary import TrainedRun


def train(
    config: Annotated[Path, typer.Argument(help="YAML config, e.g. configs/sft-lora.yaml")],
    overrides: SetOption = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Drop invalid rows (each one reported) instead of stopping; same as --set data.skip_invalid=true",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run (run.name, or the newest run of this config) from its newest complete checkpoint."
        ),
    ] = False,
) -> None:
    """Fine-tune a model as the config says; writes runs/<name>/."""
    from tunesmith.recipes.train import run_train

    cfg = load_config(config, [*(overrides or []), *(["data.skip_invalid=true"] if skip_invalid else [])])
    _print_summary(run_train(cfg, str(config), resume=resume))


def resume_run(run: Annotated[str, typer.Argument(help="Run folder, or run name under ./runs")]) -> None:
    """Continue an interrupted run from its newest complete checkpoint."""
    from tunesmith.recipes.train import run_train

    run_dir = resolve_run(run)
    config = RunFolder(run_dir).config
    cfg = load_config(config, [f"run.name={run_dir.name}", f"run.output_dir={run_dir.parent}"])
    _print_summary(run_train(cfg, str(config), resume=True))


def validate(config: Annotated[Path, typer.Argument(help="YAML config")], overrides: SetOption = None) -> None:
    """Check a config without loading any weights; prints the resolved config."""
    cfg = load_config(config, overrides)
    out.print(dump_config(cfg), end="")
    err.print(f"[green]ok[/]: {config} is valid")


def _print_summary(run: TrainedRun) -> None:
    summary = run.summary
    err.print(f"[green]done[/]: {run.path}")
    out.print(
        f"val loss {summary.base_val_loss:.4f} (base) -> {summary.tuned_val_loss:.4f} (tuned) · {summary.steps} "
        f"steps · {summary.train_tokens_per_s:.0f} tok/s · {summary.trainable_params:,} trainable params · "
        f"{summary.wall_seconds:.0f}s"
    )
    metrics = {k: v for k, v in summary.val_metrics.items() if isinstance(v, float)}
    if metrics:  # task metrics of the exported weights, e.g. val_accuracy
        out.print(" · ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    out.print(f"output: {summary.export}")
