"""Scenario 15 of RELIABILITY.md, determinism: the same seed gives the same loss curve and bit-identical weights;
another seed gives other weights.

- In one process, two runs with one seed (LoRA, with its dropout on, and full fine-tuning): every metrics.jsonl
  number but wall-clock ones, and every tensor of the last checkpoint (weights, optimizer, RNG), best/ and the
  export, are identical.
- Across processes: two `tunesmith train` runs of the console script with different PYTHONHASHSEED values
  (so any iteration over a set or dict of strings that decides an order would show) are identical too.
- run.seed=1 changes the split, the data order and the adapter initialisation: the weights and the curve differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
TIMING = {"tokens_per_s", "peak_rss_mb"}
SETTINGS = [
    "train.max_steps=6",
    "train.batch_size=4",
    "train.grad_accum=2",
    "train.eval_every=3",
    "train.save_every=3",
    "train.precision=fp32",
    "train.lr=5e-3",
    "data.max_length=64",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("determinism") / "qa.jsonl"
    rows = [
        {"prompt": f"Say the number {i % 7}." + " now" * (i % 3), "completion": f"The number is {i % 7}." * (1 + i % 2)}
        for i in range(40)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sets(model_dir: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [f"model.name={model_dir}", f"data.train={data}", f"run.output_dir={out}", f"run.name={name}", *SETTINGS,
            *extra]  # fmt: skip


def curve(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def tensors(run: Path) -> dict[str, torch.Tensor]:
    last = sorted((run / "checkpoints").glob("step-*"))[-1]
    files = [*sorted(last.glob("*.safetensors")), run / "best" / "trainable.safetensors"]
    files += sorted([*run.glob("adapter/*.safetensors"), *run.glob("model/*.safetensors")])
    return {f"{f.parent.name}/{f.name}/{k}": t for f in files for k, t in load_file(f).items()}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def weights_only(found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in found.items() if "/trainable.safetensors/" in k}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_same_seed_same_curve_and_weights_other_seed_differs(method, tiny_model_dir, data, tmp_path):
    a = run_train(load_config(None, sets(tiny_model_dir, data, tmp_path, "a", f"method.name={method}"))).path
    b = run_train(load_config(None, sets(tiny_model_dir, data, tmp_path, "b", f"method.name={method}"))).path
    assert curve(a) == curve(b)
    assert identical(tensors(a), tensors(b))
    c = run_train(
        load_config(None, sets(tiny_model_dir, data, tmp_path, "c", f"method.name={method}", "run.seed=1"))
    ).path
    assert curve(a) != curve(c)
    wa, wc = weights_only(tensors(a)), weights_only(tensors(c))
    assert wa.keys() == wc.keys()
    assert all(not torch.equal(wa[k], wc[k]) for k in wa), "some trained weight is the same under another seed"


def test_console_script_runs_are_identical_across_hash_seeds(tiny_model_dir, data, tmp_path):
    (tmp_path / "run.yaml").write_text("{}\n")
    runs = []
    for name, hash_seed in (("h1", "1"), ("h2", "2")):
        args = sets(tiny_model_dir, data, tmp_path, name)
        cmd = [TUNESMITH, "train", str(tmp_path / "run.yaml"), *(x for s in args for x in ("--set", s))]
        env = {**os.environ, "TUNESMITH_ALLOCATOR": "system", "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(tmp_path / name)
    assert curve(runs[0]) == curve(runs[1])
    assert identical(tensors(runs[0]), tensors(runs[1]))
