"""`tunesmith data check | clean | split`: thin calls into `data.quality`, `data.clean` and `data.split`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tunesmith.cli.options import SetOption
from tunesmith.cli.output import err, out
from tunesmith.config import Config, load_config

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

app = typer.Typer(
    help="Check, clean, split, augment and pseudo-label data files before training.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML config: data.* settings and model.name for the tokenizer")
]
NoTokenizer = Annotated[
    bool, typer.Option("--no-tokenizer", help="Skip the token-length checks (no tokenizer is loaded; faster)")
]


def _tokenizer(cfg: Config, skip: bool) -> PreTrainedTokenizerBase | None:
    """The model's tokenizer with its chat template, unless skipped."""
    if skip:
        return None
    from tunesmith.data.tokenize import load_chat_tokenizer

    return load_chat_tokenizer(cfg)


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Training file: JSONL, JSON, CSV, TSV or Parquet")],
    val: Annotated[Path | None, typer.Option(help="Validation file, checked and compared with train")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file, checked and compared with train and val")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    no_tokenizer: NoTokenizer = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON report here (and a length histogram PNG beside it)")
    ] = None,
) -> None:
    """Report schema errors, lengths, duplicates, leakage, conflicting labels and label balance.

    Exit status: 0 when no finding is an error, 1 when one is (the kinds in data.check.errors), 2 on a usage
    mistake such as a missing file.
    """
    from tunesmith.data.quality.check import check_files
    from tunesmith.data.quality.render import plot_lengths, print_report

    cfg = load_config(config, overrides)
    paths = {"train": str(file), "val": str(val) if val else None, "test": str(test) if test else None}
    report = check_files(paths, cfg, _tokenizer(cfg, no_tokenizer))
    print_report(report, out)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
        plot = plot_lengths(report.lengths, json_out.with_suffix(".lengths.png"))
        err.print(f"report: {json_out} · length histogram: {plot}")
    if report.errors:
        raise typer.Exit(1)


@app.command()
def clean(
    file: Annotated[Path, typer.Argument(help="Training file to clean")],
    out_file: Annotated[Path, typer.Option("--out", help="Cleaned rows (JSON Lines, original records)")],
    rejects: Annotated[Path, typer.Option("--rejects", help="Dropped rows with code, message and line (JSONL)")],
    val: Annotated[Path | None, typer.Option(help="Validation file: drop training rows that copy its rows")] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    no_tokenizer: NoTokenizer = False,
) -> None:
    """Drop invalid rows, duplicates, near duplicates, rows leaking into --val and rows with no trainable token."""
    from tunesmith.data.clean import clean_file

    cfg = load_config(config, overrides)
    result = clean_file(file, out_file, rejects, cfg, val, _tokenizer(cfg, no_tokenizer))
    dropped = sum(result.dropped.values())
    codes = ", ".join(f"{code} {n:,}" for code, n in result.dropped.most_common()) or "none"
    out.print(f"{result.rows:,} rows = {result.kept:,} kept + {dropped:,} dropped ({codes})")
    err.print(f"[green]ok[/]: kept rows in {out_file}, dropped rows with reasons in {rejects}")


@app.command()
def split(
    file: Annotated[Path, typer.Argument(help="Data file to split")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for train.jsonl, val.jsonl and test.jsonl")],
    val: Annotated[float, typer.Option(help="Share of rows for validation")] = 0.1,
    test: Annotated[float, typer.Option(help="Share of rows for test")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same split")] = 0,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Split into train/val/test: seeded, stratified by label, and no duplicate group across two splits."""
    from tunesmith.data.split import split_file

    cfg = load_config(config, overrides)
    result = split_file(file, out_dir, val, test, seed, cfg.data)
    table = Table(title=f"{file} → {out_dir} (format {result.format}, seed {seed})")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("labels")
    for name, rows in result.rows.items():
        counts = result.labels.get(name)
        shown = ", ".join(f"{label}: {n:,}" for label, n in sorted(counts.items())) if counts else "-"
        table.add_row(name, f"{rows:,}", shown)
    out.print(table)
    if result.invalid:
        err.print(f"[yellow]warning:[/] {result.invalid:,} invalid rows left out; see `tunesmith data check {file}`")
