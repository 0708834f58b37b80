"""Preference tuning against the anchor: tunesmith `task: dpo` vs TRL's DPOTrainer, same rows, model and settings.

    python bench/dpo.py                  # 128 train pairs, 300 held-out pairs, one round of each system
    python bench/dpo.py --quick          # 48 train pairs, 100 held-out pairs
    python bench/dpo.py --prepare-only   # only write runs/dpo-hh/data/ (configs/dpo-lora.yaml reads it)

Data: Anthropic HH-RLHF harmless-base pairs (../shared/data/hh_rlhf), each transcript turned into chat turns
(`Human:` → user, `Assistant:` → assistant), pairs of at most 1,200 characters (prompt plus the longer answer)
so nothing is truncated at 512 tokens; seeded split into train, val (checkpoint picking) and test (held out).

Both systems: smollm2-135m, LoRA r=16 α=32 on all linear layers, no dropout, β=0.1, sigmoid loss, batch 8, lr 1e-4
cosine with 10% warmup, 1 epoch, max length 512, the base with the adapter off as reference, and the same
precision: the one tunesmith's `train.precision: auto` picks on this host (bf16 autocast where bf16 matmuls
measure faster than fp32, else fp32); `--trl-defaults` leaves TRL on its own default (bf16). TRL keeps its other
defaults (gradient checkpointing on). Each system runs in its own subprocess; rounds alternate the order.

Throughput: tokens of both sides of every pair (prompt + answer, no padding) / training wall time, with the
reference log-probs included (TRL computes them inside `train()`; tunesmith once before its loop). Held-out
preference accuracy: the share of test pairs whose chosen answer has the higher summed log-probability, scored
the same way for the base, tunesmith's adapter and TRL's adapter (`score` below).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from paths import DATA, ROOT, RUNS

HH = DATA / "hh_rlhf" / "harmless_base_test.jsonl"
DATA_DIR = RUNS / "dpo-hh" / "data"
MAX_CHARS = 1200
SETTINGS = {"lr": 1e-4, "batch_size": 8, "beta": 0.1, "max_length": 512, "epochs": 1, "warmup_ratio": 0.1}
ROLES = {"Human": "user", "Assistant": "assistant"}


def to_turns(transcript: str) -> list[dict[str, str]] | None:
    """`\\n\\nHuman: …\\n\\nAssistant:` → chat turns ending with the user's; None when it does not alternate."""
    parts = re.split(r"\n\n(Human|Assistant):", transcript)
    if parts[0].strip() or len(parts) < 5 or parts[-2] != "Assistant" or parts[-1].strip():
        return None
    pairs = zip(parts[1:-2:2], parts[2:-2:2], strict=True)
    turns = [{"role": ROLES[who], "content": text.strip()} for who, text in pairs]
    alternates = all(t["role"] == ("user" if i % 2 == 0 else "assistant") for i, t in enumerate(turns))
    return turns if turns and alternates and all(t["content"] for t in turns) else None


def prepare(n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict[str, Path]:
    """Write train/val/test preference files (TRL's conversational layout) and print what was left out."""
    kept, skipped = [], {"too long": 0, "not alternating turns": 0, "empty or equal answers": 0}
    for line in HH.read_text().splitlines():
        row = json.loads(line)
        chosen, rejected = row["chosen"].strip(), row["rejected"].strip()
        if not chosen or not rejected or chosen == rejected:
            skipped["empty or equal answers"] += 1
        elif len(row["prompt"]) + max(len(chosen), len(rejected)) > MAX_CHARS:
            skipped["too long"] += 1
        elif (turns := to_turns(row["prompt"])) is None:
            skipped["not alternating turns"] += 1
        else:
            kept.append(
                {
                    "prompt": turns,
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                }
            )
    random.Random(seed).shuffle(kept)
    if len(kept) < n_train + n_val + n_test:
        raise SystemExit(f"only {len(kept)} usable pairs for {n_train}+{n_val}+{n_test}")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    files, start = {}, 0
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        files[name] = DATA_DIR / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in kept[start : start + n]))
        start += n
    print(f"hh-rlhf: {len(kept)} usable pairs; skipped {skipped}; wrote {n_train}/{n_val}/{n_test} to {DATA_DIR}")
    return files


