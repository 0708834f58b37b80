"""`tunesmith audit`: forgetting and bias of a tuned run against its base, saved as runs/<run>/audit.json."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from rich.table import Table

from tunesmith.config import load_config
from tunesmith.evaluate.bias import run_bias
from tunesmith.evaluate.forgetting import run_forgetting
from tunesmith.evaluate.model_pair import load_pair
from tunesmith.train.run_folder import RunFolder

Part = Literal["all", "forgetting", "bias"]


def run_audit(
    run_dir: Path,
    overrides: list[str] | None = None,
    only: Part = "all",
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Load the run once and run the audits asked for; `overrides` are `--set` assignments (audit.* keys)."""
    cfg = load_config(RunFolder(run_dir).config, overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    pair = load_pair(run_dir)
    report: dict[str, Any] = {
        "run": str(run_dir),
        "base_model": cfg.model.name,
        "base_is": "the same model with the adapter disabled" if pair.loaded.is_adapter else "the base model",
        "settings": cfg.audit.model_dump(mode="json"),
    }
    started = time.perf_counter()
    if only in ("all", "forgetting"):
        report["forgetting"] = run_forgetting(pair, cfg.audit, log)
    if only in ("all", "bias"):
        report["bias"] = run_bias(pair, cfg.audit, log)
    report["seconds"] = time.perf_counter() - started
    return report


def _row(table: Table, label: str, base: float, tuned: float, fmt: str) -> None:
    table.add_row(label, fmt.format(base), fmt.format(tuned), fmt.format(tuned - base))


def audit_table(report: dict[str, Any]) -> Table:
    """The headline numbers, base vs tuned."""
    table = Table(title=f"audit of {report['run']} (base: {report['base_is']})")
    for col in ("measure", "base", "tuned", "change"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    if forgetting := report.get("forgetting"):
        ppl = forgetting["perplexity"]
        _row(table, "reference perplexity", ppl["base"], ppl["tuned"], "{:.3f}")
        table.add_row("KL(base‖tuned) per token", "0", f"{forgetting['kl_base_tuned']:.4f}", "")
        if task := forgetting.get("earlier_task"):
            _row(table, "earlier-task accuracy", task["accuracy"]["base"], task["accuracy"]["tuned"], "{:.3f}")
    bias = report.get("bias", {})
    if crows := bias.get("crows_pairs"):
        o = crows["overall"]
        _row(
            table,
            f"CrowS-Pairs stereotype preference ({crows['pairs']})",
            o["base"]["mean"],
            o["tuned"]["mean"],
            "{:.3f}",
        )
    if wino := bias.get("winobias"):
        o = wino["pro_preferred"]
        _row(table, f"WinoBias pro-preferred ({wino['pairs']})", o["base"]["mean"], o["tuned"]["mean"], "{:.3f}")
    for probe in bias.get("probes", []):
        _row(table, f"probe JS: {probe['template']}", probe["base"]["mean_js"], probe["tuned"]["mean_js"], "{:.4f}")
    return table
