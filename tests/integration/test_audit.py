"""`tunesmith audit` on tiny LoRA and full runs: audit.json has forgetting and bias, the reference is cached."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.evaluate.audit import run_audit
from tunesmith.evaluate.report.html import build_report
from tunesmith.recipes.train import run_train
from tunesmith.train.run_dir import write_json

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def tiny_run(model_dir: Path, data: Path, out: Path, name: str, method: str) -> Path:
    sets = [
        f"model.name={model_dir}",
        f"data.train={data}",
        f"run.output_dir={out}",
        f"run.name={name}",
        f"method.name={method}",
        "train.max_steps=4",
        "train.batch_size=4",
        "train.precision=fp32",
        "train.lr=5e-3",
        "data.max_length=64",
    ]
    return run_train(load_config(None, sets)).path


def bias_files(folder: Path) -> list[str]:
    crows = [
        {"sent_more": "The fox is quick.", "sent_less": "The dog is quick.", "bias_type": "race-color"},
        {"sent_more": "Maria lives in Porto.", "sent_less": "Maria lives in Paris.", "bias_type": "nationality"},
        {"sent_more": "The capital is Paris.", "sent_less": "The capital is Porto.", "bias_type": "nationality"},
    ]
    wino = [
        {"split": "dev", "type": t, "id": 1, "stereotype": s, "text": f"The fox said {p} was lazy."}
        for t in (1, 2)
        for s, p in (("pro", "he"), ("anti", "she"))
    ]
    return [
        f"audit.crows_pairs={write_jsonl(folder / 'crows.jsonl', crows)}",
        f"audit.winobias={write_jsonl(folder / 'wino.jsonl', wino)}",
        "audit.bootstrap_samples=200",
        "audit.reference_new_tokens=8",
    ]


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audit")
    data = folder / "qa.jsonl"
    write_jsonl(
        data, [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    )
    return tiny_run(tiny_model_dir, data, folder / "runs", "lora", "lora")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_audit_has_every_section_and_caches_the_reference(method, lora_run, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    run = (
        lora_run
        if method == "lora"
        else tiny_run(tiny_model_dir, lora_run.parent.parent / "qa.jsonl", tmp_path, "f", method)
    )
    sets = bias_files(tmp_path)
    earlier = write_jsonl(tmp_path / "earlier.jsonl", [{"text": f"row {i}", "label": str(i % 2)} for i in range(6)])
    report = run_audit(run, [*sets, f"audit.earlier_task={earlier}"])
    forgetting, bias = report["forgetting"], report["bias"]
    assert forgetting["reference_rows"] > 0 and forgetting["kl_base_tuned"] > 0
    assert forgetting["perplexity"]["change"] == pytest.approx(
        forgetting["perplexity"]["tuned"] - forgetting["perplexity"]["base"]
    )
    assert forgetting["earlier_task"]["method"] == "label likelihood" and forgetting["earlier_task"]["rows"] == 6
    assert bias["crows_pairs"]["pairs"] == 3 and set(bias["crows_pairs"]["by_type"]) == {"race-color", "nationality"}
    assert bias["winobias"]["pairs"] == 2 and len(bias["probes"]) == 5
    assert report["base_is"].startswith("the same model") == (method == "lora")
    cached = list((tmp_path / "cache" / "audit").glob("reference-*.json"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    again = run_audit(run, [*sets, "audit.probes=[]"], only="forgetting")
    assert cached[0].stat().st_mtime_ns == before  # read, not regenerated
    assert again["forgetting"]["perplexity"] == forgetting["perplexity"] and "bias" not in again


def test_audit_cli_writes_audit_json(lora_run, tmp_path):
    env = {**os.environ, "TUNESMITH_CACHE": str(tmp_path / "cache")}
    args = [TUNESMITH, "audit", str(lora_run), "--only", "bias"]
    for assignment in [*bias_files(tmp_path), "audit.max_pairs=2"]:
        args += ["--set", assignment]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    saved = json.loads((lora_run / "audit.json").read_text())
    assert saved["bias"]["crows_pairs"]["pairs"] == 2 and "CrowS-Pairs" in result.stdout
    bad = subprocess.run([*args[:3], "--set", "audit.max_pairs=0"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?!data:|#)|https?://|<link\b|<script\b|@import|url\(""", re.I)


def test_report_is_self_contained_and_compare_writes_a_table(lora_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    write_json(lora_run / "audit.json", run_audit(lora_run, [*bias_files(tmp_path), "audit.max_pairs=2"]))

    def system(name: str, acc: float, generated: float) -> dict:
        return {
            "name": name,
            "metrics": {"accuracy": acc, "perplexity": 30.0 * (1 - acc)},
            "label_likelihood": {"metrics": {"accuracy": acc}, "rows": 8},
            "generation": {"metrics": {"accuracy": generated}, "rows": 4},
        }

    systems = [system("base 0-shot", 0.5, 0.25), system("base 5-shot", 0.625, 0.5), system("tuned", 0.75, 0.75)]
    write_json(lora_run / "eval.json", {"rows": 8, "data": "val", "scoring": "label_likelihood", "systems": systems})
    page = build_report(lora_run)
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert page.count('src="data:image/png;base64,') >= 3  # loss curves, metrics, CrowS-Pairs
    for needle in (
        "base 5-shot",
        "by generation (4 rows)",
        "Forgetting",
        "KL(base ‖ tuned)",
        "CrowS-Pairs",
        "WinoBias",
        "Data summary",
    ):
        assert needle in page, needle
    bare = tmp_path / "bare"  # a run that has not trained: every section says what is missing
    bare.mkdir()
    (bare / "config.yaml").write_text((lora_run / "config.yaml").read_text())
    assert "Not evaluated yet" in build_report(bare) and "Not audited yet" in build_report(bare)
    out = tmp_path / "cmp.html"
    result = subprocess.run(
        [TUNESMITH, "compare", str(lora_run), str(bare), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "CrowS stereotype pref (tuned)" in result.stdout and "eval accuracy (tuned)" in result.stdout
    assert not EXTERNAL.search(out.read_text())
