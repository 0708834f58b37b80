"""Scenario 12 of RELIABILITY.md: planted malicious pickles and remote code; no code runs on any path.

Every planted payload creates a marker file when it runs: pickles (raw pickle and torch.save's zip format)
whose `__reduce__` calls `open(marker, "w")`, and a model folder's `evil.py` (named by `auto_map` in config.json
and tokenizer_config.json) that writes a marker when imported. After every test, no marker may exist.

Places: a run's newest checkpoint (optimizer.pt, rng_state.pth, scheduler.pt, training_args.bin beside the real
files), a pickle-only fake checkpoint folder, a run's adapter/ (pickle-only, and a pickle beside the
safetensors), model folders (pickle-only, a pickle beside the safetensors, remote code with an unknown
architecture, remote code on a known architecture), used directly and as the base model of a run.
Paths: resume (the real console script), eval, chat --prompt, predict (the typer app in-process, where an
exception other than UserError would be a traceback in the console script) and train.
Outcome: either it works while ignoring the payload, or a UserError, i.e. one `error:` line.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import load_config
from tunesmith.errors import TrainingInterrupted, UserError
from tunesmith.recipes.train import run_train
from tunesmith.serve import chat

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
EVIL_PY = """
open({marker!r}, "w").write("remote code ran")
from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as EvilModel
from transformers import PreTrainedTokenizerFast as EvilTokenizer
"""


class Payload:
    """Unpickling this creates `path`."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(autouse=True)
def no_code_ran(markers):
    yield
    ran = sorted(p.name for p in markers.iterdir())
    assert not ran, f"planted code ran: {ran}"


def plant_pickles(folder: Path, markers: Path, names: list[str]) -> None:
    for name in names:
        marker = markers / f"{folder.name}-{name}"
        if name.endswith(".bin"):  # torch.save's zip format, as Hugging Face .bin files are
            torch.save({"weight": Payload(marker)}, folder / name)
        else:
            (folder / name).write_bytes(pickle.dumps(Payload(marker), protocol=2))


def evil_model(base: Path, folder: Path, markers: Path, kind: str) -> Path:
    shutil.copytree(base, folder)
    if kind in ("pickle-only", "pickle-beside"):
        if kind == "pickle-only":
            (folder / "model.safetensors").unlink()
        plant_pickles(folder, markers, ["pytorch_model.bin", "training_args.bin"])
    else:  # remote code: an unknown architecture, or auto_map on a known one (transformers' own code must run)
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
        if kind == "remote-unknown":
            config["model_type"] = "evil_model"
        (folder / "config.json").write_text(json.dumps(config))
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
        tokenizer["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
        (folder / "evil.py").write_text(EVIL_PY.format(marker=str(markers / f"{folder.name}-evil.py")))
    return folder


MODEL_KINDS = {  # kind -> what a load must do: refuse (UserError) or work, ignoring the payload
    "pickle-only": "refuse",
    "pickle-beside": "work",
    "remote-unknown": "refuse",
    "remote-known": "work",
}


@pytest.fixture(scope="module")
def world(tiny_model_dir, markers, tmp_path_factory):
    """A clean base folder and a LoRA run on it, the malicious model folders, and an interrupted run."""
    root = tmp_path_factory.mktemp("malicious")
    base = root / "base"
    shutil.copytree(tiny_model_dir, base)
    rows = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    data = root / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "predict.jsonl").write_text(json.dumps({"prompt": "Say the number 3."}) + "\n")
    sets = [f"model.name={base}", f"data.train={data}", f"run.output_dir={root / 'runs'}", "train.precision=fp32"]
    sets += [
        "train.batch_size=4",
        "data.max_length=64",
        "train.save_every=2",
        "train.eval_every=2",
        "eval.shots=[0]",
        "eval.max_examples=4",
    ]
    sets += ["eval.max_new_tokens=4", "eval.batch_size=8"]
    run = run_train(load_config(None, [*sets, "run.name=clean", "train.max_steps=2"])).path

    def stop(state):
        if state.step == 3:
            os.kill(os.getpid(), __import__("signal").SIGTERM)

    with pytest.raises(TrainingInterrupted):
        run_train(load_config(None, [*sets, "run.name=stopped", "train.max_steps=6"]), hooks=[stop])
    models = {kind: evil_model(base, root / kind, markers, kind) for kind in MODEL_KINDS}
    return {"root": root, "base": base, "run": run, "stopped": root / "runs" / "stopped", "models": models}


def copy_stopped(world: dict, out: Path) -> Path:
    """A copy of the interrupted run (the config names its folder, so it is resumed with run.output_dir set)."""
    run = out / "stopped"
    shutil.copytree(world["stopped"], run)
    return run


def copy_run(world: dict, name: str, base: Path | None = None) -> Path:
    run = world["root"] / "runs" / name
    shutil.copytree(world["run"], run)
    if base is not None:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"]["name"] = str(base)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run


