"""SST-2 as the SST-2 benches read it: label words and JSONL helpers (the data folder is `paths.SST2`)."""

from __future__ import annotations

import json
from pathlib import Path

NAMES = {0: "negative", 1: "positive"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
