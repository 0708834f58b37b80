"""Every training method on one real task: SST-2 sentiment, scored on the full 872-row dev set.

    .venv/bin/python bench/methods.py                                  # all settings, all methods
    .venv/bin/python bench/methods.py --settings minilm-classify --methods full lora
    .venv/bin/python bench/methods.py --table                          # rebuild docs/methods-bench.md only

Settings (each run is a fresh process running the real `tunesmith train` recipe):
- minilm-classify: minilm-l6 + a new classification head (task classify);
- smollm2-classify: smollm2-135m + a new classification head (task classify);
- smollm2-sft: smollm2-135m answering "negative"/"positive" (task sft), scored by label likelihood.

Data (derived from /work/shared/data/sst2, written to runs/bench-methods/data/, never into the repo): the first
`--rows` rows of train.jsonl are trained on, the next 300 are the validation rows that pick the best weights, and
dev.jsonl is only ever scored after training, so no method selects its weights on the rows it is scored on.
Labels are the words negative/positive for every setting.

Columns: dev accuracy; trainable parameters; train time (wall time of the optimizer steps, validation passes
excluded); peak RSS of the training process (the largest `peak_rss_mb` in metrics.jsonl). Results append to
runs/bench-methods/results.jsonl (one line per run, so an interrupted bench keeps what it measured) and the table
goes to docs/methods-bench.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _sst2 import NAMES, write_jsonl
from paths import DOCS, ROOT, RUNS, SST2_DEV, SST2_TRAIN

OUT = RUNS / "bench-methods"
DOC = DOCS / "methods-bench.md"
SYSTEM = "Classify the sentiment of the movie review. Answer positive or negative."
VAL_ROWS = 300

# Per-setting base overrides; `rows` is the default number of training rows.
SETTINGS: dict[str, dict] = {
    "minilm-classify": {
        "rows": 8000,
        "sets": ["task.name=classify", "model.name=minilm-l6", "data.max_length=64", "train.batch_size=32"],
    },
    "smollm2-classify": {
        "rows": 1000,
        "sets": ["task.name=classify", "model.name=smollm2-135m", "data.max_length=64", "train.batch_size=16"],
    },
    "smollm2-sft": {
        "rows": 1000,
        "sets": [
            "task.name=sft",
            "model.name=smollm2-135m",
            "data.max_length=128",
            "train.batch_size=16",
            f"data.system_prompt={SYSTEM}",
        ],
    },
}
# Per-method overrides: learning rates follow each method's usual range (adapters and soft prompts take larger
# steps than full fine-tuning). Keys: method, then "encoder"/"decoder" for what differs by model family.
METHODS: dict[str, dict[str, list[str]]] = {
    "full": {"encoder": ["method.name=full", "train.lr=1e-4"], "decoder": ["method.name=full", "train.lr=2e-5"]},
    "freeze": {
        "encoder": ["method.name=freeze", "method.freeze_layers=3", "train.lr=1e-4"],
        "decoder": ["method.name=freeze", "method.freeze_layers=24", "train.lr=5e-5"],
    },
    # Only the embeddings frozen: 47% of minilm-l6's parameters are its 30k-word embedding table, whose dense
    # gradient and AdamW update cost more than the six layers (measured 2,227 vs 1,539 tok/s, same accuracy).
    "freeze_embeddings": {
        "encoder": ["method.name=freeze", "method.freeze_layers=0", "train.lr=1e-4"],
        "decoder": ["method.name=freeze", "method.freeze_layers=0", "train.lr=2e-5"],
    },
    "gradual_unfreeze": {
        "encoder": ["method.name=gradual_unfreeze", "method.every_steps=20", "train.lr=1e-4"],
        "decoder": ["method.name=gradual_unfreeze", "method.every_steps=2", "train.lr=2e-5"],
    },
    "layerwise_lr_decay": {
        "encoder": ["method.name=layerwise_lr_decay", "method.decay=0.9", "train.lr=1.5e-4"],
        "decoder": ["method.name=layerwise_lr_decay", "method.decay=0.95", "train.lr=3e-5"],
    },
    "lora": {"encoder": ["method.name=lora", "train.lr=5e-4"], "decoder": ["method.name=lora", "train.lr=3e-4"]},
    "dora": {
        "encoder": ["method.name=lora", "method.use_dora=true", "train.lr=5e-4"],
        "decoder": ["method.name=lora", "method.use_dora=true", "train.lr=3e-4"],
    },
    "qlora": {
        "encoder": ["method.name=qlora", "method.bits=4", "train.lr=5e-4"],
        "decoder": ["method.name=qlora", "method.bits=4", "train.lr=3e-4"],
    },
    "prompt_tuning": {
        "encoder": ["method.name=prompt_tuning", "train.lr=3e-2"],
        "decoder": ["method.name=prompt_tuning", f"method.init_text={SYSTEM}", "train.lr=3e-2"],
    },
    "prefix_tuning": {
        "encoder": ["method.name=prefix_tuning", "train.lr=1e-2"],
        "decoder": ["method.name=prefix_tuning", f"method.init_text={SYSTEM}", "train.lr=1e-2"],
    },
}


def make_data(rows: int) -> dict[str, Path]:
    """train/val/dev files with word labels; val is the rows right after the training rows."""
    source = [json.loads(line) for line in SST2_TRAIN.read_text().splitlines()[: rows + VAL_ROWS]]
    dev = [json.loads(line) for line in SST2_DEV.read_text().splitlines()]
    files = {name: OUT / "data" / f"{name}-{rows}.jsonl" for name in ("train", "val")} | {"dev": OUT / "data/dev.jsonl"}
    for name, part in (("train", source[:rows]), ("val", source[rows:]), ("dev", dev)):
        write_jsonl(files[name], [{"text": r["text"], "label": NAMES[r["label"]]} for r in part])
    return files


def run_sets(setting: str, method: str, rows: int, files: dict[str, Path], extra: list[str]) -> list[str]:
    family = "encoder" if "minilm" in setting else "decoder"
    return [
        *SETTINGS[setting]["sets"],
        *METHODS[method][family],
        f"run.name={setting}-{method}-{rows}-{time.strftime('%H%M%S')}",
        f"run.output_dir={OUT / 'runs'}",
        f"data.train={files['train']}",
        f"data.val={files['val']}",
        "data.format=text_label",
        f"data.max_val_rows={VAL_ROWS}",
        "train.epochs=1",
        "train.eval_every=100000",  # one validation pass, at the end: the runs are one short epoch
        "train.save_every=100000",
        "train.keep_checkpoints=1",
        "data.check.errors=[schema]",
        *extra,
    ]


def dev_accuracy(run: Path, task: str, dev: Path) -> float:
    """Accuracy on the dev rows: the head's argmax (classify) or the likelier label word (sft)."""
    if task == "classify":
        from tunesmith.tasks import TASKS

        return TASKS["classify"].predict(run, str(dev))[1]["accuracy"]
    from tunesmith.data.load import load_examples
    from tunesmith.evaluate.label_scoring import accuracy_by_likelihood
    from tunesmith.methods.loading import load_run
    from tunesmith.train.precision import use_bf16

    loaded = load_run(run)
    examples = load_examples(str(dev), "text_label", False, SYSTEM).examples
    labels = ["negative", "positive"]
    return accuracy_by_likelihood(loaded.model, loaded.tokenizer, examples, labels, 32, use_bf16("auto"))[0]