def run_json(cmd: list[str], jemalloc: bool = False) -> dict:
    """Run a worker; its last JSON line is the result. `jemalloc`: with the allocator `tunesmith train` restarts
    with (when installed), as bench/sft_speed.py runs it."""
    env = None
    if jemalloc:
        from tunesmith.allocator import find_jemalloc, preload_env

        env = preload_env(os.environ, find_jemalloc())
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def worker(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name(name)), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="48 train pairs, 100 held-out pairs")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both systems")
    parser.add_argument("--prepare-only", action="store_true", help="write the data files and stop")
    parser.add_argument("--skip-trl", action="store_true", help="only tunesmith")
    parser.add_argument("--trl-defaults", action="store_true", help="TRL in its default precision (bf16)")
    parser.add_argument("--out", default=str(RUNS / "bench-dpo"), help="where both systems write their adapters")
    args = parser.parse_args()
    n_train, n_test = (48, 100) if args.quick else (128, 300)
    files = prepare(n_train, 64, n_test)
    if args.prepare_only:
        return
    from tunesmith.train.precision import use_bf16

    bf16 = use_bf16("auto")
    trl_bf16 = None if args.trl_defaults else bf16
    out, settings = Path(args.out), json.dumps({**SETTINGS, "trl_bf16": trl_bf16})
    trl = "its default (bf16)" if trl_bf16 is None else ("bf16" if trl_bf16 else "fp32")
    print(f"precision: tunesmith {'bf16' if bf16 else 'fp32'}, TRL {trl}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    results: dict[str, list[dict]] = {"trl": [], "tunesmith": []}
    for round_ in range(args.rounds):
        order = ["trl", "tunesmith"] if round_ % 2 == 0 else ["tunesmith", "trl"]
        for system in order:
            if system == "trl" and args.skip_trl:
                continue
            folder = out / f"{system}-{round_}"
            script = "_dpo_trl_worker.py" if system == "trl" else "_dpo_worker.py"
            cmd = worker(script, str(files["train"]), str(files["val"]), str(folder), settings)
            res = run_json(cmd, jemalloc=system == "tunesmith")
            res["load_average"] = round(os.getloadavg()[0], 2)
            print(json.dumps({"round": round_, **res}), flush=True)
            results[system].append(res)
    adapters = {f"{s}-{i}": r["adapter"] for s, runs in results.items() for i, r in enumerate(runs)}
    scores = run_json(worker("_dpo_score.py", str(files["test"]), json.dumps(adapters)))
    print(json.dumps({"held_out": scores}), flush=True)
    report(results, scores, n_train)


def report(results: dict[str, list[dict]], scores: dict, n_train: int) -> None:
    def best(system: str) -> float | None:
        values = [r["train_tokens_per_s"] for r in results[system]]
        return max(values) if values else None

    print("\n| system | train pairs | tokens | train s | tokens/s | held-out preference accuracy |")
    print("|---|---|---|---|---|---|")
    print(f"| base (no training) | | | | | {scores['base']:.3f} |")
    for system, runs in results.items():
        for i, r in enumerate(runs):
            accuracy = scores.get(f"{system}-{i}")
            print(
                f"| {system} (round {r['round'] if 'round' in r else i}) | {n_train} | {r['train_tokens']} | "
                f"{r['train_s']} | {r['train_tokens_per_s']} | {accuracy:.3f} |"
            )
    ours, theirs = best("tunesmith"), best("trl")
    if ours and theirs:
        print(f"\ntunesmith / TRL tokens per second: {ours / theirs:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
