"""The self-training recipe: train → pseudo-label → retrain on labelled + pseudo-labelled rows, for N rounds.

Layout of one self-training run (`run.output_dir/<run.name>/`):

    round-0/ round-1/ ...        ordinary SFT run folders (each trained from the base model)
    data/round-1-pseudo.jsonl    the rows round-0's model pseudo-labelled, added in round 1
    data/round-1-train.jsonl     labelled + pseudo-labelled rows that round-1 trains on
    self_training.json           per round: run folder, training rows, pseudo-labels it trained on, accuracy

Every round is scored on the same labelled rows (`self_training.eval_file`, else `data.val`) by label
likelihood, and selects its best checkpoint on the same validation file, so rounds compare fairly. Pseudo-labels
that copy (exactly or nearly, by the data check's rules) a validation or evaluation row are dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.io import read_records, write_jsonl
from tunesmith.data.load import load_examples
from tunesmith.errors import UserError
from tunesmith.evaluate.label_scoring import accuracy_by_likelihood
from tunesmith.evaluate.pseudo_label import (
    LabelSet,
    Protected,
    UnlabeledRow,
    label_counts_line,
    pseudo_label,
    read_unlabeled,
    run_label_set,
)
from tunesmith.methods.loading import LoadedModel, load_run, merged_for_inference
from tunesmith.output import err
from tunesmith.recipes.train import run_train
from tunesmith.train.precision import threads, use_bf16
from tunesmith.train.run_dir import write_json

SUMMARY_FILE = "self_training.json"


def _check(cfg: Config) -> None:
    """Stop before any training when the config cannot run to the end."""
    st = cfg.self_training
    if not cfg.data.train:
        raise UserError("self-training needs labelled data: set data.train")
    if not cfg.data.val:
        raise UserError(
            "self-training needs data.val (labelled validation rows), so every round is selected and scored on "
            "the same rows rather than on a split that would include pseudo-labels"
        )
    if st.rounds > 0 and not st.unlabeled:
        raise UserError("self_training.rounds > 0 needs self_training.unlabeled (a file of unlabeled rows)")


def _root_dir(cfg: Config, config_path: str | None) -> Path:
    stem = Path(config_path).stem if config_path else "self-training"
    root = Path(cfg.run.output_dir) / (cfg.run.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root} already exists; choose another run.name (--set run.name=...)")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _labelled_records(cfg: Config) -> list[dict[str, Any]]:
    """The raw labelled rows that training uses (valid rows, `data.max_train_rows` applied)."""
    d = cfg.data
    kept = {
        e.line for e in load_examples(d.train, d.format, d.skip_invalid, d.system_prompt, d.max_train_rows).examples
    }
    return [record for line, record in read_records(d.train)[0] if line in kept]


@dataclass
class _Plan:
    """What every round shares: the config, the output folder, the labels and the rows read once up front."""

    cfg: Config
    root: Path
    labels: LabelSet
    format: str
    eval_rows: list[Example]
    pool: list[UnlabeledRow]
    protected: Protected


def _plan(cfg: Config, config_path: str | None) -> _Plan:
    """Read labels, evaluation rows and the unlabeled pool (every user mistake surfaces here), then make the
    output folder."""
    st, d = cfg.self_training, cfg.data
    labels, fmt = run_label_set(cfg)
    eval_rows = load_examples(st.eval_file or d.val, d.format, d.skip_invalid, d.system_prompt).examples
    pool = read_unlabeled(st.unlabeled, fmt, d.system_prompt) if st.rounds else []
    val_rows = load_examples(d.val, d.format, d.skip_invalid, d.system_prompt).examples
    protected = Protected([*val_rows, *eval_rows], d.check.near_duplicate_threshold, d.check.num_perm)
    return _Plan(cfg, _root_dir(cfg, config_path), labels, fmt, eval_rows, pool, protected)


def _accuracy(loaded: LoadedModel, plan: _Plan) -> float:
    bf16 = use_bf16(plan.cfg.train.precision)
    accuracy, _ = accuracy_by_likelihood(
        loaded.model, loaded.tokenizer, plan.eval_rows, plan.labels.labels, plan.cfg.eval.batch_size, bf16
    )
    return accuracy


def _next_train_file(plan: _Plan, round_no: int, loaded: LoadedModel) -> tuple[Path, dict[str, Any]]:
    """Pseudo-label the pool with this round's model and write the next round's training file."""
    cfg, st = plan.cfg, plan.cfg.self_training
    rows, report = pseudo_label(
        loaded.model,
        loaded.tokenizer,
        plan.pool,
        plan.labels,
        plan.format,
        st.threshold,
        st.max_pseudo_rows,
        cfg.eval.batch_size,
        use_bf16(cfg.train.precision),
        plan.protected,
    )
    err.print(f"round {round_no} pseudo-labels: {label_counts_line(report)}", highlight=False)
    pseudo_file = plan.root / "data" / f"round-{round_no}-pseudo.jsonl"
    write_jsonl(pseudo_file, rows)
    train_file = plan.root / "data" / f"round-{round_no}-train.jsonl"
    write_jsonl(train_file, [*_labelled_records(cfg), *rows])
    return train_file, {**report.as_dict(), "file": str(pseudo_file)}


def _round_config(plan: _Plan, round_no: int, train_file: str | Path) -> Config:
    """The SFT config of one round: its own run folder under the self-training folder, its own training file."""
    cfg = plan.cfg.model_copy(deep=True)
    cfg.run.output_dir, cfg.run.name = str(plan.root), f"round-{round_no}"
    cfg.data.train = str(train_file)
    if round_no:  # the labelled rows were already cut to max_train_rows; the pseudo-labels must all stay
        cfg.data.max_train_rows = None
    return cfg


def run_self_training(cfg: Config, config_path: str | None = None) -> Path:
    """Run round 0 (supervised) and `self_training.rounds` pseudo-label rounds, each from the base model;
    returns the folder holding the round runs and `self_training.json`."""
    _check(cfg)
    plan = _plan(cfg, config_path)
    st = cfg.self_training
    summary: dict[str, Any] = {
        "labels": plan.labels.labels,
        "eval_file": st.eval_file or cfg.data.val,
        "eval_rows": len(plan.eval_rows),
        "unlabeled": st.unlabeled,
        "unlabeled_rows": len(plan.pool),
        "threshold": st.threshold,
        "rounds": [],
    }
    train_file: str | Path = cfg.data.train
    pseudo: dict[str, Any] | None = None  # the pseudo-labels the coming round trains on
    for round_no in range(st.rounds + 1):
        started = time.perf_counter()
        run = run_train(_round_config(plan, round_no, train_file), config_path)
        run_dir = run.path
        entry: dict[str, Any] = {"round": round_no, "run_dir": str(run_dir), "train_file": str(train_file)}
        entry["train_rows"] = run.summary.train_examples
        if pseudo is not None:
            entry["pseudo_labels"] = pseudo
        with threads(cfg.train.threads):
            loaded = load_run(run_dir)
            with merged_for_inference(loaded.model):
                entry["eval_accuracy"] = _accuracy(loaded, plan)
            if round_no == 0 and loaded.is_adapter:  # the base model is the same weights with the adapter off
                with loaded.model.disable_adapter():
                    summary["base_eval_accuracy"] = _accuracy(loaded, plan)
            if round_no < st.rounds:
                with merged_for_inference(loaded.model):
                    train_file, pseudo = _next_train_file(plan, round_no + 1, loaded)
            del loaded  # free this round's model before the next round loads its own
        entry["seconds"] = round(time.perf_counter() - started, 1)
        summary["rounds"].append(entry)
        write_json(plan.root / SUMMARY_FILE, summary)
        err.print(f"round {round_no}: accuracy {entry['eval_accuracy']:.4f} on {summary['eval_file']}")
    return plan.root
