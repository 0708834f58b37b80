"""Does `tunesmith tune` find as good a configuration as a full grid, for a fraction of its compute?

    .venv/bin/python bench/hpo.py                        # grid lr x r, then TPE + pruning with 3 seeds, SST-2
    .venv/bin/python bench/hpo.py --train-rows 64 --val-rows 16 --dev-rows 64 --lrs 3e-4 1e-3 --ranks 4 8 \
        --seeds 0 --tpe-budget 0.5 --pareto-trials 2          # plumbing check, not a result

SST-2 (read from /work/shared/data/sst2, derived files in runs/hpo-bench/data/) with smollm2-135m LoRA sft, label
words: train on a seeded subset of SST-2 train, select on a validation slice of train (accuracy by label likelihood
on all its rows at every validation pass, `train.eval_scoring: auto`), and score each study's best trial once on
the 872-row dev set (label likelihood). Studies, each a `tunesmith tune` process as a user runs it, one after
another:
1. a full grid over lr x r (pruner none): its best dev accuracy and its optimizer steps (every trial's steps);
2. TPE + a pruner (--pruner, --warmup-evals) over the same space (lr log-uniform over the grid's range, r its
   choices), one study per seed, each stopped when its optimizer steps reach `--tpe-budget` of the grid's;
3. the shipped default config (configs/sst2-lora.yaml's method and lr) trained once, for comparison;
4. a two-objective study (accuracy up, peak RSS down; batch size and r searched) and its Pareto front.
Peak RSS per trial (reset at each trial start) shows whether memory leaks from trial to trial.
Results: runs/hpo-bench/hpo-results-<pruner>-w<warmup>.json and a printed summary. A rerun reuses the finished
grid, default and Pareto studies (same config: no new trials) and runs only TPE studies of new settings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _sst2 import NAMES, read_jsonl, write_jsonl
from paths import CONFIGS, SST2

SYSTEM = "Classify the sentiment of the movie review. Answer positive or negative."


def make_data(args: argparse.Namespace, data_dir: Path) -> None:
    rows = random.Random(args.seed).sample(read_jsonl(SST2 / "train.jsonl"), args.train_rows + args.val_rows)
    rows = [{"text": r["text"], "label": NAMES[r["label"]]} for r in rows]
    write_jsonl(data_dir / "train.jsonl", rows[args.val_rows :])
    write_jsonl(data_dir / "val.jsonl", rows[: args.val_rows])
    dev = [{"text": r["text"], "label": NAMES[r["label"]]} for r in read_jsonl(SST2 / "dev.jsonl")]
    write_jsonl(data_dir / "dev.jsonl", dev[: args.dev_rows] if args.dev_rows else dev)


def base_config(args: argparse.Namespace, data_dir: Path, out: Path) -> dict:
    return {
        "run": {"output_dir": str(out), "seed": 0},
        "model": {"name": "smollm2-135m"},
        "data": {
            "train": str(data_dir / "train.jsonl"),
            "val": str(data_dir / "val.jsonl"),
            "format": "text_label",
            "max_length": 128,
            "system_prompt": SYSTEM,
            "check": {"errors": ["schema"]},
        },
        "method": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 5e-4,
            "eval_every": args.eval_every,
            "save_every": 100000,
            "keep_checkpoints": 1,
            "eval_metrics": ["accuracy"],
            "eval_rows": args.val_rows,
        },
        "eval": {"batch_size": 32, "shots": [0], "max_examples": 16},
        "tune": {"objective": "accuracy", "test": str(data_dir / "dev.jsonl")},
    }


def study(base: dict, out: Path, name: str, tune: dict) -> dict:
    """Run one study through the console script, as a user does (jemalloc preloaded, one line per trial); returns
    its trials (number, state, params, values, steps, peak RSS)."""
    from optuna.trial import TrialState

    from tunesmith.tune.runner import plan_study
    from tunesmith.tune.study import load_study

    config = out / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**base, "tune": {**base["tune"], **tune, "study": name}}))
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("tunesmith")), "tune", str(config)], check=True)
    plan, cfg = plan_study(str(config), [])
    result = load_study(plan, cfg.train.eval_every)
    trials = []
    for t in result.get_trials():
        run = Path(t.user_attrs.get("run", ""))
        metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if run.is_dir() else []
        trials.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "params": t.params,
                "values": t.user_attrs.get("values", {}),
                "steps": t.user_attrs.get("steps", 0),
                "peak_rss_mb": max((m.get("peak_rss_mb", 0) for m in metrics), default=None),
                "run": str(run),
            }
        )
    complete = [t for t in result.get_trials() if t.state == TrialState.COMPLETE]
    best = result.best_trial if complete else None
    return {
        "name": name,
        "seconds": round(time.perf_counter() - started, 1),
        "trials": trials,
        "steps": sum(t["steps"] for t in trials),
        "best": {"number": best.number, "params": best.params, "val_accuracy": best.value} if best else None,
        "best_run": best.user_attrs["run"] if best else None,
    }


def dev_accuracy(run: str, dev: Path) -> float:
    from tunesmith.evaluate.runner import evaluate_run

    report = evaluate_run(Path(run), str(dev))
    return report["tuned"]["label_likelihood"]["metrics"]["accuracy"]


def grid_values(args: argparse.Namespace) -> dict:
    return {
        "train.lr": {"type": "categorical", "choices": args.lrs},
        "method.r": {"type": "categorical", "choices": args.ranks},
    }


def tpe_studies(args: argparse.Namespace, base: dict, out: Path, grid_steps: int, dev: Path) -> list[dict]:
    space = {
        "train.lr": {"type": "log_uniform", "low": min(args.lrs), "high": max(args.lrs)},
        "method.r": {"type": "categorical", "choices": args.ranks},
    }
    results = []
    for seed in args.seeds:
        name = f"tpe-{args.pruner}-w{args.warmup_evals}-seed{seed}"
        found = study(
            base,
            out,
            name,
            {
                "space": space,
                "sampler": "tpe",
                "pruner": args.pruner,
                "seed": seed,
                "trials": args.max_tpe_trials,
                "step_budget": int(args.tpe_budget * grid_steps),
                "startup_trials": args.startup_trials,
                "warmup_evals": args.warmup_evals,
            },
        )
        found["dev_accuracy"] = dev_accuracy(found["best_run"], dev) if found["best_run"] else None
        found["steps_share_of_grid"] = round(found["steps"] / grid_steps, 3)
        results.append(found)
        print(
            f"{name}: {len(found['trials'])} trials, {found['steps']} steps "
            f"({found['steps_share_of_grid']:.0%} of grid), best {found['best']}, dev {found['dev_accuracy']}"
        )
    return results


def pareto_study(args: argparse.Namespace, base: dict, out: Path) -> dict:
    """Accuracy up, peak RSS down (batch size, r and lr searched): the study, its front and its tune.html."""
    from tunesmith.tune.page import write_page
    from tunesmith.tune.results import find_study, pareto_front

    found = study(
        base,
        out,
        "pareto",
        {
            "space": {
                "train.batch_size": {"type": "categorical", "choices": [4, 8, 16, 32]},
                "method.r": {"type": "categorical", "choices": args.ranks},
                "train.lr": {"type": "log_uniform", "low": min(args.lrs), "high": max(args.lrs)},
            },
            "objective": ["accuracy", "peak_rss_mb"],
            "sampler": "random",
            "pruner": "none",
            "trials": args.pareto_trials,
        },
    )
    opened = find_study(str(out / "pareto"))
    front = [t.number for t in pareto_front(opened.study.get_trials(), opened.objectives)]
    return {"study": found, "front": front, "page": str(write_page(opened))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/hpo-bench"))
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--val-rows", type=int, default=256)
    parser.add_argument("--dev-rows", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=8)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tpe-budget", type=float, default=0.25, help="share of the grid's optimizer steps")
    parser.add_argument("--startup-trials", type=int, default=2)
    parser.add_argument("--pruner", default="successive_halving", help="the TPE studies' pruner")
    parser.add_argument("--warmup-evals", type=int, default=1, help="validation passes never pruned")
    parser.add_argument("--max-tpe-trials", type=int, default=30)
    parser.add_argument("--pareto-trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from tunesmith.logs import capture_library_output

    capture_library_output(verbose=False)  # library bars and warnings to the runs' log.txt, as the CLI does
    out = args.out.resolve()
    data_dir = out / "data"
    make_data(args, data_dir)
    base = base_config(args, data_dir, out)
    dev = data_dir / "dev.jsonl"
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    grid = study(
        base,
        out,
        "grid",
        {"space": grid_values(args), "sampler": "grid", "pruner": "none", "trials": len(args.lrs) * len(args.ranks)},
    )
    grid["dev_accuracy"] = dev_accuracy(grid["best_run"], dev)
    rss = [t["peak_rss_mb"] for t in grid["trials"] if t["peak_rss_mb"]]
    print(f"grid: {len(grid['trials'])} trials, {grid['steps']} steps, best {grid['best']}, dev {grid['dev_accuracy']}")
    tpe = tpe_studies(args, base, out, grid["steps"], dev)

    default = yaml.safe_load((CONFIGS / "sst2-lora.yaml").read_text())
    shipped = study(
        base,
        out,
        "shipped-default",
        {
            "space": {
                "train.lr": {"type": "categorical", "choices": [default["train"]["lr"]]},
                "method.r": {"type": "categorical", "choices": [default["method"]["r"]]},
            },
            "sampler": "grid",
            "pruner": "none",
            "trials": 1,
        },
    )
    shipped["dev_accuracy"] = dev_accuracy(shipped["best_run"], dev)

    pareto = pareto_study(args, base, out) if args.pareto_trials else None
    tpe_dev = [t["dev_accuracy"] for t in tpe if t["dev_accuracy"] is not None]
    tpe_share = [t["steps_share_of_grid"] for t in tpe]
    end_load = os.getloadavg()
    results = {
        "settings": vars(args) | {"out": str(args.out)},
        "load_average": {"start": load, "end": end_load},
        "grid": grid,
        "tpe": tpe,
        "shipped_default": shipped,
        "pareto": pareto,
        "peak_rss_mb": {
            "trial_1": rss[0] if rss else None,
            "trial_20": rss[19] if len(rss) >= 20 else None,
            "all": rss,
        },
        "median_tpe_dev_accuracy": statistics.median(tpe_dev) if tpe_dev else None,
        "median_tpe_steps_share": statistics.median(tpe_share) if tpe_share else None,
    }
    (out / f"hpo-results-{args.pruner}-w{args.warmup_evals}.json").write_text(
        json.dumps(results, indent=2, default=str)
    )
    print(
        json.dumps(
            {k: results[k] for k in ("median_tpe_dev_accuracy", "median_tpe_steps_share", "peak_rss_mb")}, default=str
        )
    )
    print(
        f"grid best dev {grid['dev_accuracy']:.4f}; shipped default dev {shipped['dev_accuracy']:.4f}; "
        f"pareto front trials {pareto['front'] if pareto else None}; load average at end {end_load[0]:.2f}"
    )


if __name__ == "__main__":
    main()