def invoke(args: list[str]):
    """The typer app in-process: (exit code, the exception that escaped, or None)."""
    real = chat.stream_reply

    def to_current_stdout(*a, **kw):  # stream_reply binds sys.stdout at import; CliRunner swaps it per call
        kw.setdefault("out", sys.stdout)
        return real(*a, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat, "stream_reply", to_current_stdout)
        result = CliRunner().invoke(app, args)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, exc


def commands(target: Path, world: dict, run_only: bool) -> dict[str, list[str]]:
    found = {"chat": ["chat", str(target), "--prompt", "Say the number 3.", "--max-new-tokens", "3"]}
    if run_only:
        found["eval"] = ["eval", str(target), "--json"]
        found["predict"] = ["predict", str(target), "--data", str(world["root"] / "predict.jsonl")]
        found["predict"] += ["--out", str(world["root"] / f"{target.name}-predictions.jsonl")]
    return found


def assert_outcome(expect: str, args: list[str]) -> None:
    code, exc = invoke(args)
    if expect == "refuse":
        assert isinstance(exc, UserError), f"{args[0]}: expected a one-line refusal, got {exc!r}"
        assert "\n" not in str(exc)
    else:
        assert exc is None and code == 0, f"{args[0]}: {exc!r}"


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_model_folder_directly(kind, world):
    for args in commands(world["models"][kind], world, run_only=False).values():
        assert_outcome(MODEL_KINDS[kind], args)


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_model_folder_as_the_base_of_a_run(kind, world):
    run = copy_run(world, f"base-{kind}", base=world["models"][kind])
    for args in commands(run, world, run_only=True).values():
        assert_outcome(MODEL_KINDS[kind], args)


@pytest.mark.parametrize("kind", ["pickle-only", "remote-unknown"])
def test_training_on_a_malicious_model_folder_is_refused(kind, world, tmp_path):
    sets = [f"model.name={world['models'][kind]}", f"data.train={world['root'] / 'qa.jsonl'}"]
    with pytest.raises(UserError) as caught:
        run_train(load_config(None, [*sets, f"run.output_dir={tmp_path}", "run.name=x", "train.max_steps=1"]))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_pickle_only_adapter_is_refused(world, markers):
    run = copy_run(world, "pickle-adapter")
    (run / "adapter" / "adapter_model.safetensors").unlink()
    plant_pickles(run / "adapter", markers, ["adapter_model.bin"])
    for args in commands(run, world, run_only=True).values():
        assert_outcome("refuse", args)


def test_pickle_beside_the_adapter_is_ignored(world, markers):
    run = copy_run(world, "pickle-beside-adapter")
    plant_pickles(run / "adapter", markers, ["adapter_model.bin", "training_args.bin"])
    for args in commands(run, world, run_only=True).values():
        assert_outcome("work", args)


def test_resume_ignores_pickles_in_checkpoint_folders(world, markers, tmp_path):
    """The real console script resumes an interrupted run whose newest checkpoint holds the usual HF pickles, next
    to a newer-looking pickle-only folder without state.json; it finishes from the real checkpoint."""
    run = copy_stopped(world, tmp_path)
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    plant_pickles(newest, markers, ["optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin"])
    fake = run / "checkpoints" / "step-0000099"
    fake.mkdir()
    plant_pickles(fake, markers, ["optimizer.pt", "rng_state.pth", "pytorch_model.bin"])
    env = {**os.environ, "TUNESMITH_ALLOCATOR": "system"}
    cmd = [TUNESMITH, "train", str(run / "config.yaml"), "--resume", "--set", f"run.output_dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert newest.name in " ".join(result.stderr.split())
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_pickle_only_checkpoint_with_state_is_refused_or_skipped(world, markers, tmp_path):
    """A checkpoint folder that looks complete (state.json) but holds only pickles: resume must not unpickle;
    it may refuse in one line or fall back to an older intact checkpoint."""
    run = copy_stopped(world, tmp_path)
    real = sorted((run / "checkpoints").glob("step-*"))[-1]
    fake = run / "checkpoints" / "step-0000098"
    fake.mkdir()
    state = json.loads((real / "state.json").read_text())
    state.pop("files", None)
    state["train_state"]["step"] = 98
    (fake / "state.json").write_text(json.dumps(state))
    plant_pickles(fake, markers, ["trainable.pt", "optimizer.pt", "rng_state.pth"])
    cfg = load_config(run / "config.yaml", [f"run.output_dir={tmp_path}"])
    try:
        run_train(cfg, resume=True)
    except UserError as exc:
        assert "\n" not in str(exc)


def test_the_payloads_are_live(tmp_path):
    """The planted files would run code if loaded carelessly, so the tests above can fail."""
    live = tmp_path / "live"
    live.mkdir()
    folder = tmp_path / "f"
    folder.mkdir()
    plant_pickles(folder, live, ["a.pt", "b.bin"])
    pickle.loads((folder / "a.pt").read_bytes())
    torch.load(folder / "b.bin", weights_only=False)
    (folder / "evil.py").write_text(EVIL_PY.format(marker=str(live / "f-evil.py")))
    sys.path.insert(0, str(folder))
    try:
        __import__("evil")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("evil", None)
    assert sorted(p.name for p in live.iterdir()) == ["f-a.pt", "f-b.bin", "f-evil.py"]
