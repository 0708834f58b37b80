"""SFT speed against the anchor: tunesmith vs TRL's SFTTrainer (defaults + LoRA), same data/model/hyperparameters.

    python bench/sft_speed.py            # full: 400 train rows, 100 eval rows (TRL alone takes ~8 min here)
    python bench/sft_speed.py --quick    # 96 train rows, 32 eval rows: under 10 minutes in all

Each system runs in its own subprocess (clean peak RSS), alternating order across rounds. Throughput is
non-padding tokens of the tokenized train set divided by train wall time, as in ../shared/bench/trl_baseline.py.
tunesmith builds its fused ops (`train.fused_ops`: torch.compile, then a check against the model's own code)
before its training clock starts, as TRL loads and wraps its model before `train()`; the table also gives
tunesmith's throughput with that build counted.

MFU = achieved model FLOP/s ÷ a bf16 matmul peak measured in the same run. Useful FLOPs of a LoRA run over T
non-padding tokens, with the base frozen (padding and recomputation are not counted):
- base linears: forward 2·N_body·T plus backward through the activations 2·N_body·T (no base weight gradients);
  N_body = parameters outside the embeddings;
- adapters: 6·N_lora·T (forward, activation gradients and weight gradients of the trainable parameters);
- lm_head: 4·V·d per supervised token (tunesmith computes logits only there; counting the same useful FLOPs for
  TRL, which computes them everywhere, is the fair comparison);
- causal attention: per layer and example of S tokens, QKᵀ and PV cost 2·d·S(S+1) forward and twice that
  backward (gradients for Q, K and V), so 6·L·d·Σ S(S+1) in all.
Runs recorded before 2026-11-29 21:00 used 4·L·d·T·S̄ for attention (backward counted once, S̄ the mean
length instead of the per-example sum of squares) and left the adapters out; each run's JSON line also gives
that figure (`mfu_old_formula`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paths import ALPACA, ROOT, TRL_SCRIPT


def bf16_matmul_peak(trials: int = 5, seconds: float = 1.0, size: int = 2048) -> float:
    """Measured bf16 matmul GFLOP/s with torch's default threads: the best of several 1-second trials."""
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    best = 0.0
    for _ in range(trials):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            n += 1
        best = max(best, 2 * size**3 * n / (time.perf_counter() - start) / 1e9)
    return best


def write_splits(folder: Path, n_train: int, n_eval: int) -> tuple[Path, Path]:
    lines = ALPACA.read_text().splitlines()
    train, evald = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("\n".join(lines[:n_train]) + "\n")
    evald.write_text("\n".join(lines[n_train : n_train + n_eval]) + "\n")
    return train, evald


def run_json(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run a command and return the last JSON line it printed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[1]} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def run_trl(model_dir: str, train: Path, evald: Path, n_train: int, n_eval: int) -> dict:
    return run_json([sys.executable, str(TRL_SCRIPT), model_dir, str(train), str(evald), str(n_train), str(n_eval)])


def run_tunesmith(train: Path, evald: Path, n_eval: int, out: Path, extra: list[str]) -> dict:
    """The worker runs with the allocator `tunesmith train` would restart with (jemalloc when installed)."""
    from tunesmith.allocator import find_jemalloc, preload_env

    env = preload_env(os.environ, find_jemalloc())
    return run_json(
        [
            sys.executable,
            str(Path(__file__).with_name("_sft_speed_worker.py")),
            str(train),
            str(evald),
            str(n_eval),
            str(out),
            *extra,
        ],
        env,
    )


def model_flops(model_dir: str, run: dict, legacy: bool = False) -> float:
    """Useful training FLOPs of a LoRA run (see the module docstring); `legacy`: the formula used before."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    d, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    body = (d * d * 2 + d * kv * 2 + 3 * d * cfg.intermediate_size) * layers
    tokens, head = run["train_tokens"], 4 * vocab * d * run["supervised_tokens"]
    if legacy:
        return 4 * body * tokens + head + 4 * layers * d * tokens * tokens / run["n_train"]
    pairs = run["sum_sq_len"] + tokens  # Σ S(S+1)
    return 4 * body * tokens + 6 * run["trainable_params"] * tokens + head + 6 * layers * d * pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="96 train / 32 eval rows")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both systems")
    parser.add_argument("--skip-trl", action="store_true", help="only tunesmith (for lever experiments)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="tunesmith config override")
    args = parser.parse_args()
    n_train, n_eval = (96, 32) if args.quick else (400, 100)

    from tunesmith.models import resolve_model

    model_dir = resolve_model("smollm2-135m")
    peak = bf16_matmul_peak()
    print(f"bf16 matmul peak: {peak:.0f} GFLOP/s ({os.cpu_count()} cores)", flush=True)
    results: dict[str, list[dict]] = {"trl": [], "tunesmith": []}
    with tempfile.TemporaryDirectory(prefix="sft_speed_") as tmp:
        train, evald = write_splits(Path(tmp), n_train, n_eval)
        for round_ in range(args.rounds):
            order = ["trl", "tunesmith"] if round_ % 2 == 0 else ["tunesmith", "trl"]
            for system in order:
                if system == "trl" and args.skip_trl:
                    continue
                if system == "trl":
                    res = run_trl(model_dir, train, evald, n_train, n_eval)
                else:
                    res = run_tunesmith(train, evald, n_eval, Path(tmp) / f"runs{round_}", args.overrides)
                    res["mfu"] = model_flops(model_dir, res) / res["train_s"] / (peak * 1e9)
                    res["mfu_old_formula"] = model_flops(model_dir, res, legacy=True) / res["train_s"] / (peak * 1e9)
                print(json.dumps({"round": round_, **res}), flush=True)
                results[system].append(res)
    report(results, peak)


def report(results: dict[str, list[dict]], peak: float) -> None:
    def best(system: str, key: str, fn=max) -> float | None:
        values = [r[key] for r in results[system] if key in r]
        return fn(values) if values else None

    ours_tps, trl_tps = best("tunesmith", "train_tokens_per_s"), best("trl", "train_tokens_per_s")
    ours_rss, trl_rss = best("tunesmith", "peak_rss_mb", min), best("trl", "peak_rss_mb", min)
    ours_loss, trl_loss = best("tunesmith", "eval_loss", min), best("trl", "eval_loss", min)
    print("\n| metric | TRL SFTTrainer | tunesmith | ratio / target |\n|---|---|---|---|")
    print(
        f"| train tokens/s | {trl_tps} | {ours_tps} | "
        f"{(ours_tps / trl_tps if trl_tps else float('nan')):.2f}x (target >= 4.0) |"
    )
    with_setup = best("tunesmith", "train_tokens_per_s_with_setup")
    if with_setup is not None and trl_tps:
        print(f"| train tokens/s, fused-ops build counted | {trl_tps} | {with_setup} | {with_setup / trl_tps:.2f}x |")
    print(
        f"| peak RSS MB | {trl_rss} | {ours_rss} | "
        f"{(ours_rss / trl_rss if trl_rss else float('nan')):.2f}x (target <= 0.5) |"
    )
    print(
        f"| eval loss | {trl_loss} | {ours_loss} | "
        f"{(ours_loss - trl_loss if trl_loss else float('nan')):+.4f} (target <= +0.02) |"
    )
    print(f"| MFU | - | {best('tunesmith', 'mfu'):.1%} | target >= 40% of {peak:.0f} GFLOP/s |")
    print(f"| MFU, formula before 2026-11-29 21:00 | - | {best('tunesmith', 'mfu_old_formula'):.1%} | |")


if __name__ == "__main__":
    main()
