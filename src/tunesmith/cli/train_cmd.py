"""`tunesmith train`, `resume` and `validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.output import err, out
from tunesmith.config import dump_config, load_config
from tunesmith.train.run_dir import SUMMARY_FILE, resolve_run

SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set train.lr=1e-4")]


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
    run_dir = run_train(cfg, str(config), resume=resume)
    _print_summary(run_dir)


def resume_run(run: Annotated[str, typer.Argument(help="Run folder, or run name under ./runs")]) -> None:
    """Continue an interrupted run from its newest complete checkpoint."""
    from tunesmith.recipes.train import run_train

    run_dir = resolve_run(run)
    cfg = load_config(run_dir / "config.yaml", [f"run.name={run_dir.name}", f"run.output_dir={run_dir.parent}"])
    _print_summary(run_train(cfg, str(run_dir / "config.yaml"), resume=True))


def validate(config: Annotated[Path, typer.Argument(help="YAML config")], overrides: SetOption = None) -> None:
    """Check a config without loading any weights; prints the resolved config."""
    cfg = load_config(config, overrides)
    out.print(dump_config(cfg), end="")
    err.print(f"[green]ok[/]: {config} is valid")


def _print_summary(run_dir: Path) -> None:
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    err.print(f"[green]done[/]: {run_dir}")
    base, tuned = summary["base_val_loss"], summary["tuned_val_loss"]
    out.print(
        f"val loss {base:.4f} (base) -> {tuned:.4f} (tuned) · {summary['steps']} steps · "
        f"{summary['train_tokens_per_s']:.0f} tok/s · {summary['trainable_params']:,} trainable params · "
        f"{summary['wall_seconds']:.0f}s"
    )
    metrics = {k: v for k, v in summary.items() if k.startswith("val_") and isinstance(v, float)}
    if metrics:  # task metrics of the exported weights, e.g. val_accuracy
        out.print(" · ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    out.print(f"output: {summary['export']}")
