"""Does self-training help on real data? SST-2 with 1% of the labels, smollm2-135m LoRA, CPU.

    .venv/bin/python bench/self_training_sst2.py --set train.threads=1            # ~25 min of CPU
    .venv/bin/python bench/self_training_sst2.py --set train.threads=1 --control  # + the control run, ~15 min more
    .venv/bin/python bench/self_training_sst2.py --report runs/sst2-semi/selftrain-<stamp> [--control]
    .venv/bin/python bench/self_training_sst2.py --unlabeled 300 --quick          # plumbing check, not a result

`train.threads=1` matters on a shared machine: with other jobs on the two cores, two torch threads each wait
on the other and training ran ~30 tok/s instead of ~200 tok/s.

Data (read from /work/shared/data/sst2, never copied into the repo; derived files go to runs/sst2-semi/data/):
- labelled: a seeded, label-stratified 1% of train.jsonl (674 of 67,349 rows after per-label rounding); 10% of
  it (stratified, 68 rows) is the validation file that picks each round's checkpoint, 606 are trained on.
- unlabeled: a seeded random sample (default 5,000 rows) of the other 99%, written as {"text"} only; the true
  labels go to a separate file that only this script reads, to score the pseudo-labels afterwards.
- dev: dev.jsonl (872 rows), the test set: every accuracy below is on it.
Labels are the words "negative"/"positive" (for 0/1) and the system prompt asks for one of them.

Runs `configs/self-training-sst2.yaml` through `recipes.self_training`: round 0 trains on the labelled rows,
each next round retrains from the base model on labelled + pseudo-labelled rows (the 2,000 most confident
with p >= 0.9 by default). Accuracy everywhere is label-likelihood classification (`evaluate.label_scoring`);
the zero-shot row is the same scoring on the base model (the adapter switched off). `--control` also trains
on the labelled rows alone for as many steps as the last round took (is the gain the pseudo-labels, or just
more steps?) and runs exact McNemar tests on the paired dev predictions. Prints a table and writes
results.json next to the run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from _sst2 import NAMES, read_jsonl, write_jsonl
from paths import CONFIGS, RUNS, SST2

if TYPE_CHECKING:
    from tunesmith.config import Config

CONFIG = CONFIGS / "self-training-sst2.yaml"


def stratified_sample(indices_by_label: dict[int, list[int]], fraction: float, rng: random.Random) -> list[int]:
    """`fraction` of each label's indices (rounded), sorted."""
    chosen: list[int] = []
    for label in sorted(indices_by_label):
        pool = indices_by_label[label]
        chosen += rng.sample(pool, round(fraction * len(pool)))
    return sorted(chosen)


def make_data(args: argparse.Namespace, data_dir: Path) -> None:
    """Write the labelled/unlabeled/dev files, and the unlabeled rows' true labels in a file of their own."""
    train = read_jsonl(args.sst2 / "train.jsonl")
    rng = random.Random(args.seed)
    by_label: dict[int, list[int]] = {}
    for i, row in enumerate(train):
        by_label.setdefault(row["label"], []).append(i)
    labelled = stratified_sample(by_label, args.labelled_fraction, rng)
    by_label_l: dict[int, list[int]] = {}
    for i in labelled:
        by_label_l.setdefault(train[i]["label"], []).append(i)
    val = set(stratified_sample(by_label_l, 0.1, rng))
    taken = set(labelled)
    pool = [i for i in range(len(train)) if i not in taken]
    unlabeled = rng.sample(pool, min(args.unlabeled, len(pool)))

    def labelled_row(row: dict) -> dict:
        return {"text": row["text"], "label": NAMES[row["label"]]}

    write_jsonl(data_dir / "labelled-train.jsonl", [labelled_row(train[i]) for i in labelled if i not in val])
    write_jsonl(data_dir / "labelled-val.jsonl", [labelled_row(train[i]) for i in sorted(val)])
    write_jsonl(data_dir / "unlabeled.jsonl", [{"text": train[i]["text"]} for i in unlabeled])
    hidden = {line: NAMES[train[i]["label"]] for line, i in enumerate(unlabeled, start=1)}
    write_jsonl(data_dir / "unlabeled-true-labels.jsonl", [{"line": k, "label": v} for k, v in hidden.items()])
    dev = [labelled_row(row) for row in read_jsonl(args.sst2 / "dev.jsonl")]
    write_jsonl(data_dir / "dev.jsonl", dev[: args.dev_rows] if args.dev_rows else dev)
    print(
        f"data: {len(labelled) - len(val)} labelled train + {len(val)} labelled val "
        f"({Counter(train[i]['label'] for i in labelled)}), {len(unlabeled)} unlabeled, "
        f"{min(len(dev), args.dev_rows or len(dev))} dev -> {data_dir}"
    )


