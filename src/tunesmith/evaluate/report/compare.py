"""`tunesmith compare`: headline numbers of several runs side by side, as a table and a small-multiples plot."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from tunesmith.evaluate.report import plots
from tunesmith.evaluate.report.markup import esc, image, note, num, page, section, table
from tunesmith.evaluate.report.run_files import RunFiles, read_run
from tunesmith.evaluate.report.sections import eval_systems

NAN = float("nan")


def _get(data: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def headline(run: RunFiles) -> dict[str, Any]:
    """One run's comparable numbers; missing parts are None."""
    row: dict[str, Any] = {
        "run": run.name,
        "model": _get(run.summary, "model"),
        "method": _get(run.summary, "method"),
        "steps": _get(run.summary, "steps"),
        "val loss (base)": _get(run.summary, "base_val_loss"),
        "val loss (tuned)": _get(run.summary, "tuned_val_loss"),
        "train tok/s": _get(run.summary, "train_tokens_per_s"),
    }
    if run.eval:
        systems = dict(eval_systems(run.eval))
        tuned = systems.get("tuned", {})
        intervals = _get(run.eval, "tuned", run.eval.get("scoring", ""), "intervals") or {}
        row["_intervals"] = {}
        for metric, value in tuned.items():
            if metric not in {"loss", "perplexity", "tokens"} and isinstance(value, int | float):
                row[f"eval {metric} (tuned)"] = value
                if metric in intervals:
                    row["_intervals"][f"eval {metric} (tuned)"] = tuple(intervals[metric])
        if "collapse_warning" in run.eval:  # older reports did not check
            row["collapse warning"] = bool(run.eval["collapse_warning"])
    forgetting = _get(run.audit, "forgetting")
    row["reference ppl change"] = _get(forgetting, "perplexity", "change")
    row["KL(base‖tuned)"] = _get(forgetting, "kl_base_tuned")
    row["earlier-task acc change"] = _get(forgetting, "earlier_task", "accuracy", "change")
    bias = _get(run.audit, "bias")
    row["CrowS stereotype pref (tuned)"] = _get(bias, "crows_pairs", "overall", "tuned", "mean")
    row["CrowS change"] = _get(bias, "crows_pairs", "overall", "difference", "mean")
    row["WinoBias pro pref (tuned)"] = _get(bias, "winobias", "pro_preferred", "tuned", "mean")
    row["bias amplified"] = None if bias is None else bool(bias.get("amplification"))
    return row


def compare_rows(run_dirs: Sequence[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names (those at least one run has) and one headline row per run."""
    rows = [headline(read_run(d)) for d in run_dirs]
    columns = list(dict.fromkeys(k for r in rows for k, v in r.items() if v is not None and not k.startswith("_")))
    return columns, rows


def _cell(value: Any, interval: tuple[float, float] | None = None) -> str:
    if value is None:
        return "–"
    return num(value) + (f" [{num(interval[0])}, {num(interval[1])}]" if interval else "")


def compare_table(columns: list[str], rows: list[dict[str, Any]]) -> Table:
    """Runs as columns, measures as rows: fits a terminal better than the other way round."""
    out = Table(title="tunesmith compare")
    out.add_column("measure")
    for row in rows:
        out.add_column(str(row["run"]), justify="right")
    for column in columns[1:]:
        out.add_row(column, *(_cell(r.get(column), r.get("_intervals", {}).get(column)) for r in rows))
    return out


def compare_html(columns: list[str], rows: list[dict[str, Any]]) -> str:
    body_rows = [[esc(c), *(_cell(r.get(c), r.get("_intervals", {}).get(c)) for r in rows)] for c in columns[1:]]
    text_rows = {"model", "method"}
    numeric = [c for c in columns[1:] if c not in text_rows and c not in {"bias amplified", "collapse warning"}]
    panels = {
        c: [float(r[c]) if isinstance(r.get(c), int | float) else NAN for r in rows] for c in numeric if c != "steps"
    }
    errors = {c: [r.get("_intervals", {}).get(c) for r in rows] for c in panels}
    plot = plots.small_multiples([str(r["run"]) for r in rows], panels, errors)
    body = section(
        "table",
        "Runs side by side",
        table(["measure", *(str(r["run"]) for r in rows)], body_rows)
        + note("– : not available for that run (not evaluated or audited yet). [low, high]: 95% bootstrap interval."),
    )
    body += section("plot", "Plot", image(plot, "measures per run") if plot else note("Nothing numeric to plot."))
    finite = [r for r in rows if isinstance(r.get("val loss (tuned)"), float) and math.isfinite(r["val loss (tuned)"])]
    subtitle = f"{len(rows)} runs ({len(finite)} with a tuned val loss) · made {time.strftime('%Y-%m-%d %H:%M')}"
    return page("tunesmith compare", subtitle, [("table", "Table"), ("plot", "Plot")], body)
