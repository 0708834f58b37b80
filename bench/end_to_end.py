"""Time to a verified model: train, then evaluate base and tuned, against the plain stack a user would write.

    python bench/end_to_end.py                                # 1,000 SST-2 train rows, the 872 dev rows
    python bench/end_to_end.py --train-rows 300 --dev-rows 300 # a shorter run (state it with the figures)

SST-2 (../shared/data/sst2) with the label words negative/positive, smollm2-135m, LoRA r=16 on all linears.
- tunesmith: `tunesmith train configs/sst2-lora.yaml` (shots [0]), then `tunesmith eval RUN --data dev --no-cache`
  (base 0-shot and tuned; label likelihood on every dev row, greedy generation of 6 tokens on every dev row);
- the plain stack: TRL SFTTrainer with its defaults + LoRA (`_trl_sst2_worker.py`, saving the adapter), then
  `../shared/bench/plain_scoring.py` on the base and on base + adapter (one forward per row and label, `generate`
  per row).
Each phase is a fresh process timed from outside (what a user waits for, model loading included). Rounds
alternate which stack goes first. Also: tuned/base label-likelihood speed, and the MFU of tunesmith's label
scoring (useful forward FLOPs: 2·N_body per prompt token once and per label token per candidate, plus the
lm_head at the label positions) against a bf16 matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from _sst2 import NAMES, read_jsonl, write_jsonl
from paths import CONFIGS, PLAIN_SCORING, ROOT, SST2
from sft_speed import bf16_matmul_peak

CONFIG = CONFIGS / "sst2-lora.yaml"
SYSTEM = "Classify the sentiment of the movie review. Answer positive or negative."
NEW_TOKENS = 6  # as plain_scoring.py generates


def make_data(out: Path, train_rows: int, dev_rows: int | None, seed: int) -> dict[str, Path]:
    rows = random.Random(seed).sample(read_jsonl(SST2 / "train.jsonl"), train_rows)
    rows = [{"text": r["text"], "label": NAMES[r["label"]]} for r in rows]
    n_val = max(2, train_rows // 10)
    dev = [{"text": r["text"], "label": NAMES[r["label"]]} for r in read_jsonl(SST2 / "dev.jsonl")]
    files = {
        "train": out / "data" / "train.jsonl",
        "val": out / "data" / "val.jsonl",
        "dev": out / "data" / "dev.jsonl",
    }
    write_jsonl(files["train"], rows[n_val:])
    write_jsonl(files["val"], rows[:n_val])
    write_jsonl(files["dev"], dev[:dev_rows] if dev_rows else dev)
    return files


def timed(cmd: list[str], log: Path) -> tuple[float, str]:
    """Run `cmd`, its stderr to `log`; (wall seconds, stdout). A failure stops the bench with the log's tail."""
    started = time.perf_counter()
    with log.open("w") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"{' '.join(cmd[:3])}... failed ({done.returncode}); see {log}:\n{log.read_text()[-1500:]}")
    return time.perf_counter() - started, done.stdout


def run_tunesmith(files: dict[str, Path], out: Path, name: str, dev_rows: int) -> dict:
    tunesmith = str(Path(sys.executable).with_name("tunesmith"))
    sets = [
        f"data.train={files['train']}",
        f"data.val={files['val']}",
        f"run.output_dir={out}",
        f"run.name={name}",
        "eval.shots=[0]",
        f"eval.max_examples={dev_rows}",
        f"eval.max_new_tokens={NEW_TOKENS}",
    ]
    train_s, _ = timed([tunesmith, "train", str(CONFIG), *(x for s in sets for x in ("--set", s))], out / f"{name}.log")
    run = out / name
    eval_s, _ = timed(
        [tunesmith, "eval", str(run), "--data", str(files["dev"]), "--no-cache"], out / f"{name}-eval.log"
    )
    report = json.loads((run / "eval.json").read_text())
    systems = {s["name"]: s for s in report["systems"]}
    summary = json.loads((run / "summary.json").read_text())
    return {
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "total_s": round(train_s + eval_s, 1),
        "train_tokens_per_s": summary["train_tokens_per_s"],
        "padding_fraction": summary.get("train_padding_fraction"),
        **{
            f"{who}_{how}": {
                "accuracy": systems[key][how]["metrics"]["accuracy"],
                "rows_per_s": systems[key][how]["rows_per_s"],
                "seconds": systems[key][how]["seconds"],
            }
            for who, key in (("base", "base 0-shot"), ("tuned", "tuned"))
            for how in ("label_likelihood", "generation")
        },
    }


