"""Model registry at scale: register N versions, list them, and time promote and rollback, on SQLite and on a
throwaway PostgreSQL server (initdb + pg_ctl; skipped with the reason where the binaries are missing).

    python bench/registry.py                 # 1,000 versions on each database
    python bench/registry.py --versions 200 --databases sqlite

Each version is a small run folder (config, summary, data check, a 16 KB safetensors adapter with its own
weights), so every `add` hashes and copies real files into the weight store. Prints per database: add
median/p95 ms, list of all versions ms, promote and rollback median/p95 ms over 50 of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import save_file

from tunesmith.databases import local_postgres, postgres_missing
from tunesmith.model_registry.store import Registry


def fake_run(root: Path, i: int) -> Path:
    run = root / f"run-{i:05d}"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  name: smollm2-135m\ntrain:\n  lr: {1e-4 * (1 + i % 7)}\n")
    summary = {"task": "sft", "model": "smollm2-135m", "method": "lora", "tuned_val_loss": 1.0 / (i + 1)}
    (run / "summary.json").write_text(json.dumps(summary))
    save_file({"lora_A": torch.full((64, 64), float(i))}, run / "adapter" / "adapter_model.safetensors")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    return run


def percentiles(ms: list[float]) -> str:
    ordered = sorted(ms)
    return f"median {statistics.median(ordered):.1f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms"


def measure(url: str | None, folder: Path, versions: int) -> None:
    registry = Registry(url or str(folder / "registry.db"), folder / "store")
    runs = [fake_run(folder / "runs", i) for i in range(versions)]
    adds = []
    for run in runs:
        started = time.perf_counter()
        registry.add(run, "bench")
        adds.append(1000 * (time.perf_counter() - started))
    started = time.perf_counter()
    listed = registry.list("bench")
    list_ms = 1000 * (time.perf_counter() - started)
    promotes, rollbacks = [], []
    for i in range(50):
        started = time.perf_counter()
        registry.promote("bench", 1 + (i * 37) % versions)
        promotes.append(1000 * (time.perf_counter() - started))
        if i % 2:
            started = time.perf_counter()
            registry.rollback("bench")
            rollbacks.append(1000 * (time.perf_counter() - started))
    champions = sum(v.stage == "champion" for v in registry.list("bench"))
    registry.close()
    print(f"  add: {percentiles(adds)} ({len(listed)} versions listed in {list_ms:.0f} ms)")
    print(f"  promote: {percentiles(promotes)}; rollback: {percentiles(rollbacks)}; champions at the end: {champions}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    for database in args.databases:
        if database == "postgresql" and (reason := postgres_missing()):
            print(f"postgresql: skipped ({reason})", file=sys.stderr)
            continue
        server = local_postgres() if database == "postgresql" else nullcontext(None)
        with tempfile.TemporaryDirectory() as tmp, server as url:
            print(f"{database}: {args.versions} versions")
            measure(url, Path(tmp), args.versions)


if __name__ == "__main__":
    main()
