"""`tunesmith tune CONFIG`, `tune show STUDY` and `tune best STUDY`: thin calls into `tunesmith.tune`."""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from tunesmith.cli.options import SetOption
from tunesmith.cli.output import err, out


class _ConfigFirst(TyperGroup):
    """`tunesmith tune CONFIG ...` runs a study; `tune show` and `tune best` are the other commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ConfigFirst,
    help="Hyperparameter search on Optuna: `tune CONFIG` runs (or continues) a study; `tune show STUDY`, "
    "`tune best STUDY` read it. docs/tuning.md",
    no_args_is_help=True,
)

StorageOption = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL of a server study database (default: the study's SQLite file)")
]


@app.command("run")
def run(
    config: Annotated[str, typer.Argument(help="YAML config with a tune: section (or space: auto)")],
    trials: Annotated[int | None, typer.Option(help="Finished trials the study ends at (tune.trials)")] = None,
    timeout: Annotated[str | None, typer.Option(help="Start no trial after this long, e.g. 30m (tune.timeout)")] = None,
    jobs: Annotated[int | None, typer.Option(help="Trials at once, each in its own process (tune.jobs)")] = None,
    storage: StorageOption = None,
    study: Annotated[str | None, typer.Option(help="Study name and folder under run.output_dir (tune.study)")] = None,
    overrides: SetOption = None,
    show_training: Annotated[
        bool, typer.Option("--show-training", help="Print each trial's training output (default: one line a trial)")
    ] = False,
) -> None:
    """Run a study, or continue it: finished trials stay, a killed trial resumes from its checkpoint."""
    from tunesmith.errors import TrainingInterrupted
    from tunesmith.tune.runner import plan_study, run_study

    flags = {"trials": trials, "timeout": timeout, "jobs": jobs, "storage": storage, "study": study}
    settings = [f"tune.{key}={value}" for key, value in flags.items() if value is not None]
    plan, cfg = plan_study(config, [*(overrides or []), *settings])
    try:
        run_study(plan, cfg, quiet=not show_training)
    except TrainingInterrupted as stop:
        if stop.at_once:
            saved = "stopped at once on a second signal; the step in progress was not saved"
        elif stop.checkpoint:
            saved = f"the trial in progress saved a checkpoint at step {stop.step}"
        else:
            saved = "between trials or before the trial in progress trained"
        err.print(
            f"[yellow]interrupted[/] ({saved}); the same command continues the study, and a cut-short trial from "
            "its newest checkpoint"
        )
        raise typer.Exit(stop.exit_code) from None
    _show_study(str(plan.folder), storage)
    err.print(f"`tunesmith tune best {plan.folder}` writes best.yaml")


@app.command("show")
def show(
    study: Annotated[str, typer.Argument(help="Study folder, or study name under ./runs")],
    storage: StorageOption = None,
) -> None:
    """The trials as a table, and runs/<study>/tune.html (history, importance, parallel coordinates, Pareto)."""
    _show_study(study, storage)


def _show_study(study: str, storage: str | None) -> None:
    """The trials table on stdout, and tune.html written beside the study."""
    from tunesmith.tune.page import write_page
    from tunesmith.tune.results import find_study, trials_table

    opened = find_study(study, storage)
    out.print(trials_table(opened))
    err.print(f"wrote {write_page(opened)}")


@app.command("best")
def best(
    study: Annotated[str, typer.Argument(help="Study folder, or study name under ./runs")],
    storage: StorageOption = None,
    test: Annotated[
        str | None, typer.Option(help="Evaluate the best trial once on this held-out file (default: tune.test)")
    ] = None,
) -> None:
    """Write best.yaml (the best trial's config, a normal config); with --test, score the best trial on it once."""
    from tunesmith.tune.results import evaluate_on_test, find_study, objective_values, write_best
    from tunesmith.tune.runner import best_trial

    opened = find_study(study, storage)
    trial = best_trial(opened.study)
    out.print(f"best trial {trial.number}: {objective_values(trial)}  {trial.params}", highlight=False)
    err.print(f"wrote {write_best(opened, trial)} (train it with `tunesmith train`)")
    test_file = test or opened.cfg.tune.test
    if test_file is not None:
        from tunesmith.evaluate.eval_table import report_table

        report, path = evaluate_on_test(opened, trial, test_file)
        out.print(report_table(report))
        err.print(f"test scores saved to {path}")