def hidden_labels(data_dir: Path) -> dict[int, str]:
    """The true label of each line of unlabeled.jsonl (the recipe never reads this file)."""
    return {row["line"]: row["label"] for row in read_jsonl(data_dir / "unlabeled-true-labels.jsonl")}


def pseudo_quality(pseudo_file: Path, hidden: dict[int, str]) -> dict:
    """Accuracy of the kept pseudo-labels against the true labels the recipe never saw, overall and per label."""
    rows = read_jsonl(pseudo_file)
    right = Counter(r["label"] for r in rows if hidden[r["source_line"]] == r["label"])
    total = Counter(r["label"] for r in rows)
    return {
        "kept": len(rows),
        "accuracy": sum(right.values()) / len(rows) if rows else float("nan"),
        "per_label": {k: f"{right[k]}/{total[k]}" for k in sorted(total)},
    }


def bench_config(args: argparse.Namespace, data_dir: Path, name: str) -> Config:
    """The shipped config pointed at the derived files, with the command line's settings."""
    from tunesmith.config import load_config

    return load_config(
        CONFIG,
        [
            f"run.output_dir={args.out}",
            f"run.name={name}",
            f"run.seed={args.seed}",
            f"data.train={data_dir / 'labelled-train.jsonl'}",
            f"data.val={data_dir / 'labelled-val.jsonl'}",
            f"self_training.unlabeled={data_dir / 'unlabeled.jsonl'}",
            f"self_training.eval_file={data_dir / 'dev.jsonl'}",
            f"self_training.rounds={args.rounds}",
            f"self_training.threshold={args.threshold}",
            *([f"self_training.max_pseudo_rows={args.max_pseudo_rows}"] if args.max_pseudo_rows else []),
            *args.overrides,
        ],
    )


def control_run(root: Path, args: argparse.Namespace) -> Path:
    """Supervised on the labelled rows only, for as many steps as the last self-training round took: separates
    the effect of the pseudo-labels from the effect of simply training longer."""
    from tunesmith.recipes.train import run_train

    control = root / "control-supervised-long"
    if (control / "summary.json").is_file():
        return control
    rounds = json.loads((root / "self_training.json").read_text())["rounds"]
    steps = [json.loads((Path(r["run_dir"]) / "summary.json").read_text())["steps"] for r in (rounds[0], rounds[-1])]
    cfg = bench_config(args, args.out / "data", control.name)
    cfg.run.output_dir, cfg.train.epochs = str(root), steps[1] / steps[0]
    return run_train(cfg, str(CONFIG)).path


def dev_correct(run_dir: Path, args: argparse.Namespace, labels: list[str]) -> list[bool]:
    """Per dev row: did the run's model (label-likelihood argmax) get it right?"""
    from tunesmith.data.load import load_examples
    from tunesmith.evaluate.label_scoring import accuracy_by_likelihood
    from tunesmith.methods.loading import load_run
    from tunesmith.train.precision import threads, use_bf16

    cfg = bench_config(args, args.out / "data", "unused")
    dev = load_examples(args.out / "data" / "dev.jsonl", "text_label", system_prompt=cfg.data.system_prompt).examples
    with threads(cfg.train.threads):
        loaded = load_run(run_dir)
        _, predictions = accuracy_by_likelihood(
            loaded.model, loaded.tokenizer, dev, labels, cfg.eval.batch_size, use_bf16(cfg.train.precision)
        )
    return [p == e.target for p, e in zip(predictions, dev, strict=True)]