def run_plain(files: dict[str, Path], out: Path, name: str, model_dir: str) -> dict:
    adapter = out / f"{name}-adapter"
    worker = str(Path(__file__).with_name("_trl_sst2_worker.py"))
    train_s, stdout = timed(
        [sys.executable, worker, model_dir, str(files["train"]), SYSTEM, str(adapter)], out / f"{name}.log"
    )
    result = {"train_s": round(train_s, 1), "trl": json.loads(stdout.strip().splitlines()[-1])}
    total = train_s
    for who, extra in (("base", []), ("tuned", ["--adapter", str(adapter)])):
        cmd = [sys.executable, str(PLAIN_SCORING), model_dir, str(files["dev"]), "--system", SYSTEM, *extra]
        seconds, stdout = timed(cmd, out / f"{name}-{who}.log")
        result[f"{who}_eval_s"] = round(seconds, 1)
        result[who] = json.loads(stdout.strip().splitlines()[-1])
        total += seconds
    result["eval_s"] = round(result["base_eval_s"] + result["tuned_eval_s"], 1)
    result["total_s"] = round(total, 1)
    return result


def scoring_mfu(files: dict[str, Path], rows_per_s: float, peak_gflops: float, model_dir: str) -> float:
    """Useful forward FLOP/s of tunesmith's label scoring over the measured peak (module docstring)."""
    from transformers import AutoModelForCausalLM

    from tunesmith.config import load_config
    from tunesmith.data.tokenize import load_chat_tokenizer
    from tunesmith.evaluate.label_scoring import encode_candidates

    cfg = load_config(CONFIG, [f"data.train={files['train']}", f"data.val={files['val']}"])
    tokenizer = load_chat_tokenizer(cfg)
    dev = read_jsonl(files["dev"])
    labels = sorted({r["label"] for r in dev})
    prompt_tokens = label_tokens = 0
    for r in dev:
        c = encode_candidates(
            tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["text"]}], labels
        )
        prompt_tokens += len(c.prefix)
        label_tokens += sum(len(s) for s in c.suffixes)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    embed = model.get_input_embeddings().weight
    body = sum(p.numel() for p in model.parameters()) - embed.numel()
    flops = 2 * body * (prompt_tokens + label_tokens) + 2 * embed.numel() * label_tokens
    seconds = len(dev) / rows_per_s
    return flops / seconds / (peak_gflops * 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--dev-rows", type=int, default=None, help="first N dev rows (default: all 872)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "end-to-end")
    args = parser.parse_args()

    from tunesmith.models.resolve import resolve_model

    model_dir = resolve_model("smollm2-135m")
    files = make_data(args.out, args.train_rows, args.dev_rows, args.seed)
    dev_rows = len(read_jsonl(files["dev"]))
    peak = bf16_matmul_peak()
    print(f"bf16 matmul peak: {peak:.0f} GFLOP/s · {args.train_rows} train rows · {dev_rows} dev rows", flush=True)
    results: dict[str, list[dict]] = {"tunesmith": [], "plain": []}
    stamp = time.strftime("%H%M%S")
    for round_no in range(args.rounds):
        order = ["tunesmith", "plain"] if round_no % 2 == 0 else ["plain", "tunesmith"]
        for system in order:
            name = f"{system}-{stamp}-r{round_no}"
            result = (
                run_tunesmith(files, args.out, name, dev_rows)
                if system == "tunesmith"
                else run_plain(files, args.out, name, model_dir)
            )
            results[system].append(result)
            print(json.dumps({"round": round_no, "system": system, **result}), flush=True)
    best = {k: min(v, key=lambda r: r["total_s"]) for k, v in results.items()}
    ours, plain = best["tunesmith"], best["plain"]
    mfu = scoring_mfu(files, ours["tuned_label_likelihood"]["rows_per_s"], peak, model_dir)
    tuned_vs_base = ours["tuned_label_likelihood"]["rows_per_s"] / ours["base_label_likelihood"]["rows_per_s"]
    print()
    print("| phase | plain stack | tunesmith | plain / tunesmith |")
    print("|---|---|---|---|")
    for phase in ("train_s", "eval_s", "total_s"):
        print(f"| {phase[:-2]} (s) | {plain[phase]:.0f} | {ours[phase]:.0f} | {plain[phase] / ours[phase]:.2f}x |")
    for who in ("base", "tuned"):
        print(
            f"| {who} accuracy, label likelihood / generation | {plain[who]['likelihood_accuracy']:.3f} / "
            f"{plain[who]['generation_accuracy']:.3f} | {ours[f'{who}_label_likelihood']['accuracy']:.3f} / "
            f"{ours[f'{who}_generation']['accuracy']:.3f} | |"
        )
        print(
            f"| {who} label-likelihood rows/s | {plain[who]['likelihood_rows_per_s']:.1f} | "
            f"{ours[f'{who}_label_likelihood']['rows_per_s']:.1f} | "
            f"{ours[f'{who}_label_likelihood']['rows_per_s'] / plain[who]['likelihood_rows_per_s']:.1f}x faster |"
        )
    print(f"\ntuned / base label-likelihood speed: {tuned_vs_base:.2f} (target >= 0.90)")
    print(f"label scoring MFU (tuned, forward only): {mfu:.1%} of {peak:.0f} GFLOP/s (target >= 60%)")
    print(f"end to end: {plain['total_s'] / ours['total_s']:.2f}x the plain stack (target >= 6)")


if __name__ == "__main__":
    main()
