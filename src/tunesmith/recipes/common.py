"""Pieces every training recipe and task shares: dtypes, padding, tokenizer, drop reports, best weights, summary."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from tunesmith.data.load import summarize_rejected
from tunesmith.data.prepare import Prepared
from tunesmith.output import err
from tunesmith.train.run_folder import RunFolder


def report_drops(prepared: Prepared) -> None:
    """Say what was left out of training, so nothing is lost silently (details in data_report.json)."""
    report = prepared.report
    if prepared.splits.rejected:
        err.print(
            f"[yellow]skipped invalid rows[/] (data.skip_invalid): {summarize_rejected(prepared.splits.rejected)}",
            markup=True,
            highlight=False,
        )
    for split in ("train", "val"):
        part = report[split]
        if part["truncated"] or part["dropped_no_trainable_tokens"]:
            err.print(
                f"[yellow]{split}[/]: {part['truncated']} rows truncated to data.max_length, "
                f"{part['dropped_no_trainable_tokens']} dropped with no trainable token left "
                f"(lines {part['dropped_lines'][:10]})",
                highlight=False,
            )


def restore_best(model: nn.Module, run_dir: Path) -> None:
    """Load the best validation weights the loop saved back into the model (nothing when none were saved)."""
    best = RunFolder(run_dir).best_weights
    if best.is_file():
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in load_file(best).items():
                params[name].copy_(tensor)