def worker(spec: dict) -> None:
    """One training run plus its dev score, in this (fresh) process; prints one JSON line."""
    from tunesmith.config import load_config
    from tunesmith.recipes.train import run_train

    cfg = load_config(None, spec["sets"])
    run = run_train(cfg).path
    summary = json.loads((run / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    started = time.perf_counter()
    accuracy = dev_accuracy(run, cfg.task.name, Path(spec["dev"]))
    print("RESULT " + json.dumps({
        "setting": spec["setting"], "method": spec["method"], "rows": spec["rows"], "run": str(run),
        "dev_accuracy": accuracy, "trainable_params": summary["trainable_params"],
        "total_params": summary["total_params"],
        "train_seconds": round(summary["train_seconds"] - summary["eval_seconds"], 1),
        "steps": summary["steps"],
        "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in metrics),
        "dev_scoring_seconds": round(time.perf_counter() - started, 1),
    }), flush=True)  # fmt: skip


def rescore(result: dict) -> dict:
    """The same run scored on dev again (after a scoring fix); results without a finished run stay as they are."""
    run = Path(result.get("run", ""))
    if "error" in result or not (run / "summary.json").is_file():
        return result
    task = json.loads((run / "summary.json").read_text())["task"]
    return {**result, "dev_accuracy": dev_accuracy(run, task, OUT / "data" / "dev.jsonl")}


def run_one(setting: str, method: str, rows: int, extra: list[str]) -> dict:
    files = make_data(rows)
    spec = {"setting": setting, "method": method, "rows": rows, "dev": str(files["dev"])}
    spec["sets"] = run_sets(setting, method, rows, files, extra)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"setting": setting, "method": method, "rows": rows, "error": tail[:300]}
    return json.loads(lines[-1].removeprefix("RESULT "))


def write_table(results: list[dict]) -> str:
    """The newest result per (setting, method, rows) as a markdown table."""
    latest = {(r["setting"], r["method"], r["rows"]): r for r in results}
    lines = [
        "| setting | method | train rows | dev accuracy | trainable params | train time | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for (setting, method, rows), r in sorted(latest.items(), key=lambda kv: (kv[0][0], list(METHODS).index(kv[0][1]))):
        if "error" in r:
            lines.append(f"| {setting} | {method} | {rows} | failed: {r['error']} | | | |")
            continue
        share = r["trainable_params"] / r["total_params"]
        lines.append(
            f"| {setting} | {method} | {rows} | {100 * r['dev_accuracy']:.1f}% | "
            f"{r['trainable_params'] / 1e6:.2f}M ({100 * share:.2f}%) | {r['train_seconds']:.0f} s | "
            f"{r['peak_rss_mb']:,} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: per setting)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra override for every run")
    parser.add_argument("--table", action="store_true", help="only rebuild the table from results.jsonl")
    parser.add_argument("--rescore", action="store_true", help="rescore runs of --settings/--methods on dev")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    results_file = OUT / "results.jsonl"
    results = [json.loads(x) for x in results_file.read_text().splitlines()] if results_file.exists() else []
    if args.rescore:  # the runs of the chosen settings and methods (default: all)
        results = [rescore(r) if r["setting"] in args.settings and r["method"] in args.methods else r for r in results]
        write_jsonl(results_file, results)
    elif not args.table:
        for setting in args.settings:
            for method in args.methods:
                result = run_one(setting, method, args.rows or SETTINGS[setting]["rows"], args.extra)
                print(json.dumps(result), flush=True)
                results.append(result)
                with results_file.open("a") as out:
                    out.write(json.dumps(result) + "\n")
    table = write_table(results)
    print(table)
    DOC.write_text(
        "# Methods on SST-2 (`bench/methods.py`)\n\n"
        "Generated by `.venv/bin/python bench/methods.py`; see the script's docstring for the protocol. "
        "2 CPU cores, one epoch, dev = the full 872-row SST-2 dev set, scored once after training. Train time is the "
        "wall time of the optimizer steps: on a machine shared with other jobs it is inflated and noisy. "
        "`docs/tasks.md` says under which load each block of rows was measured.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
