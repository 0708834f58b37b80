"""Did fine-tuning help? SST-2 sentiment with smollm2-135m: zero-shot, 5-shot and LoRA-tuned dev accuracy.

    .venv/bin/python bench/sst2_eval.py --set train.threads=1             # ~1000 train rows, the 872-row dev set
    .venv/bin/python bench/sst2_eval.py --train-rows 200 --dev-rows 64    # plumbing check, not a result
    .venv/bin/python bench/sst2_eval.py --report runs/sst2-eval/sst2-lora  # re-evaluate a finished run
    .venv/bin/python bench/sst2_eval.py --report runs/sst2-eval/sst2-lora --throughput 128  # speed only

Data (read from /work/shared/data/sst2, never copied into the repo; derived files go to runs/sst2-eval/data/):
- train: a seeded random sample of train.jsonl (default 1,000 rows), of which 10% is the validation file that
  picks the best checkpoint during training;
- dev: dev.jsonl (872 rows), the test set: every number printed is on it.
Labels are the words "negative"/"positive" (for 0/1), in text_label form; the system prompt asks for one of them.

Trains `configs/sst2-lora.yaml`, then runs `tunesmith eval`'s evaluation (`evaluate.runner.evaluate_run`) on
dev with `eval.shots: [0, 5]`: the base model zero-shot and 5-shot (shots drawn from the train sample, seeded)
beside the tuned model, scored by label likelihood (headline) and by generation, with rows/s of each. Prints a
table and writes eval.json in the run folder and <run>-results.json next to it. `--throughput N` instead times
both scorings on the first N dev rows (rows per wall second and per CPU-second; on a shared machine the second
is the steadier figure) and writes <run>-throughput.json, leaving eval.json alone.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from _sst2 import NAMES, read_jsonl, write_jsonl
from paths import CONFIGS, SST2

CONFIG = CONFIGS / "sst2-lora.yaml"


def make_data(args: argparse.Namespace, data_dir: Path) -> None:
    """train/val (a seeded sample of SST-2 train) and dev files with word labels."""
    train = read_jsonl(args.sst2 / "train.jsonl")
    rows = random.Random(args.seed).sample(train, args.train_rows)
    rows = [{"text": r["text"], "label": NAMES[r["label"]]} for r in rows]
    n_val = max(2, args.train_rows // 10)
    write_jsonl(data_dir / "train.jsonl", rows[n_val:])
    write_jsonl(data_dir / "val.jsonl", rows[:n_val])
    dev = [{"text": r["text"], "label": NAMES[r["label"]]} for r in read_jsonl(args.sst2 / "dev.jsonl")]
    write_jsonl(data_dir / "dev.jsonl", dev[: args.dev_rows] if args.dev_rows else dev)
    print(f"data: {len(rows) - n_val} train, {n_val} val (from SST-2 train), {len(dev)} dev -> {data_dir}")


def train(args: argparse.Namespace, data_dir: Path) -> Path:
    from tunesmith.config import load_config
    from tunesmith.recipes.train import run_train

    cfg = load_config(
        CONFIG,
        [
            f"run.output_dir={args.out}",
            f"run.name={args.name}",
            f"run.seed={args.seed}",
            f"data.train={data_dir / 'train.jsonl'}",
            f"data.val={data_dir / 'val.jsonl'}",
            *args.overrides,
        ],
    )
    return run_train(cfg, str(CONFIG)).path


def evaluate(run_dir: Path, dev: Path, threads: int | None) -> dict:
    import torch

    from tunesmith.evaluate.runner import evaluate_run
    from tunesmith.train.run_dir import write_json

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    report = evaluate_run(run_dir, str(dev))
    report["eval_wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(run_dir / "eval.json", report)
    return report


def throughput(run_dir: Path, dev: Path, rows: int, threads: int | None) -> dict:
    """Both scorings of every system on the first `rows` dev rows: rows/s and rows per CPU-second."""
    import torch

    from tunesmith.evaluate.runner import evaluate_run

    if threads:
        torch.set_num_threads(threads)
    subset = dev.with_name(f"dev-first-{rows}.jsonl")
    subset.write_text("".join(dev.read_text().splitlines(keepends=True)[:rows]))
    report = evaluate_run(run_dir, str(subset), use_cache=False)  # time the base's scoring too, never its cache
    keys = ("rows", "seconds", "rows_per_s", "cpu_seconds", "rows_per_cpu_s")
    return {
        "rows": rows,
        "torch_threads": torch.get_num_threads(),
        "systems": {
            s["name"]: {how: {k: s[how][k] for k in keys} for how in ("label_likelihood", "generation")}
            for s in report["systems"]
            if s["model"] != "prior"
        },
    }


def summarize(report: dict, run_dir: Path) -> dict:
    """Dev accuracy of each system by both scorings, and the throughput."""
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    rows = {}
    for s in report["systems"]:
        if s["model"] == "prior":
            rows[s["name"]] = {"accuracy": s["metrics"]["accuracy"], "macro_f1": s["metrics"]["macro_f1"]}
            continue
        ll = s["label_likelihood"]
        rows[s["name"]] = {
            "accuracy_label_likelihood_interval": ll.get("intervals", {}).get("accuracy"),
            "macro_f1_label_likelihood_interval": ll.get("intervals", {}).get("macro_f1"),
            "ece": ll.get("calibration", {}).get("ece"),
            "per_class": ll.get("per_class"),
        }
        rows[s["name"]] |= {
            "accuracy_label_likelihood": s["label_likelihood"]["metrics"]["accuracy"],
            "macro_f1_label_likelihood": s["label_likelihood"]["metrics"]["macro_f1"],
            "accuracy_generation": s["generation"]["metrics"]["accuracy"],
            "label_scoring_rows_per_s": s["label_likelihood"]["rows_per_s"],
            "generation_rows_per_s": s["generation"]["rows_per_s"],
            "generation_rows": s["generation"]["rows"],
        }
    return {
        "run": str(run_dir),
        "dev_rows": report["rows"],
        "train_examples": summary.get("train_examples"),
        "train_seconds": summary.get("train_seconds"),
        "eval_wall_seconds": report.get("eval_wall_seconds"),
        "systems": rows,
        "tuned_versus": report["tuned"].get("versus", {}).get("label_likelihood"),
        "collapse_warning": report.get("collapse_warning"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", type=Path, default=SST2)
    parser.add_argument("--out", type=Path, default=Path("runs/sst2-eval"))
    parser.add_argument("--name", default="sst2-lora")
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--dev-rows", type=int, default=None, help="first N dev rows (default: all 872)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-threads", type=int, default=1)
    parser.add_argument("--report", type=Path, help="evaluate this finished run instead of training")
    parser.add_argument("--throughput", type=int, metavar="N", help="only time the scorings on N dev rows")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=c")
    args = parser.parse_args()

    data_dir = args.out / "data"
    if args.report is None:
        make_data(args, data_dir)
        run_dir = train(args, data_dir)
    else:
        run_dir = args.report
    if args.throughput:
        speed = throughput(run_dir, data_dir / "dev.jsonl", args.throughput, args.eval_threads)
        (run_dir.parent / f"{run_dir.name}-throughput.json").write_text(json.dumps(speed, indent=2) + "\n")
        print(json.dumps(speed, indent=2))
        return
    report = evaluate(run_dir, data_dir / "dev.jsonl", args.eval_threads)
    result = summarize(report, run_dir)
    (run_dir.parent / f"{run_dir.name}-results.json").write_text(json.dumps(result, indent=2) + "\n")

    from tunesmith.cli.eval_cmd import print_report

    print_report(report)  # what `tunesmith eval` prints: intervals, priors, per class, significance, calibration
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
