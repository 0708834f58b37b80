"""Scenario 13 of RELIABILITY.md (run and adapter names; YAML): nothing is written outside the output folder and
no YAML tag constructs an object. (A symlinked `run.output_dir` is tested in the config-and-paths scenario.)

- run.name with `../`, `..`, `.`, a slash or backslash, an absolute path, or empty is refused in one line, from
  a YAML file, `--set` and the console script, and nothing appears outside the output folder;
- run.name naming a symlink that leads out of the output folder is refused, for a new run and for --resume;
- a run folder whose config.yaml was edited to escape (`run.name: ../../x`, another output_dir) is refused in one
  line by eval, chat and predict, and refused or resumed in place by `tunesmith resume RUN`;
- an adapter whose adapter_config.json names another base model (a traversal path or a folder with remote
  code) is loaded on the run's own base; that folder is never read;
- YAML tags (`!!python/object/apply`, `/new`, `/name`, `/module`, `!!python/object`, a custom tag) in a config
  file or a run's config.yaml are refused in one line and construct nothing; in `--set` such a value is kept as
  plain text; alias bombs ("billion laughs") are refused in one line within a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.recipes.train import run_train
from tunesmith.serve import chat

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
BAD_NAMES = ["../escape", "..", ".", "a/b", "x/../../y", "/tmp/tunesmith-abs-run", "a\\b", "..\\escape", ""]


def one_line_user_error(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_run_names_are_refused_from_a_yaml_file(name, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"run": {"name": name, "output_dir": str(tmp_path / "runs")}}))
    assert "plain folder name" in one_line_user_error(load_config, path)


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])  # `--set run.name=` means "no name"
def test_bad_run_names_are_refused_from_set(name):
    assert "plain folder name" in one_line_user_error(load_config, None, [f"run.name={name}"])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("paths-data") / "qa.jsonl"
    rows = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_sets(model_dir: Path, data: Path, out: Path, name: str) -> list[str]:
    return [f"model.name={model_dir}", f"data.train={data}", f"run.output_dir={out}", f"run.name={name}",
            "train.max_steps=2", "train.precision=fp32", "data.max_length=64", "eval.shots=[0]",
            "eval.max_examples=2", "eval.max_new_tokens=2"]  # fmt: skip


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_console_script_refuses_escaping_names_and_creates_nothing(tiny_model_dir, data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "cfg.yaml").write_text("{}\n")
    before = entries(tmp_path)
    for name in ("../escape", str(tmp_path / "abs")):
        sets = tiny_sets(tiny_model_dir, data, work / "runs", name)
        cmd = [TUNESMITH, "train", "cfg.yaml", *(x for s in sets for x in ("--set", s))]
        env = {**os.environ, "TUNESMITH_ALLOCATOR": "system"}
        result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300, env=env)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "plain folder name" in lines[0]
    assert entries(tmp_path) == before and entries(work) == {"cfg.yaml"}


def test_run_name_that_is_a_symlink_out_is_refused(tiny_model_dir, data, tmp_path):
    out, outside = tmp_path / "runs", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    cfg = load_config(None, tiny_sets(tiny_model_dir, data, out, "link"))
    assert "would leave the output folder" in one_line_user_error(run_train, cfg)
    assert not any(outside.iterdir())
    (outside / "config.yaml").write_text("{}\n")  # looks like a run folder: --resume must refuse it too
    assert "would leave the output folder" in one_line_user_error(run_train, cfg, resume=True)
    assert entries(outside) == {"config.yaml"}


def invoke(args: list[str]):
    """The typer app in-process; returns the exception that escaped (None on success)."""
    real = chat.stream_reply

    def to_current_stdout(*a, **kw):  # stream_reply binds sys.stdout at import; CliRunner swaps it per call
        kw.setdefault("out", sys.stdout)
        return real(*a, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat, "stream_reply", to_current_stdout)
        result = CliRunner().invoke(app, args)
    if isinstance(result.exception, SystemExit):
        return None if result.exit_code == 0 else result.exception
    return result.exception


@pytest.fixture(scope="module")
def trained(tiny_model_dir, data, tmp_path_factory) -> Path:
    return run_train(load_config(None, tiny_sets(tiny_model_dir, data, tmp_path_factory.mktemp("runs"), "clean"))).path


def copy_run(trained: Path, folder: Path) -> Path:
    run = folder / "runs" / trained.name
    shutil.copytree(trained, run)
    return run


def uses_of(run: Path, predictions: Path) -> dict[str, list[str]]:
    return {
        "eval": ["eval", str(run), "--json"],
        "chat": ["chat", str(run), "--prompt", "Say the number 3.", "--max-new-tokens", "2"],
        "predict": ["predict", str(run), "--data", str(predictions), "--out", str(predictions.with_suffix(".out"))],
    }


def test_run_config_edited_to_escape(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["run"].update(name="../../escape", output_dir=str(tmp_path / "elsewhere"))
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    before = entries(tmp_path)
    predictions = tmp_path / "rows.jsonl"
    predictions.write_text(json.dumps({"prompt": "Say the number 3."}) + "\n")
    for command, args in uses_of(run, predictions).items():
        exc = invoke(args)
        assert isinstance(exc, UserError) and "plain folder name" in str(exc), f"{command}: {exc!r}"
    exc = invoke(["resume", str(run)])  # refused, or resumed in place (resume names the run by its folder)
    assert exc is None or (isinstance(exc, UserError) and "\n" not in str(exc)), repr(exc)
    assert entries(tmp_path) == before | {"rows.jsonl"}
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_adapter_config_cannot_redirect_the_base_model(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "config.json").write_text("{ not json")  # reading it at all would fail the load
    adapter_config = run / "adapter" / "adapter_config.json"
    config = json.loads(adapter_config.read_text())
    for target in (str(decoy), "../../../../../../etc", "evil-org/evil-model"):
        config["base_model_name_or_path"] = target
        adapter_config.write_text(json.dumps(config))
        assert invoke(["chat", str(run), "--prompt", "Say the number 3.", "--max-new-tokens", "2"]) is None, target


TAGS = {
    "apply": "!!python/object/apply:os.system ['touch {marker}']",
    "new": "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "name": "!!python/name:os.system",
    "module": "!!python/module:os",
    "object": "!!python/object:tunesmith.config.Config {{}}",
    "custom": "!evil {{}}",
}


@pytest.mark.parametrize("tag", list(TAGS))
def test_yaml_tags_are_refused(tag, tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "cfg.yaml"
    path.write_text(f"run:\n  name: {TAGS[tag].format(marker=marker)}\n")
    assert "invalid YAML" in one_line_user_error(load_config, path)
    path.write_text(f"data:\n  system_prompt: {TAGS[tag].format(marker=marker)}\n")
    assert "invalid YAML" in one_line_user_error(load_config, path)
    assert not marker.exists()


def test_yaml_tags_in_a_run_config_are_refused_everywhere(trained, tmp_path):
    marker = tmp_path / "PWNED"
    run = copy_run(trained, tmp_path)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text + f"self_training: {TAGS['apply'].format(marker=marker)}\n")
    predictions = tmp_path / "rows.jsonl"
    predictions.write_text(json.dumps({"prompt": "Say the number 3."}) + "\n")
    for command, args in {**uses_of(run, predictions), "resume": ["resume", str(run)]}.items():
        exc = invoke(args)
        assert isinstance(exc, UserError) and "invalid YAML" in str(exc), f"{command}: {exc!r}"
    assert not marker.exists()


@pytest.mark.parametrize("tag", ["apply", "new", "name"])
def test_yaml_tags_in_set_stay_plain_text(tag, tmp_path):
    marker = tmp_path / "PWNED"
    value = TAGS[tag].format(marker=marker)
    try:
        cfg = load_config(None, [f"data.system_prompt={value}"])
    except UserError as exc:
        assert "\n" not in str(exc)
    else:
        assert cfg.data.system_prompt == value
    assert not marker.exists()


def billion_laughs(levels: int = 8) -> str:
    """One YAML flow value: nine levels of nine aliases (9**9 = 387 million strings if expanded), each level
    defined inline as the first item of the next, so the bomb can sit under any one key."""
    value = "&l0 [" + ", ".join(['"lol"'] * 9) + "]"
    for n in range(1, levels + 1):
        value = f"&l{n} [{value}, " + ", ".join([f"*l{n - 1}"] * 8) + "]"
    return value


BOMBS = {  # where the bomb is used: an unknown key, and valid keys whose values are lists
    "unknown_key": "lulz: {bomb}\n",
    "eval_metrics": "train: {{eval_metrics: {bomb}}}\n",
    "check_errors": "data: {{check: {{errors: {bomb}}}}}\n",
    "target_modules": "method: {{name: lora, target_modules: {bomb}}}\n",
    "shots": "eval: {{shots: {bomb}}}\n",
    "probes": "audit: {{probes: {bomb}}}\n",
    "run_name": "run: {{name: {bomb}}}\n",
}


@pytest.mark.parametrize("where", list(BOMBS))
def test_alias_bombs_are_refused_quickly(where, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMBS[where].format(bomb=billion_laughs()))
    started = time.perf_counter()
    one_line_user_error(load_config, path)
    assert time.perf_counter() - started < 1.0


def test_deeply_nested_yaml_is_a_one_line_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("train: " + "[" * 1000 + "]" * 1000 + "\n")
    one_line_user_error(load_config, path)


def test_run_name_with_a_nul_character_is_refused(tiny_model_dir, data, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text('run:\n  name: "a\\0b"\n')
    sets = [s for s in tiny_sets(tiny_model_dir, data, tmp_path / "runs", "x") if not s.startswith("run.name")]
    one_line_user_error(lambda: run_train(load_config(path, sets)).path)
