"""Does a forgetting mitigation keep general ability at no cost to the task? SST-2 LoRA on smollm2-135m (the setup
of bench/sst2_eval.py) with no mitigation, each mitigation alone and combinations, measured on the same rows.

    .venv/bin/python bench/forgetting.py                                   # every setting (~1 h on 2 cores)
    .venv/bin/python bench/forgetting.py --settings none,replay_kl         # some of them
    .venv/bin/python bench/forgetting.py --train-rows 200 --dev-rows 64 --held-out 32   # plumbing check only

Each setting trains through the console script (`tunesmith train configs/sst2-lora.yaml --set ...`, a process of
its own, so peak RSS is the run's), then this process measures, base vs tuned on the same rows:
- SST-2 dev accuracy by label likelihood (the task; 872 rows);
- general ability: loss on held-out Alpaca rows (never trained on, not the replay rows), WikiText-2 test
  perplexity (256-token blocks), and the audit's reference perplexity and KL(base ‖ tuned) (base answers to
  built-in prompts);
- train seconds and peak RSS of the training process (this script never loads torch itself: a child process
  inherits its parent's memory high-water mark on Linux, so measuring happens in a process of its own too).
The "rise" of a general measure is tuned − base (KL: tuned alone, base 0); a setting's "cut" is
1 − rise / rise(no mitigation). Target (issue 19): the best setting keeps dev accuracy within 1 point of no
mitigation and cuts every rise by at least 60%, at most 1.5x the train time. Results: <out>/forgetting.json,
a bar chart <out>/forgetting.png, and the table printed.

Data (read from ../shared/data, derived files under <out>/data): SST-2 as bench/sst2_eval.py; Alpaca sample rows
0-999 are the replay/EWC pool, rows 1000 onward the held-out general set; WikiText-2 test articles.
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

from _sst2 import NAMES, read_jsonl, write_jsonl
from paths import ALPACA, CONFIGS, DATA, SST2

CONFIG = CONFIGS / "sst2-lora.yaml"
WIKITEXT = DATA / "wikitext2" / "wiki.test.articles.jsonl"
REPLAY_POOL = 1000  # Alpaca rows 0..999 may be replayed; the held-out rows come after them

# Each setting: the overrides it adds to the config. {pool} is the Alpaca replay/EWC pool file.
SETTINGS: dict[str, list[str]] = {
    "none": [],
    "replay": ["forgetting.replay.data={pool}", "forgetting.replay.fraction=0.125"],
    "kl_to_base": ["forgetting.kl_to_base.weight=1.0"],
    "ewc": ["forgetting.ewc.weight={ewc}", "forgetting.ewc.data={pool}"],
    "l2_sp": ["forgetting.l2_sp.weight={l2sp}"],
    "replay_kl": [
        "forgetting.replay.data={pool}",
        "forgetting.replay.fraction=0.125",
        "forgetting.kl_to_base.weight=1.0",
    ],
}
GENERAL = ("alpaca_loss", "wikitext_ppl", "reference_ppl", "reference_kl")


def data_files(data: Path) -> dict[str, Path]:
    names = ("train", "val", "dev", "alpaca-pool", "alpaca-held-out", "wikitext")
    return {name.removeprefix("alpaca-").replace("-", "_"): data / f"{name}.jsonl" for name in names}


def make_data(args: argparse.Namespace) -> dict[str, Path]:
    files = data_files(args.out / "data")
    train = read_jsonl(SST2 / "train.jsonl")
    rows = random.Random(args.seed).sample(train, args.train_rows)
    rows = [{"text": r["text"], "label": NAMES[r["label"]]} for r in rows]
    n_val = max(2, args.train_rows // 10)
    dev = [{"text": r["text"], "label": NAMES[r["label"]]} for r in read_jsonl(SST2 / "dev.jsonl")]
    alpaca = read_jsonl(ALPACA)
    write_jsonl(files["train"], rows[n_val:])
    write_jsonl(files["val"], rows[:n_val])
    write_jsonl(files["dev"], dev[: args.dev_rows])
    write_jsonl(files["pool"], alpaca[:REPLAY_POOL])
    write_jsonl(files["held_out"], alpaca[REPLAY_POOL : REPLAY_POOL + args.held_out])
    articles = read_jsonl(WIKITEXT)
    write_jsonl(files["wikitext"], [{"text": a["text"]} for a in articles[: args.wiki_articles]])
    return files


def train(args: argparse.Namespace, name: str, files: dict[str, Path]) -> dict:
    """One setting through the console script; its run folder, train seconds and peak RSS."""
    fill = {"pool": files["pool"], "ewc": args.ewc_weight, "l2sp": args.l2sp_weight}
    sets = [
        f"run.output_dir={args.out}",
        f"run.name={name}",
        f"run.seed={args.seed}",
        f"data.train={files['train']}",
        f"data.val={files['val']}",
        *[s.format(**fill) for s in SETTINGS[name]],
        *args.overrides,
    ]
    command = [str(Path(sys.executable).with_name("tunesmith")), "train", str(CONFIG)]
    for item in sets:
        command += ["--set", item]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    run = args.out / name
    summary = json.loads((run / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "run": str(run),
        "overrides": [s.format(**fill) for s in SETTINGS[name]],
        "steps": summary["steps"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in metrics),
        "train_tokens_per_s": summary["train_tokens_per_s"],
    }


def measure(run: Path, files: dict[str, Path], args: argparse.Namespace) -> dict:
    """Task accuracy and general ability, base and tuned, on the same rows."""
    from tunesmith.data.load import load_examples
    from tunesmith.data.tokenize import encode_examples
    from tunesmith.evaluate.forgetting import distribution_shift, run_forgetting
    from tunesmith.evaluate.label_scoring import accuracy_by_likelihood
    from tunesmith.evaluate.model_pair import load_pair

    pair = load_pair(run)
    cfg = pair.config
    dev = load_examples(files["dev"], cfg.data.format, system_prompt=cfg.data.system_prompt).examples
    labels = sorted({e.target for e in dev})
    out: dict = {}
    for name, ctx in pair.both():
        with ctx as model:
            out[f"dev_accuracy_{name}"], _ = accuracy_by_likelihood(model, pair.tokenizer, dev, labels, 32, bf16=True)
    held_out, _ = encode_examples(pair.tokenizer, load_examples(files["held_out"]).examples, 256)
    wiki, _ = encode_examples(pair.tokenizer, load_examples(files["wikitext"]).examples, 256)
    alpaca = distribution_shift(pair, held_out)
    text = distribution_shift(pair, wiki[: args.wiki_blocks])
    reference = run_forgetting(pair, cfg.audit)
    for name in ("base", "tuned"):
        out[f"alpaca_loss_{name}"] = alpaca[name]["loss"]
        out[f"wikitext_ppl_{name}"] = text[name]["perplexity"]
        out[f"reference_ppl_{name}"] = reference["perplexity"][name]
    out.update(
        alpaca_kl=alpaca["kl_base_tuned"],
        wikitext_kl=text["kl_base_tuned"],
        reference_kl_tuned=reference["kl_base_tuned"],
        reference_kl_base=0.0,
        alpaca_rows=len(held_out),
        wikitext_blocks=len(wiki[: args.wiki_blocks]),
        reference_rows=reference["reference_rows"],
    )
    return out


def measure_apart(run: Path, args: argparse.Namespace) -> dict:
    """`measure` in a process of its own: this one never loads torch or a model, so the training processes it
    starts do not inherit its memory high-water mark (Linux carries ru_maxrss across fork and exec)."""
    out = run / "forgetting-measure.json"
    command = [sys.executable, __file__, "--out", str(args.out), "--measure", str(run)]
    command += ["--wiki-blocks", str(args.wiki_blocks)]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def rises(result: dict) -> dict[str, float]:
    return {m: result[f"{m}_tuned"] - result[f"{m}_base"] for m in GENERAL}


def verdicts(results: dict[str, dict]) -> dict[str, dict]:
    """Per setting: dev accuracy change vs none (points), cut of each rise, train-time ratio, and the target."""
    none = results["none"]
    out = {}
    for name, r in results.items():
        cuts = {m: 1 - rises(r)[m] / rises(none)[m] if rises(none)[m] > 0 else float("nan") for m in GENERAL}
        acc = 100 * (r["dev_accuracy_tuned"] - none["dev_accuracy_tuned"])
        time_ratio = r["train_seconds"] / none["train_seconds"]
        met = acc >= -1 and all(c >= 0.6 for c in cuts.values()) and time_ratio <= 1.5
        out[name] = {"accuracy_vs_none_pts": acc, "cuts": cuts, "train_time_ratio": time_ratio, "target_met": met}
    return out


def table(results: dict[str, dict], judged: dict[str, dict]) -> str:
    head = f"{'setting':<11} {'dev acc':>8} {'Δ pts':>6} " + " ".join(f"{m:>14}" for m in GENERAL)
    head += f" {'train s':>8} {'×time':>6} {'RSS MB':>7} target"
    lines = [head]
    for name, r in results.items():
        j = judged[name]
        cells = [f"{rises(r)[m]:+.3f} ({100 * j['cuts'][m]:+.0f}%)" for m in GENERAL]
        lines.append(
            f"{name:<11} {100 * r['dev_accuracy_tuned']:>7.1f}% {j['accuracy_vs_none_pts']:>+6.1f} "
            + " ".join(f"{c:>14}" for c in cells)
            + f" {r['train_seconds']:>8.0f} {j['train_time_ratio']:>6.2f} {r['peak_rss_mb']:>7} "
            + ("met" if j["target_met"] else "-")
        )
    base = next(iter(results.values()))
    lines.append(
        f"base: dev acc {100 * base['dev_accuracy_base']:.1f}%, Alpaca loss {base['alpaca_loss_base']:.3f}, "
        f"WikiText ppl {base['wikitext_ppl_base']:.2f}, reference ppl {base['reference_ppl_base']:.3f}. Cells: rise "
        "(tuned - base) and, in brackets, the share of the no-mitigation rise it cuts."
    )
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GENERAL) + 1, figsize=(16, 3.6), dpi=110)
    names = list(results)
    axes[0].bar(names, [100 * results[n]["dev_accuracy_tuned"] for n in names], color="#4c72b0")
    axes[0].set_title("SST-2 dev accuracy (%)")
    axes[0].set_ylim(min(100 * results[n]["dev_accuracy_tuned"] for n in names) - 5, 100)
    for ax, metric in zip(axes[1:], GENERAL, strict=True):
        ax.bar(names, [rises(results[n])[metric] for n in names], color="#dd8452")
        ax.set_title(f"rise of {metric}")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/forgetting"))
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated; 'none' always runs")
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--dev-rows", type=int, default=None, help="first N dev rows (default: all 872)")
    parser.add_argument("--held-out", type=int, default=150, help="held-out Alpaca rows")
    parser.add_argument("--wiki-articles", type=int, default=8)
    parser.add_argument("--wiki-blocks", type=int, default=48)
    parser.add_argument("--ewc-weight", type=float, default=1.0)
    parser.add_argument("--l2sp-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=c")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: measure this run, write JSON
    args = parser.parse_args()
    if args.measure:
        files = data_files(args.out / "data")
        (args.measure / "forgetting-measure.json").write_text(json.dumps(measure(args.measure, files, args)))
        return
    names = ["none", *[n for n in args.settings.split(",") if n and n != "none"]]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    files = make_data(args)
    results_path = args.out / "forgetting.json"
    results: dict[str, dict] = json.loads(results_path.read_text())["results"] if results_path.is_file() else {}
    load = os.getloadavg()
    for name in names:
        if name in results:
            print(f"{name}: measured before, kept ({results_path})")
            continue
        print(f"== {name}: training", flush=True)
        trained = train(args, name, files)
        print(f"== {name}: measuring", flush=True)
        results[name] = {**trained, **measure_apart(Path(trained["run"]), args)}
        results_path.write_text(json.dumps({"results": results}, indent=1))
    judged = verdicts({n: results[n] for n in names})
    print(table({n: results[n] for n in names}, judged))
    print(f"load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}")
    results_path.write_text(json.dumps({"results": results, "verdicts": judged, "load_start": load}, indent=1))
    plot({n: results[n] for n in names}, args.out / "forgetting.png")
    print(f"wrote {results_path} and {args.out / 'forgetting.png'}")


if __name__ == "__main__":
    main()