def mcnemar(a: list[bool], b: list[bool]) -> dict:
    """Exact McNemar test on paired predictions: rows only `a` got right, only `b` got right, two-sided p."""
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": round(p, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", type=Path, default=SST2)
    parser.add_argument("--out", type=Path, default=RUNS / "sst2-semi")
    parser.add_argument("--labelled-fraction", type=float, default=0.01)
    parser.add_argument("--unlabeled", type=int, default=5000, help="unlabeled rows pseudo-labelled per round")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-pseudo-rows", type=int, default=2000, help="most confident pseudo-labels kept")
    parser.add_argument("--dev-rows", type=int, default=None, help="score only the first N dev rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 dev rows: a plumbing check, not a result")
    parser.add_argument("--control", action="store_true", help="also train the longer supervised control run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--report", type=Path, default=None, help="report on this finished run folder instead")
    args = parser.parse_args()
    if args.quick:
        args.dev_rows = args.dev_rows or 200

    from tunesmith.recipes.self_training import run_self_training

    started = time.perf_counter()
    if args.report:
        root = args.report
    else:
        make_data(args, args.out / "data")
        cfg = bench_config(args, args.out / "data", f"selftrain-{time.strftime('%Y%m%d-%H%M%S')}")
        root = run_self_training(cfg, str(CONFIG))
    control = control_run(root, args) if args.control else None
    report(root, args, control, time.perf_counter() - started)


def report(root: Path, args: argparse.Namespace, control: Path | None, wall: float) -> None:
    """Print the results table (and paired tests) and save them as results.json in the run folder."""
    summary = json.loads((root / "self_training.json").read_text())
    hidden = hidden_labels(args.out / "data")
    rows = [{"model": "smollm2-135m zero-shot (same scoring)", "accuracy": summary["base_eval_accuracy"]}]
    runs = [(e["round"], Path(e["run_dir"]), e) for e in summary["rounds"]]
    for round_no, run_dir, entry in runs:
        sft = json.loads((run_dir / "summary.json").read_text())
        row = {
            "model": "supervised, 1% labels" if round_no == 0 else f"self-training round {round_no}",
            "train_rows": entry["train_rows"],
            "steps": sft["steps"],
            "accuracy": entry["eval_accuracy"],
            "train_seconds": sft["train_seconds"],
            "round_seconds": entry["seconds"],
        }
        if "pseudo_labels" in entry:
            row["pseudo"] = pseudo_quality(Path(entry["pseudo_labels"]["file"]), hidden)
            row["pseudo"]["seconds"] = entry["pseudo_labels"]["seconds"]
        rows.append(row)
    tests = {}
    if control is not None:
        labels = summary["labels"]
        right = {name: dev_correct(path, args, labels) for name, path in (("first", runs[0][1]), ("last", runs[-1][1]))}
        right["control"] = dev_correct(control, args, labels)
        sft = json.loads((control / "summary.json").read_text())
        rows.append(
            {
                "model": "supervised 1%, trained as long (control)",
                "train_rows": sft["train_examples"],
                "steps": sft["steps"],
                "accuracy": sum(right["control"]) / len(right["control"]),
                "train_seconds": sft["train_seconds"],
            }
        )
        tests = {
            "round 0 vs last round": mcnemar(right["first"], right["last"]),
            "control vs last round": mcnemar(right["control"], right["last"]),
        }
    print_table(summary, rows, tests, wall)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "wall_seconds": round(wall, 1), "rows": rows}
    (root / "results.json").write_text(json.dumps({**results, "mcnemar": tests}, indent=2) + "\n")
    print(f"\nresults: {root / 'results.json'}")


def print_table(summary: dict, rows: list[dict], tests: dict, wall: float) -> None:
    print(
        f"\nSST-2 dev accuracy ({summary['eval_rows']} rows), threshold {summary['threshold']}, "
        f"{summary['unlabeled_rows']} unlabeled rows pseudo-labelled per round; wall {wall / 60:.1f} min"
    )
    print("| model | train rows | steps | pseudo-labels kept (right/kept per label) | pseudo-label acc | dev acc |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        pseudo = row.get("pseudo")
        kept = f"{pseudo['kept']} ({', '.join(f'{k} {v}' for k, v in pseudo['per_label'].items())})" if pseudo else "-"
        acc = f"{pseudo['accuracy']:.1%}" if pseudo else "-"
        print(
            f"| {row['model']} | {row.get('train_rows', '-')} | {row.get('steps', '-')} | {kept} | {acc} | "
            f"{row['accuracy']:.1%} |"
        )
    for name, test in tests.items():
        print(
            f"McNemar {name}: {test['only_first_right']} rows only the first got right, "
            f"{test['only_second_right']} only the second; p = {test['p_value']}"
        )


if __name__ == "__main__":
    main()
