"""Does a mitigation keep earlier tasks through a sequence? smollm2-135m LoRA learns SST-2 (label words) → WNUT-17
as generation (list the entities) → Alpaca, through `tunesmith sequence`, with no mitigation, with replay of the
earlier tasks' rows, jointly on all three (the upper reference), and with one adapter per task merged into one at
the end (`per_task`).

    .venv/bin/python bench/sequence.py                                  # every setting (~40 min on 2 cores)
    .venv/bin/python bench/sequence.py --settings none,replay --seed 1  # some of them, another seed
    .venv/bin/python bench/sequence.py --train-rows 40 --test-rows 16   # plumbing check only

Each setting is one `tunesmith sequence` process (its config written to <out>/<setting>.yaml). Every task is scored
on its own test rows after every stage: SST-2 dev accuracy by label likelihood, WNUT-17 test ROUGE-L of the listed
entities, Alpaca ROUGE-L of greedy answers on held-out rows; plus the audit's reference perplexity and KL after
each stage. Target (issue 19): BWT with mitigation at least halves the loss of earlier-task score compared with no
mitigation (|BWT(mitigated)| <= 0.5 |BWT(none)|). Results: <out>/sequence-bench.json and the table printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _sst2 import NAMES, read_jsonl, write_jsonl
from paths import ALPACA, DATA, RUNS, SST2

WNUT = DATA / "wnut17"
ALPACA_TEST_FROM = 1500  # Alpaca sample rows from here on are test rows, never trained on
SST2_PROMPT = "Classify the sentiment of the movie review. Answer positive or negative."
WNUT_PROMPT = (
    "List the named entities (people, places, companies, products, groups, works) in the text, separated by '; '."
)

STAGE = {
    "model": {"name": "smollm2-135m"},
    "method": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
    "data": {"max_length": 256, "check": {"errors": ["schema"]}},
    "train": {"epochs": 1, "batch_size": 16, "lr": 5e-4, "eval_every": 20, "save_every": 100000, "keep_checkpoints": 1},
    "eval": {"batch_size": 32, "max_examples": 100},
}
SETTINGS: dict[str, dict] = {
    "none": {},
    "replay": {"stage": {"forgetting": {"replay": {"data": "earlier", "fraction": 0.25}}}},
    "joint": {"mode": "joint"},
    # A new LoRA adapter per task on the original base (earlier ones frozen: no forgetting by construction), then
    # one adapter merged from the three by TIES; the merged row is what a single deployable adapter keeps.
    "per_task": {"adapters": "per_task", "merge": {"combination": "ties", "density": 0.5}},
}


def _entities(row: dict) -> list[str]:
    found, current = [], []
    for token, tag in zip(row["tokens"], row["ner_tags"], strict=True):
        if tag.startswith("B-") or (tag.startswith("I-") and not current):
            if current:
                found.append(" ".join(current))
            current = [token]
        elif tag.startswith("I-"):
            current.append(token)
        elif current:
            found.append(" ".join(current))
            current = []
    return [*found, " ".join(current)] if current else found


def _wnut_rows(path: Path) -> list[dict]:
    rows = [r for r in read_jsonl(path) if any(t != "O" for t in r["ner_tags"])]
    return [
        {"prompt": f"{WNUT_PROMPT}\nText: {' '.join(r['tokens'])}", "completion": "; ".join(_entities(r))} for r in rows
    ]


def make_data(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    data, rng = args.out / "data", random.Random(args.seed)
    sst2 = rng.sample(read_jsonl(SST2 / "train.jsonl"), args.train_rows)
    files = {
        "sst2": (
            [{"text": r["text"], "label": NAMES[r["label"]]} for r in sst2],
            [{"text": r["text"], "label": NAMES[r["label"]]} for r in read_jsonl(SST2 / "dev.jsonl")],
        ),
        "wnut": (rng.sample(_wnut_rows(WNUT / "train.jsonl"), args.train_rows), _wnut_rows(WNUT / "test.jsonl")),
        "alpaca": (read_jsonl(ALPACA)[: args.train_rows], read_jsonl(ALPACA)[ALPACA_TEST_FROM:]),
    }
    out = {}
    for name, (train, test) in files.items():
        write_jsonl(data / f"{name}-train.jsonl", train)
        write_jsonl(data / f"{name}-test.jsonl", test[: args.test_rows])
        out[name] = {"train": str(data / f"{name}-train.jsonl"), "test": str(data / f"{name}-test.jsonl")}
    return out


def sequence_config(args: argparse.Namespace, setting: str, files: dict[str, dict[str, str]]) -> Path:
    tasks = [
        {
            "name": "sst2",
            **files["sst2"],
            "metric": "accuracy",
            "config": {"data": {"format": "text_label", "system_prompt": SST2_PROMPT}},
        },
        {"name": "wnut", **files["wnut"], "metric": "rouge_l", "config": {"eval": {"max_new_tokens": 32}}},
        {"name": "alpaca", **files["alpaca"], "metric": "rouge_l", "config": {"eval": {"max_new_tokens": 64}}},
    ]
    extra = SETTINGS[setting]
    stage = {**STAGE, **extra.get("stage", {})}
    body = {"run": {"name": setting, "output_dir": str(args.out), "seed": args.seed}, "stage": stage, "tasks": tasks}
    body |= {k: v for k, v in extra.items() if k != "stage"}
    body["max_test_rows"] = args.test_rows
    path = args.out / f"{setting}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_setting(args: argparse.Namespace, setting: str, files: dict[str, dict[str, str]]) -> dict:
    config = sequence_config(args, setting, files)
    command = [str(Path(sys.executable).with_name("tunesmith")), "sequence", str(config)]
    if (args.out / setting / "sequence.yaml").is_file():
        command.append("--resume")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    state = json.loads((args.out / setting / "sequence.json").read_text())
    return {"wall_seconds": round(time.perf_counter() - started, 1), "load_after": os.getloadavg()[0], **state}


def table(results: dict[str, dict]) -> str:
    lines = []
    for setting, state in results.items():
        tasks = state["order"]["tasks"]
        lines.append(
            f"\n{setting}: " + " · ".join(f"{k} {v:+.4f}" for k, v in state["summary"].items() if isinstance(v, float))
        )
        lines.append("  after       " + "".join(f"{t:>10}" for t in tasks))
        lines.append("  base        " + "".join(f"{100 * s['score']:>9.1f}%" for s in state["base"]))
        for stage in state["stages"]:
            lines.append(f"  {stage['name']:<12}" + "".join(f"{100 * s['score']:>9.1f}%" for s in stage["scores"]))
        if "merged" in state:
            lines.append("  merged      " + "".join(f"{100 * s['score']:>9.1f}%" for s in state["merged"]["scores"]))
    return "\n".join(lines)


def verdict(results: dict[str, dict]) -> dict | None:
    if "none" not in results or "replay" not in results:
        return None
    none, replay = results["none"]["summary"]["bwt"], results["replay"]["summary"]["bwt"]
    return {"bwt_none": none, "bwt_replay": replay, "met": none < 0 and abs(replay) <= 0.5 * abs(none)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--train-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RUNS / "bench-sequence")
    args = parser.parse_args()
    args.out = args.out / f"seed{args.seed}"
    args.out.mkdir(parents=True, exist_ok=True)
    files = make_data(args)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    results = {name: run_setting(args, name, files) for name in args.settings.split(",")}
    judged = verdict(results)
    (args.out / "sequence-bench.json").write_text(json.dumps({"results": results, "verdict": judged}, indent=2))
    print(table(results))
    if judged:
        print(f"\nBWT none {judged['bwt_none']:+.4f}, replay {judged['bwt_replay']:+.4f}: target met: {judged['met']}")
    for name, state in results.items():
        print(
            f"{name}: wall {state['wall_seconds']:.0f} s, train {state['summary']['train_seconds']:.0f} s, "
            f"load average after {state['load_after']:.2f}"
        )


if __name__ == "__main__":
    main()
