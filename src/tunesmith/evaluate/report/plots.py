"""matplotlib figures rendered to base64 PNG, so a report is one file with no external resources."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

BASE, TUNED = "#8c8c8c", "#1f77b4"
PALETTE = ["#8c8c8c", "#bdbdbd", "#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def to_png(fig: Figure) -> str:
    """The figure as a base64 PNG data URI; the figure is closed."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def loss_curves(rows: Sequence[dict[str, Any]]) -> str | None:
    """Train loss per step and validation loss at each evaluation, from metrics.jsonl rows."""
    train = [(r["step"], r["train_loss"]) for r in rows if _finite(r.get("train_loss"))]
    val = [(r["step"], r["val_loss"]) for r in rows if _finite(r.get("val_loss"))]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    if train:
        ax.plot(*zip(*train, strict=True), color=TUNED, alpha=0.45, lw=1, label="train loss (per step)")
        if len(train) >= 10:
            window = max(len(train) // 10, 3)
            smooth = [sum(v for _, v in train[i - window + 1 : i + 1]) / window for i in range(window - 1, len(train))]
            ax.plot(
                [s for s, _ in train[window - 1 :]], smooth, color=TUNED, lw=2, label=f"train loss ({window}-step mean)"
            )
    if val:
        ax.plot(*zip(*val, strict=True), color="#d62728", marker="o", lw=2, label="validation loss")
    replay = [(r["step"], r["replay_loss"]) for r in rows if _finite(r.get("replay_loss"))]
    if replay:
        ax.plot(*zip(*replay, strict=True), color="#2ca02c", ls="--", lw=1, label="replay loss (per step)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (per trained token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    penalties = sorted({k for r in rows for k in r if k.startswith("penalty_")})
    if penalties:  # forgetting mitigation terms: their own scale, on the right axis
        right = ax.twinx()
        for name, color in zip(penalties, PALETTE[4:], strict=False):
            points = [(r["step"], r[name]) for r in rows if _finite(r.get(name))]
            right.plot(*zip(*points, strict=True), color=color, lw=1, ls=":", label=name.removeprefix("penalty_"))
        right.set_ylabel("penalty added to the loss")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, frameon=False)
    return to_png(fig)


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    errors: dict[str, Sequence[tuple[float, float]]] | None = None,
    reference: float | None = None,
    colors: Sequence[str] | None = None,
) -> str:
    """Vertical bars: one group per x label, one bar per series; optional (low, high) error bars and a h-line."""
    n = len(series)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(min(9.0, max(5.0, 0.7 * len(groups) * max(n, 2))), 3.8))  # readable at 900 px
    for k, (name, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(groups))]
        color = (colors or PALETTE)[k % len(colors or PALETTE)]
        yerr = None
        if errors and name in errors:
            yerr = [
                [max(v - lo, 0) for v, (lo, _) in zip(values, errors[name], strict=True)],
                [max(hi - v, 0) for v, (_, hi) in zip(values, errors[name], strict=True)],
            ]
        bars = ax.bar(xs, values, width, label=name, color=color, yerr=yerr, capsize=3, ecolor="#333333")
        if len(groups) * n <= 12 and yerr is None:  # few bars: print their values
            ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
    if reference is not None:
        ax.axhline(reference, color="#333333", lw=1, ls="--")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20 if max(map(len, groups), default=0) > 10 else 0, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, ncols=min(n, 4), loc="lower center", bbox_to_anchor=(0.5, 1.0))  # above, not on bars
    return to_png(fig)


def small_multiples(
    runs: Sequence[str],
    panels: dict[str, Sequence[float]],
    errors: dict[str, Sequence[tuple[float, float] | None]] | None = None,
) -> str | None:
    """One small bar chart per measure, one bar per run (measures have different scales); `errors` gives a
    (low, high) interval per run where there is one, drawn as an error bar."""
    panels = {k: v for k, v in panels.items() if any(_finite(x) for x in v)}
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, (title, values) in zip(axes.flat, panels.items(), strict=False):
        heights = [v if _finite(v) else 0 for v in values]
        spans = (errors or {}).get(title) or [None] * len(runs)
        yerr = [
            [max(h - s[0], 0) if s else 0 for h, s in zip(heights, spans, strict=True)],
            [max(s[1] - h, 0) if s else 0 for h, s in zip(heights, spans, strict=True)],
        ]
        ax.bar(range(len(runs)), heights, color=PALETTE[2:][: len(runs)] or TUNED, yerr=yerr, capsize=3)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels(runs, rotation=25, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    return to_png(fig)


def confusion_heatmap(
    gold: Sequence[str], predicted: Sequence[str], matrix: Sequence[Sequence[int]], title: str
) -> str:
    """Counts of gold (rows) × predicted (columns), each row shaded by its share so rare labels stay visible."""
    fig, ax = plt.subplots(figsize=(max(3.6, 0.9 * len(predicted) + 1.6), max(2.8, 0.6 * len(gold) + 1.2)))
    shares = [[c / max(sum(row), 1) for c in row] for row in matrix]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if shares[i][j] > 0.6 else "black")
    ax.set_xticks(range(len(predicted)))
    ax.set_xticklabels(predicted, rotation=20, ha="right")
    ax.set_yticks(range(len(gold)))
    ax.set_yticklabels(gold)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=10)
    return to_png(fig)


def reliability(series: dict[str, Sequence[dict[str, Any]]]) -> str | None:
    """Reliability diagram: accuracy against mean confidence per bin, one line per system; the diagonal is a
    perfectly calibrated model, and marker size grows with the bin's rows."""
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#333333", lw=1, ls="--", label="calibrated")
    for (name, bins), color in zip(series.items(), [BASE, TUNED, *PALETTE[2:]], strict=False):
        points = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b.get("count")]
        if not points:
            continue
        total = sum(c for *_, c in points)
        xs, ys, counts = zip(*points, strict=True)
        ax.plot(xs, ys, color=color, lw=1.5, label=name)
        ax.scatter(xs, ys, s=[20 + 300 * c / total for c in counts], color=color, alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability (confidence)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="upper left")
    return to_png(fig)
