"""The run's metrics file (`metrics.jsonl`) and its loss plot (`loss.png`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSON lines; non-finite numbers are refused so a NaN is never logged as a value."""

    def __init__(self, path: Path, truncate_after_step: int | None = None):
        self.path = path
        if truncate_after_step is not None and path.exists():
            # On resume, drop rows written after the checkpoint we continue from so the log has no duplicates.
            rows = [r for r in read_metrics(path) if r.get("step", 0) <= truncate_after_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def write(self, **row: Any) -> None:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"refusing to log non-finite {key}")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All rows of a metrics file."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(metrics_path: Path, out: Path, title: str = "") -> Path:
    """Train and validation loss against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#4c72b0", alpha=0.8)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="#dd8452")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per trained token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
