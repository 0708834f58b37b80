"""Scenario 11 of RELIABILITY.md: planted duplicates and leakage are found; the tokenization cache never serves
encodings made with another template, tokenizer or max_length.

Recall goes beyond the unit test (tests/unit/test_quality_planted.py, whose `plant` is reused: 30 surface-changed
exact copies, 60 near copies with 1-2 word edits or typos, 10 + 10 exact leaks into val, 40 near leaks, on 425
rows of 20-35 words) in three ways: 20 differently seeded plants instead of one (exact copies and exact leaks
must be found every time, near copies and near leaks with >= 95% recall in every plant), the real
`tunesmith data check --json` once, and the training gate (a run with leaked validation rows is refused before a
run folder exists; the automatic hold-out never splits a group of copies).

The cache is exercised through the real data path (`load_tokenizer` on a model folder, `prepare_data`) with an
isolated cache folder; the template and the tokenizer are changed in place in the same folder, so only their
content (not the folder name) can cause the miss. Each result must equal a fresh encoding without the cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.data import token_cache
from tunesmith.data.prepare import prepare_data
from tunesmith.data.quality.check import check_files
from tunesmith.data.tokenize import with_chat_template
from tunesmith.errors import UserError
from tunesmith.models import load_tokenizer
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
SEEDS = range(1, 21)
NEAR_RECALL = 0.95


def _unit_planted():
    """tests/unit/test_quality_planted.py, loaded by path (tests are not a package)."""
    name = "reliability_unit_quality_planted"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "unit" / "test_quality_planted.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


planted_data = _unit_planted()


def reported(report: dict, code: str, split: str) -> set[int]:
    return {row["line"] for f in report["findings"] if f["code"] == code and f["split"] == split for row in f["rows"]}


def recall(planted: set[int], found: set[int]) -> float:
    return len(planted & found) / len(planted)


def score(data, report: dict) -> dict[str, float]:
    """Recall per planted kind, and the val rows wrongly reported as leaks."""
    lines = data.lines
    leaks = {code: reported(report, code, "train→val") for code in ("leak_exact_example", "leak_exact_input")}
    near_leaks = reported(report, "leak_near_example", "train→val") | reported(report, "leak_near_input", "train→val")
    all_leaks = set().union(*leaks.values(), near_leaks)
    planted_leaks = lines["leak_exact_example"] | lines["leak_exact_input"] | lines["leak_near"]
    return {
        "exact_duplicate": recall(lines["exact_duplicate"], reported(report, "exact_duplicate", "train")),
        "near_duplicate": recall(lines["near_duplicate"], reported(report, "near_duplicate", "train")),
        # A val row copied exactly is an exact leak, whatever its label; a near copy with a no-op edit may be too.
        "leak_exact_example": recall(lines["leak_exact_example"], leaks["leak_exact_example"]),
        "leak_exact_input": recall(lines["leak_exact_input"], leaks["leak_exact_input"]),
        "leak_near": recall(lines["leak_near"], near_leaks | leaks["leak_exact_example"]),
        "clean_val_rows_reported": len(all_leaks - planted_leaks),
    }


def test_planted_copies_are_found_in_20_seeded_plants(tmp_path):
    cfg = load_config(None, [])
    totals: dict[str, list[float]] = {}
    for seed in SEEDS:
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        data = planted_data.plant(folder, seed)
        report = check_files({"train": str(data.train), "val": str(data.val)}, cfg).as_dict()
        found = score(data, report)
        for kind, value in found.items():
            totals.setdefault(kind, []).append(value)
        assert found["exact_duplicate"] == 1.0, (seed, found)
        assert found["leak_exact_example"] == found["leak_exact_input"] == 1.0, (seed, found)
        assert found["near_duplicate"] >= NEAR_RECALL and found["leak_near"] >= NEAR_RECALL, (seed, found)
        assert found["clean_val_rows_reported"] == 0, (seed, found)
    print({kind: round(sum(v) / len(v), 4) for kind, v in totals.items()})


def test_cli_data_check_json_finds_the_planted_copies(tmp_path):
    data = planted_data.plant(tmp_path, seed=7)
    out = tmp_path / "report.json"
    cmd = [TUNESMITH, "data", "check", str(data.train), "--val", str(data.val), "--json", str(out), "--no-tokenizer"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert result.returncode == 1, result.stderr[-2000:]  # schema and leakage findings are errors
    assert "Traceback" not in result.stderr
    found = score(data, json.loads(out.read_text()))
    assert found["exact_duplicate"] == found["leak_exact_example"] == found["leak_exact_input"] == 1.0, found
    assert found["near_duplicate"] >= NEAR_RECALL and found["leak_near"] >= NEAR_RECALL, found


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sentence(i: int) -> str:
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
    return " ".join(words[(i * 7 + k * 3) % len(words)] + str((i * 13 + k) % 97) for k in range(5))


def test_training_refuses_leaked_validation_rows(tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": sentence(i), "completion": f"r{i}"} for i in range(30)])
    leaked = [{"prompt": sentence(i).upper(), "completion": f"r{i}"} for i in (3, 11)]  # the same after folding
    val = write_jsonl(tmp_path / "val.jsonl", [*leaked, {"prompt": sentence(100), "completion": "r100"}])
    sets = [f"model.name={tiny_model_dir}", f"data.train={train}", f"data.val={val}", f"run.output_dir={tmp_path}"]
    with pytest.raises(UserError) as caught:
        run_train(load_config(None, [*sets, "run.name=leaky", "train.max_steps=1", "data.max_length=256"]))
    message = str(caught.value)
    assert "\n" not in message and "leakage" in message and "leak_exact_example" in message, message
    assert not (tmp_path / "leaky").exists()


def test_automatic_holdout_keeps_copies_on_one_side(tiny_model_dir, tmp_path):
    """Without data.val, the hold-out is group-aware: no copy of a training row lands in validation."""
    rows = [{"prompt": sentence(i % 12), "completion": f"r{i % 12}"} for i in range(60)]  # 12 groups of 5 copies
    train = write_jsonl(tmp_path / "copies.jsonl", rows)
    sets = [f"model.name={tiny_model_dir}", f"data.train={train}", f"run.output_dir={tmp_path}", "run.name=holdout"]
    sets += ["train.max_steps=1", "data.max_length=256", "train.precision=fp32", "data.val_fraction=0.2"]
    run = run_train(load_config(None, sets)).path
    check = json.loads((run / "data_check.json").read_text())
    assert not [f for f in check["findings"] if f["split"] == "train→val"], "a group of copies straddles the split"


# --- the tokenization cache ---------------------------------------------------------------------------------


@pytest.fixture
def cache_setup(tiny_model_dir, tmp_path, monkeypatch):
    """A private cache folder, a model folder to edit in place, data, and a counter of real encodings."""
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    rows = [
        {"prompt": f"Maria lives in Lisbon {i}.", "completion": f"The city is Lisbon, number {i}."} for i in range(16)
    ]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    encodes: list[int] = []
    real = token_cache.encode_examples

    def counting(*args, **kwargs):
        encodes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(token_cache, "encode_examples", counting)
    return folder, train, encodes


def prepare(folder: Path, train: Path, max_length: int, cached: bool = True):
    cfg = load_config(None, [f"data.train={train}", f"data.max_length={max_length}", f"data.cache_tokenized={cached}"])
    tokenizer = with_chat_template(load_tokenizer(str(folder)))
    prepared = prepare_data(cfg.data, tokenizer, cfg.run.seed)
    return prepared.train, prepared.val, prepared.report


def check_cache(folder: Path, train: Path, max_length: int, encodes: list[int], hit: bool):
    """Prepare through the cache; assert hit or miss, and that the result is what a fresh encoding gives."""
    before = len(encodes)
    result = prepare(folder, train, max_length)
    assert (len(encodes) == before) is hit, "expected a cache hit" if hit else "served from a stale cache entry"
    assert result == prepare(folder, train, max_length, cached=False)
    return result


def test_cache_hits_only_for_the_same_template_tokenizer_and_max_length(cache_setup):
    folder, train, encodes = cache_setup
    base = check_cache(folder, train, 64, encodes, hit=False)
    assert check_cache(folder, train, 64, encodes, hit=True) == base

    cut = check_cache(folder, train, 30, encodes, hit=False)  # max_length
    assert cut != base and cut[2]["train"]["truncated"] > 0

    template = folder / "chat_template.jinja"
    original_template = template.read_text()
    template.write_text(original_template.replace("message['content']", "message['content'] | upper"))
    upper = check_cache(folder, train, 64, encodes, hit=False)  # the chat template, same folder
    assert upper != base
    template.write_text(original_template)
    assert check_cache(folder, train, 64, encodes, hit=True) == base

    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.add_tokens(["Lisbon"]) == 1
    tokenizer.save_pretrained(folder)  # the vocabulary, same folder and template
    grown = check_cache(folder, train, 64, encodes, hit=False)
    assert grown != base
    assert len(list((folder.parent / "cache" / token_cache.FOLDER).glob("*.safetensors"))) >= 4
