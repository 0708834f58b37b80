"""Forgetting mitigation (`forgetting:` config section): build what the loop needs before training starts.

Each mitigation is a small module: `replay` rows mixed into every batch, `kl_to_base` (a KL term toward the base
model), `ewc` and `l2_sp` (weight penalties). They are registered in plain dicts and combine freely; the loop
only sees a `Replay` and `Penalties` (`train.replay`, `train.penalties`). Built after the run folder exists
(EWC saves its Fisher there) and before a resume loads its checkpoint, so anchors are the starting weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.data.tokenize import pad_id
from tunesmith.forgetting import ewc, kl_to_base, l2_sp
from tunesmith.forgetting.rows import kept_rows
from tunesmith.output import err
from tunesmith.train.loop import LoopSetup, trained_parameters
from tunesmith.train.penalties import Penalties
from tunesmith.train.replay import Replay, rows_per_batch

Builder = Callable[[Config, LoopSetup, Any, Path, Penalties], dict[str, Any]]


def _replay(cfg: Config, setup: LoopSetup, tokenizer: Any, _run: Path, _penalties: Penalties) -> dict[str, Any]:
    spec = cfg.forgetting.replay
    kept = kept_rows(spec.data or "", "forgetting.replay.data", cfg, setup.model, tokenizer, spec.max_rows)
    per_batch = rows_per_batch(cfg.train.batch_size, spec.fraction)
    setup.replay = Replay(kept.rows, per_batch, cfg.run.seed, kept.source, cfg.train.batch_size)
    err.print(
        f"replay: {per_batch} row(s) beside every {cfg.train.batch_size} task rows, from {len(kept.rows)} rows of "
        f"{kept.source}",
        highlight=False,
    )
    share = round(setup.replay.share, 4)
    return {
        **kept.report(),
        "rows_per_batch": per_batch,
        "task_rows_per_batch": cfg.train.batch_size,
        "loss_share": share,
    }


def _kl_to_base(cfg: Config, setup: LoopSetup, _tok: Any, _run: Path, penalties: Penalties) -> dict[str, Any]:
    penalties.kl, copy_bytes = kl_to_base.build(
        cfg.forgetting.kl_to_base.weight, setup.model, cfg.forgetting.kl_on_replay
    )
    base = "the same weights with the adapter off" if not copy_bytes else f"a bf16 copy ({copy_bytes / 2**20:.0f} MB)"
    rows = "replay" if penalties.kl.on_replay else "task"
    err.print(f"kl_to_base: λ={penalties.kl.weight} on the {rows} rows; base = {base}", highlight=False)
    return {"weight": penalties.kl.weight, "rows": rows, "reference_copy_mb": round(copy_bytes / 2**20, 1)}


def _ewc(cfg: Config, setup: LoopSetup, tokenizer: Any, run: Path, penalties: Penalties) -> dict[str, Any]:
    spec, started = cfg.forgetting.ewc, time.perf_counter()
    kept = kept_rows(spec.data, "forgetting.ewc.data", cfg, setup.model, tokenizer, spec.batches * spec.batch_size)
    params = trained_parameters(setup)
    fisher, loaded = ewc.load_or_estimate(run, setup.model, params, kept.rows, pad_id(tokenizer), spec, setup.bf16)
    penalties.weights.append(ewc.build(spec, params, fisher, penalties.shared_anchors(params)))
    seconds = time.perf_counter() - started
    how = f"read from {ewc.FISHER_FILE}" if loaded else f"estimated on {spec.batches} batches in {seconds:.1f} s"
    err.print(f"ewc: λ={spec.weight}; Fisher of {len(params)} tensors {how} ({kept.source})", highlight=False)
    return {**kept.report(), "weight": spec.weight, "fisher": ewc.FISHER_FILE, "fisher_seconds": round(seconds, 1)}


def _l2_sp(cfg: Config, setup: LoopSetup, _tok: Any, _run: Path, penalties: Penalties) -> dict[str, Any]:
    params = trained_parameters(setup)
    penalties.weights.append(l2_sp.build(cfg.forgetting.l2_sp.weight, params, penalties.shared_anchors(params)))
    size = sum(p.numel() for p in params.values()) * 4
    err.print(f"l2_sp: λ={cfg.forgetting.l2_sp.weight} on {len(params)} tensors ({size / 2**20:.1f} MB of anchors)")
    return {"weight": cfg.forgetting.l2_sp.weight, "tensors": len(params), "anchor_mb": round(size / 2**20, 1)}


MITIGATIONS: dict[str, Builder] = {"replay": _replay, "kl_to_base": _kl_to_base, "ewc": _ewc, "l2_sp": _l2_sp}


def add_mitigations(cfg: Config, setup: LoopSetup, tokenizer: Any, run_path: Path) -> dict[str, Any]:
    """Give `setup` the configured replay and penalties; returns what each one used, for data_report.json."""
    report: dict[str, Any] = {}
    for name in cfg.forgetting.active():
        report[name] = MITIGATIONS[name](cfg, setup, tokenizer, run_path, setup.penalties)
    return report
