"""`tunesmith data check` on 100k rows, near-duplicate search included: wall time of the real command.

    python bench/data_check.py [--rows 100000] [--keep DIR]

The rows are SST-2 train (67,349) plus perturbed copies of random SST-2 rows (one or two word edits or typos)
up to `--rows`, written to a temporary folder (never into the repo); SST-2 dev is the validation file. The
command runs with `--no-tokenizer` (token counting is a separate cost: about the cost of tokenizing for
training). Target: under 60 s on 2 cores. CPU time is printed too: on a shared machine it is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paths import SST2_DEV, SST2_TRAIN


def perturb(rng: random.Random, text: str, vocab: list[str]) -> str:
    """One or two edits: a word replaced, dropped or added, or two letters swapped."""
    words = text.split()
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0:
            words[i] = rng.choice(vocab)
        elif op == 1 and len(words) > 2:
            del words[i]
        elif op == 2:
            words.insert(i, rng.choice(vocab))
        elif len(words[i]) > 2:
            j = rng.randrange(len(words[i]) - 1)
            words[i] = words[i][:j] + words[i][j + 1] + words[i][j] + words[i][j + 2 :]
    return " ".join(words)


def write_rows(path: Path, total: int, seed: int = 0) -> int:
    """SST-2 train plus perturbed copies up to `total` rows; returns the number of planted copies."""
    rng = random.Random(seed)
    rows = [json.loads(line) for line in SST2_TRAIN.read_text().splitlines()]
    vocab = sorted({word for row in rows[:5000] for word in row["text"].split() if word.isalpha()})
    extra = max(0, total - len(rows))
    rows += [{**row, "text": perturb(rng, row["text"], vocab)} for row in rng.choices(rows[: len(rows)], k=extra)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows[:total]))
    return extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="Keep the data and report in this folder")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="tunesmith-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    data, report = folder / "train.jsonl", folder / "report.json"
    planted = write_rows(data, args.rows)
    tunesmith = str(Path(sys.executable).with_name("tunesmith"))
    command = [tunesmith, "data", "check", str(data), "--val", str(SST2_DEV), "--no-tokenizer"]
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([*command, "--json", str(report)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if result.returncode not in (0, 1):
        sys.exit(f"data check failed ({result.returncode}): {result.stderr.strip()}")
    counts = json.loads(report.read_text())
    print(
        f"data check on {args.rows:,} rows ({planted:,} perturbed copies) + 872 val rows: {wall:.1f}s wall, "
        f"{cpu_s:.1f}s CPU (the checks alone {counts['seconds']:.1f}s wall) · target < 60s wall · "
        f"findings {counts['counts']}"
    )


if __name__ == "__main__":
    main()
