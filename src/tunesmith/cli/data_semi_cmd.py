"""`tunesmith data augment`, `tunesmith data pseudo-label` and `tunesmith selftrain`: thin calls into
`data.augment`, `data.pseudo_label` and `recipes.self_training`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tunesmith.cli.options import SetOption
from tunesmith.cli.output import err, out

DEFAULT_METHODS = "typos,word_dropout,word_swap,synonyms"


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in (values or "").split(",") if v.strip()]


def augment(
    file: Annotated[Path, typer.Argument(help="Training file (JSONL, JSON, CSV, TSV or Parquet); never the val file")],
    out_file: Annotated[Path, typer.Option("--out", help="Output JSON Lines: the originals plus their variants")],
    methods: Annotated[
        str, typer.Option(help="Comma-separated: typos, word_dropout, word_swap, synonyms, paraphrase")
    ] = DEFAULT_METHODS,
    per_row: Annotated[int, typer.Option(help="Variants per row and method")] = 1,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same variants")] = 0,
    model: Annotated[str, typer.Option(help="Paraphrase model: catalog name, Hub id, folder or run")] = "smollm2-135m",
    val: Annotated[
        Path | None, typer.Option(help="Validation file: stop if a variant's input equals a validation input")
    ] = None,
    originals: Annotated[bool, typer.Option("--originals/--no-originals", help="Write the source rows too")] = True,
    batch_size: Annotated[int, typer.Option(help="Paraphrase generation batch size")] = 16,
) -> None:
    """Add variants of each training row that change only its input (text, instruction, prompt, user turns)."""
    from tunesmith.augment import AugmentConfig, augment_file

    cfg = AugmentConfig(seed=seed, per_row=per_row, model=model, batch_size=batch_size)
    report = augment_file(file, out_file, _split(methods), cfg, val=val, originals=originals)
    table = Table(title=f"{file} ({report.format}, {report.rows_in} rows) -> {out_file}")
    for column in ("method", "written", "unchanged", "duplicates"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, written in report.written.items():
        table.add_row(name, str(written), str(report.unchanged[name]), str(report.duplicates[name]))
    out.print(table)
    err.print(
        f"[green]done[/]: {report.rows_out} rows written ({report.originals_written} originals) "
        f"in {report.seconds:.1f}s"
    )


def pseudo_label(
    model: Annotated[str, typer.Option(help="Tuned run folder (or run name under ./runs) that labels the rows")],
    unlabeled: Annotated[Path, typer.Option(help="Rows in the training format without the label/answer")],
    out_file: Annotated[Path, typer.Option("--out", help="Output JSON Lines of the kept, pseudo-labelled rows")],
    threshold: Annotated[float, typer.Option(help="Keep a row when its top label probability is at least this")] = 0.9,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated candidate labels; default: the run's training labels")
    ] = None,
    max_rows: Annotated[int | None, typer.Option(help="Keep at most this many rows (the most confident)")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows scored per forward pass")] = 16,
) -> None:
    """Label unlabeled rows with a tuned classifier by label likelihood; keep the confident ones."""
    from tunesmith.evaluate.pseudo_label import pseudo_label_file

    report = pseudo_label_file(model, unlabeled, threshold, out_file, _split(labels) or None, max_rows, batch_size)
    table = Table(title=f"{unlabeled}: {report.rows} rows, threshold {threshold}")
    for column in ("label", "kept", "dropped (below threshold)"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, kept in report.kept.items():
        table.add_row(label, str(kept), str(report.below_threshold[label]))
    out.print(table)
    cap = f", {report.over_cap} over --max-rows" if report.over_cap else ""
    err.print(f"[green]done[/]: {sum(report.kept.values())} rows -> {out_file}{cap} ({report.seconds:.1f}s)")


def self_train(
    config: Annotated[Path, typer.Argument(help="YAML config with a self_training section")],
    overrides: SetOption = None,
) -> None:
    """Train, pseudo-label self_training.unlabeled, retrain on both; prints accuracy per round."""
    from tunesmith.config import load_config
    from tunesmith.recipes.self_training import SUMMARY_FILE, run_self_training

    root = run_self_training(load_config(config, overrides), str(config))
    summary = json.loads((root / SUMMARY_FILE).read_text())
    table = Table(title=f"self-training · accuracy on {summary['eval_file']} ({summary['eval_rows']} rows)")
    for column in ("model", "train rows", "pseudo-labels", "accuracy"):
        table.add_column(column, justify="left" if column == "model" else "right")
    if "base_eval_accuracy" in summary:
        table.add_row("base (adapter off)", "-", "-", f"{summary['base_eval_accuracy']:.2%}")
    for entry in summary["rounds"]:
        pseudo = entry.get("pseudo_labels", {}).get("kept", 0)
        table.add_row(f"round {entry['round']}", str(entry["train_rows"]), str(pseudo), f"{entry['eval_accuracy']:.2%}")
    out.print(table)
    err.print(f"[green]done[/]: {root / SUMMARY_FILE}")
