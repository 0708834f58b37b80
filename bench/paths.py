"""Where the benches find the repository, the shared data and the shared anchor scripts: defined once here.

Every bench script runs as `python bench/<script>.py`, so `bench/` is on sys.path and `from paths import ...` works
in it, in the helper modules it imports, and in the worker processes it starts with `sys.executable <file>`.
The data files are described in ../shared/data/README.md.
"""

from __future__ import annotations

from pathlib import Path

# The repository (this file's parent's parent) and its folders the benches read or write.
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DOCS = ROOT / "docs"
RUNS = ROOT / "runs"

# The shared folder next to the repository, and its data folder.
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"

# Datasets: the 2,000-row Alpaca sample, the SST-2 folder with its train (67,349) and dev (872) files, CrowS-Pairs.
ALPACA = DATA / "alpaca" / "alpaca_sample_2000.jsonl"
SST2 = DATA / "sst2"
SST2_TRAIN = SST2 / "train.jsonl"
SST2_DEV = SST2 / "dev.jsonl"
CROWS = DATA / "crows_pairs" / "crows_pairs.jsonl"

# The anchors: TRL SFTTrainer training (bench/sft_speed.py runs it) and plain transformers scoring.
SHARED_BENCH = SHARED / "bench"
TRL_SCRIPT = SHARED_BENCH / "trl_baseline.py"
PLAIN_SCORING = SHARED_BENCH / "plain_scoring.py"
