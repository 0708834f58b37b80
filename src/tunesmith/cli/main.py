"""The tunesmith command line: a table of commands, each a thin call into one recipe."""

from __future__ import annotations

import os
import sys
import warnings

import typer
from rich.markup import escape

from tunesmith.allocator import restart_with_jemalloc
from tunesmith.cli import (
    audit_cmd,
    chat_cmd,
    data_cmd,
    data_semi_cmd,
    demo_cmd,
    doctor_cmd,
    eval_cmd,
    export_cmd,
    feedback_cmd,
    models_cmd,
    predict_cmd,
    registry_cmd,
    report_cmd,
    sequence_cmd,
    serve_cmd,
    train_cmd,
    tune_cmd,
)
from tunesmith.cli.output import err
from tunesmith.errors import TrainingInterrupted, UserError
from tunesmith.logs import capture_library_output, verbose_requested

app = typer.Typer(
    name="tunesmith",
    help=(
        "Fine-tune pre-trained language models on your own data. Library log lines and warnings go to "
        "runs/<run>/log.txt; add --verbose anywhere to see them on the terminal too."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_cmd.app, name="models")
data_cmd.app.command("augment")(data_semi_cmd.augment)
data_cmd.app.command("pseudo-label")(data_semi_cmd.pseudo_label)
app.add_typer(data_cmd.app, name="data")
app.add_typer(tune_cmd.app, name="tune")
app.add_typer(feedback_cmd.app, name="feedback")
app.add_typer(registry_cmd.app, name="registry")

COMMANDS = {
    "train": train_cmd.train,
    "resume": train_cmd.resume_run,
    "validate": train_cmd.validate,
    "eval": eval_cmd.eval_run,
    "audit": audit_cmd.audit,
    "report": report_cmd.report,
    "compare": report_cmd.compare,
    "predict": predict_cmd.predict,
    "selftrain": data_semi_cmd.self_train,
    "sequence": sequence_cmd.sequence,
    "chat": chat_cmd.chat,
    "serve": serve_cmd.serve,
    "demo": demo_cmd.demo,
    "export": export_cmd.export,
    "doctor": doctor_cmd.doctor,
}
for name, function in COMMANDS.items():
    app.command(name)(function)


def _quiet_libraries() -> None:
    """Our own progress bars are enough: library bars are off, and library log lines and warnings go to the run's
    log.txt (`tunesmith.logs`), on the terminal only with --verbose."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
    if verbose_requested(sys.argv):
        os.environ["TUNESMITH_VERBOSE"] = "1"  # kept by the jemalloc restart, which sees argv without the flag
    capture_library_output(verbose=os.environ.get("TUNESMITH_VERBOSE") == "1")


def main() -> None:
    """Console entry point: user mistakes are one line on stderr and a non-zero exit, never a traceback."""
    _quiet_libraries()
    restart_with_jemalloc(sys.argv)
    try:
        app()
    except UserError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except TrainingInterrupted as exc:
        if exc.at_once:
            where = f"from {escape(exc.checkpoint)}" if exc.checkpoint else "from the start (no checkpoint yet)"
            err.print(
                "[yellow]stopped at once[/] on a second signal; the step in progress was not saved. "
                f"--resume (or `tunesmith resume RUN`) continues {where}."
            )
        elif exc.checkpoint is None:
            err.print(
                "[yellow]interrupted[/] before training began; nothing was trained. Start it again "
                "(a run folder that was created continues with --resume)."
            )
        else:
            err.print(
                f"[yellow]interrupted[/] at step {exc.step}; checkpoint saved to {escape(str(exc.checkpoint))}. "
                "Continue with --resume (or `tunesmith resume RUN`)."
            )
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]aborted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
