"""`tunesmith demo`."""

from __future__ import annotations

from typing import Annotated

import typer

from tunesmith.cli.output import out


def demo(
    output_dir: Annotated[str, typer.Option(help="Where the run folder goes")] = "runs",
    train_rows: Annotated[int, typer.Option(min=8, help="Generated training rows")] = 320,
    test_rows: Annotated[int, typer.Option(min=1, help="Generated held-out rows")] = 100,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config key")] = None,
) -> None:
    """Fine-tune smollm2-135m on generated order extraction and print base vs tuned exact match."""
    from tunesmith.recipes.demo import demo_table, run_demo

    report = run_demo(output_dir, train_rows, test_rows, overrides)
    out.print(demo_table(report))
    for sample in report["tuned"].get("predictions", [])[:2]:
        out.print(f"  target: {sample['target']}\n  tuned:  {sample['answer']}")
    out.print(f"run folder: {report['run']}")
