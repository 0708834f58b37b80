"""A task sequence in pictures: the retention matrix as a heat map and each task's score across stages, written
into the sequence folder (retention.png, retention_curves.png) and shown by `tunesmith report SEQUENCE`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tunesmith.metrics import METRICS  # noqa: E402

HEATMAP, CURVES = "retention.png", "retention_curves.png"


def matrix_rows(state: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """(label, scores) for the base, every stage, and the merged adapters when there are some."""
    rows = [("base", [s["score"] for s in state["base"]])]
    rows += [(f"after {stage['name']}", [s["score"] for s in stage["scores"]]) for stage in state.get("stages", [])]
    if "merged" in state:
        rows.append((f"merged ({state['merged']['combination']})", [s["score"] for s in state["merged"]["scores"]]))
    return rows


def _label(value: float, metric: str) -> str:
    return f"{100 * value:.1f}" if METRICS[metric].percent else f"{value:.2f}"


def heatmap(state: dict[str, Any], out: Path) -> Path:
    tasks, metrics = state["order"]["tasks"], [s["metric"] for s in state["base"]]
    rows = matrix_rows(state)
    values = [scores for _, scores in rows]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(tasks), 1.2 + 0.55 * len(rows)))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), [f"{t}\n({m})" for t, m in zip(tasks, metrics, strict=True)])
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    for i, scores in enumerate(values):
        for j, value in enumerate(scores):
            ink = "black" if image.norm(value) > 0.6 else "white"  # readable on viridis' light and dark ends
            ax.text(j, i, _label(value, metrics[j]), ha="center", va="center", color=ink, fontsize=9)
    ax.set_title("score on each task (columns) after each stage (rows)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def curves(state: dict[str, Any], out: Path) -> Path:
    tasks = state["order"]["tasks"]
    rows = [r for r in matrix_rows(state) if not r[0].startswith("merged")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for j, task in enumerate(tasks):
        ax.plot(range(len(rows)), [scores[j] for _, scores in rows], marker="o", label=task)
    ax.set_xticks(range(len(rows)), ["base", *[label.removeprefix("after ") for label, _ in rows[1:]]])
    ax.set_xlabel("stage")
    ax.set_ylabel("score")
    ax.set_title("each task's score across the sequence")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_plots(folder: Path, state: dict[str, Any]) -> list[Path]:
    return [heatmap(state, folder / HEATMAP), curves(state, folder / CURVES)]
