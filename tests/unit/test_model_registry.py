"""The model registry on SQLite (and the same flow on a real PostgreSQL server): versions with lineage, one
champion per name enforced by the database, rollback, content-addressed weights verified on use."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.errors import UserError
from tunesmith.model_registry import schema
from tunesmith.model_registry.diff import diff
from tunesmith.model_registry.store import Registry

pytestmark = pytest.mark.unit


def fake_run(root: Path, name: str, lr: float = 1e-4, seed: int = 0, rows: int = 5) -> Path:
    """A finished run folder as training leaves it (config, summary, data check, eval, adapter weights)."""
    run = root / name
    (run / "adapter").mkdir(parents=True)
    data = root / f"train-{rows}.jsonl"
    data.write_text("".join(json.dumps({"text": f"t{i}", "label": "a"}) + "\n" for i in range(rows)))
    (run / "config.yaml").write_text(f"model:\n  name: tiny\ndata:\n  train: {data}\ntrain:\n  lr: {lr}\n")
    summary = {
        "task": "sft",
        "model": "tiny",
        "method": "lora",
        "base_val_loss": 2.0,
        "tuned_val_loss": 1.0 + lr,
        "val_metrics": {"val_accuracy": 0.5 + lr},
        "environment": {"git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "data_check.json").write_text(json.dumps({"ok": True, "errors": 0, "warnings": 1, "counts": {}}))
    eval_report = {
        "scoring": "label_likelihood",
        "rows": 10,
        "systems": [{"name": "tuned", "metrics": {"accuracy": 0.8}}],
    }
    (run / "eval.json").write_text(json.dumps(eval_report))
    save_file({"w": torch.full((2, 2), float(seed))}, run / "adapter" / "adapter_model.safetensors")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    return run


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "registry.db"))


def test_versions_carry_their_lineage(registry: Registry, tmp_path: Path):
    first = registry.add(fake_run(tmp_path, "r1"), "sentiment")
    second = registry.add(fake_run(tmp_path, "r2", lr=2e-4, seed=1, rows=7), "sentiment", parent=1)
    assert (first.version, second.version, first.stage) == (1, 2, "candidate")
    assert second.parent_version == 1 and second.base_model == "tiny" and second.method == "lora"
    train = second.lineage["data"]["train"]
    assert train["rows"] == 7 and len(train["sha256"]) == 64
    assert second.lineage["data_check"]["ok"] is True and second.lineage["eval"]["systems"]["tuned"]["metrics"]
    assert first.config_hash != second.config_hash and first.weights_hash != second.weights_hash
    same = registry.add(fake_run(tmp_path, "r3"), "sentiment")  # the same weights as r1: one stored copy
    assert same.weights_hash == first.weights_hash and same.version == 3
    assert len([p for p in registry.store.iterdir() if not p.name.startswith(".")]) == 2
    changes = diff(first, second)
    assert changes["config"]["train.lr"] == [1e-4, 2e-4] and "train" in changes["data"]
    assert changes["numbers"]["val loss"]["change"] == pytest.approx(1e-4)


def test_promote_and_rollback_keep_one_champion(registry: Registry, tmp_path: Path):
    for i in range(3):
        registry.add(fake_run(tmp_path, f"r{i}", seed=i), "m")
    assert registry.champion("m") is None
    registry.promote("m", 1)
    registry.promote("m", 3, note="better")
    assert [v.stage for v in registry.list("m")] == ["archived", "candidate", "champion"]
    restored = registry.rollback("m")
    assert restored.version == 1 and [v.stage for v in registry.list("m")] == ["champion", "candidate", "archived"]
    actions = [(e["action"], e["version"], e["previous_champion"]) for e in registry.history("m")]
    assert actions[-3:] == [("promote", 1, None), ("promote", 3, 1), ("rollback", 1, 3)]
    registry.promote("m", 2)
    with pytest.raises(UserError, match="no version 9"):
        registry.promote("m", 9)
    with pytest.raises(UserError, match="no model named 'other'.*known: m"):
        registry.rollback("other")


def test_the_database_refuses_a_second_champion(registry: Registry, tmp_path: Path):
    registry.add(fake_run(tmp_path, "r1"), "m")
    registry.add(fake_run(tmp_path, "r2", seed=1), "m")
    registry.promote("m", 1)
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as db:  # a writer that skips the code
        db.execute(schema.versions.update().where(schema.versions.c.version == 2).values(stage="champion"))
    assert registry.get("m").version == 1


def _race(registry: Registry, tmp_path: Path, writers: int = 6) -> None:
    for i in range(writers):
        registry.add(fake_run(tmp_path, f"race{i}", seed=i), "raced")
    errors: list[BaseException] = []

    def promote(version: int) -> None:
        try:
            for _ in range(5):
                registry.promote("raced", version)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, writers + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    stages = [v.stage for v in registry.list("raced")]
    assert stages.count("champion") == 1 and stages.count("candidate") + stages.count("archived") == writers - 1


def test_concurrent_promotes_leave_one_champion(registry: Registry, tmp_path: Path):
    _race(registry, tmp_path)


def test_weights_are_safetensors_and_verified(registry: Registry, tmp_path: Path):
    run = fake_run(tmp_path, "r1")
    registry.add(run, "m")
    stored = registry.weights("m", 1)
    assert (stored / "adapter_model.safetensors").is_file()
    (stored / "adapter_config.json").write_text('{"r": 999}')  # tampered with after registration
    with pytest.raises(UserError, match="changed since they were registered"):
        registry.weights("m", 1)
    pickled = fake_run(tmp_path, "r2", seed=2)
    (pickled / "adapter" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(UserError, match="pickle-based weights are not accepted"):
        registry.add(pickled, "m")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("model:\n  name: tiny\n")
    with pytest.raises(UserError, match="no summary.json"):
        registry.add(tmp_path / "unfinished", "m")


def test_migration_creates_the_schema_tables(registry: Registry):
    inspector = sa.inspect(registry.engine)
    for table in schema.metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == {c.name for c in table.columns}
    assert "registry_one_champion" in {i["name"] for i in inspector.get_indexes("registry_versions")}


def test_cli_walkthrough(tmp_path: Path):
    db = str(tmp_path / "cli.db")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, "--db", db])
        assert result.exit_code == 0, result.output
        return result.output

    assert "sentiment:1 registered" in run("registry", "add", str(fake_run(tmp_path, "r1")), "--name", "sentiment")
    run("registry", "add", str(fake_run(tmp_path, "r2", lr=3e-4, seed=1)), "--name", "sentiment")
    assert "sentiment:1 is the champion" in run("registry", "promote", "sentiment", "1")
    assert "was sentiment:1, now archived" in run("registry", "promote", "sentiment", "2")
    assert "sentiment:1 is the champion again" in run("registry", "rollback", "sentiment")
    assert "champion" in run("registry", "list")
    assert "train.lr" in run("registry", "diff", "sentiment", "1", "2")
    assert json.loads(run("registry", "show", "sentiment:2"))["stage"] == "archived"
    assert "rollback" in run("registry", "history", "sentiment")
    assert "registry-store" in run("registry", "verify", "sentiment")
    bad = runner.invoke(app, ["registry", "promote", "nope", "1", "--db", db])
    assert isinstance(bad.exception, UserError) and "no model named 'nope'" in str(bad.exception)


def test_cli_error_is_one_line(tmp_path: Path):
    """Through the real entry point: a mistake is one `error:` line and exit code 1, no traceback."""
    import subprocess
    import sys

    tunesmith = str(Path(sys.executable).with_name("tunesmith"))
    cmd = [tunesmith, "registry", "promote", "nope", "1", "--db", str(tmp_path / "e.db")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error:") and "no model named 'nope'" in lines[0]


@pytest.mark.integration
def test_postgresql_registry(postgres_url: str, tmp_path: Path):
    registry = Registry(postgres_url, tmp_path / "store")
    try:
        registry.add(fake_run(tmp_path, "p1"), "pg")
        registry.add(fake_run(tmp_path, "p2", seed=1), "pg")
        registry.promote("pg", 1)
        registry.promote("pg", 2)
        assert registry.rollback("pg").version == 1
        with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as db:
            db.execute(schema.versions.update().where(schema.versions.c.name == "pg").values(stage="champion"))
        _race(registry, tmp_path)
    finally:
        registry.close()
