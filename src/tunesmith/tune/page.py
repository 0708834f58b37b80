"""`runs/<study>/tune.html`: one self-contained page (PNG plots inlined, like report.html) with the trials table,
optimisation history, parameter importance, parallel coordinates, the Pareto front of several objectives and
the best trial's loss curve. The plots are Optuna's own (optuna.visualization.matplotlib)."""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
from optuna.trial import TrialState

from tunesmith.evaluate.report.markup import esc, image, note, page, section, table
from tunesmith.evaluate.report.plots import PALETTE, loss_curves, to_png
from tunesmith.train.metrics_log import read_metrics
from tunesmith.train.run_folder import RunFolder
from tunesmith.tune.results import OpenedStudy, objective_values, pareto_front, trial_cells, trial_columns
from tunesmith.tune.trial import trial_dir


def _optuna_plot(draw: Callable[[], Any]) -> str | None:
    """An Optuna matplotlib plot as a PNG, or None when the study cannot show it yet (too few trials)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            axes = draw()
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = first.figure
    fig.set_size_inches(8, 4.2)
    return to_png(fig)


def _pareto_plot(opened: OpenedStudy) -> str | None:
    objectives = opened.objectives
    if len(objectives) < 2:
        return None
    x, y = objectives[0], objectives[1]
    trials = [t for t in opened.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    points = [(objective_values(t), t) for t in trials if {x.metric, y.metric} <= objective_values(t).keys()]
    if not points:
        return None
    front = {t.number for t in pareto_front(trials, objectives)}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for on_front, color, label in ((False, PALETTE[1], "dominated"), (True, PALETTE[3], "Pareto front")):
        chosen = sorted(((v[x.metric], v[y.metric], t.number) for v, t in points if (t.number in front) == on_front))
        if chosen:
            ax.plot(
                [c[0] for c in chosen],
                [c[1] for c in chosen],
                "o" + ("-" if on_front else ""),
                color=color,
                label=label,
            )
            for cx, cy, number in chosen:
                ax.annotate(str(number), (cx, cy), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{x.metric} ({'higher' if x.maximize else 'lower'} is better)")
    ax.set_ylabel(f"{y.metric} ({'higher' if y.maximize else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return to_png(fig)


def write_page(opened: OpenedStudy) -> Path:
    """Write tune.html in the study folder; returns its path."""
    study, vis = opened.study, optuna.visualization.matplotlib
    metric = opened.objectives[0].metric
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    header = trial_columns(opened)
    rows = [[esc(cell) for cell in trial_cells(opened, t)] for t in study.get_trials(deepcopy=False)]
    parts = [
        section("trials", "Trials", table(header, rows, text_cols=[1, len(header) - 3])),
        section(
            "history",
            "Optimisation history",
            image(_optuna_plot(lambda: vis.plot_optimization_history(study, target_name=metric)), "history"),
        ),
        section(
            "importance",
            "Parameter importance (fANOVA)",
            image(_optuna_plot(lambda: vis.plot_param_importances(study, target_name=metric)), "importance")
            or note("Needs at least two complete trials that differ in their parameters."),
        ),
        section(
            "parallel",
            "Parallel coordinates",
            image(_optuna_plot(lambda: vis.plot_parallel_coordinate(study, target_name=metric)), "parallel"),
        ),
    ]
    if len(opened.objectives) > 1:
        parts.append(
            section(
                "pareto",
                "Pareto front",
                image(_pareto_plot(opened), "Pareto front") or note("No complete trial has every objective yet."),
            )
        )
    if best is not None and (folder := trial_dir(best)) is not None and RunFolder(folder).metrics.is_file():
        curve = loss_curves(read_metrics(RunFolder(folder).metrics))
        parts.append(section("best", f"Best trial {best.number}: loss curve", image(curve, "loss curve")))
    subtitle = (
        f"{len(study.trials)} trials · objective {html.escape(metric)} · "
        + (f"best {best.value:.4g} (trial {best.number})" if best else "no complete trial yet")
        + " · the database opens in optuna-dashboard as it is"
    )
    nav = [("trials", "Trials"), ("history", "History"), ("importance", "Importance"), ("parallel", "Parallel")]
    nav += [
        (anchor, label)
        for anchor, label in (("pareto", "Pareto front"), ("best", "Best trial"))
        if f'id="{anchor}"' in "".join(parts)
    ]
    text = page(f"tunesmith tune: {study.study_name}", subtitle, nav, "".join(parts))
    path = opened.folder / "tune.html"
    path.write_text(text, encoding="utf-8")
    return path
