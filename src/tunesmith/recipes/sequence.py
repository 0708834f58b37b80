"""`tunesmith sequence`: learn tasks one after another (or jointly) and score every task after every stage.

Top to bottom: the sequence folder → every task's rows (bad input stops here) → the base model scores every task
(row 0 of the matrix) → the order → per stage: its config (the previous stage's weights as its base, or the
original base for per-task adapters), `tunesmith train` as a run folder under stages/, every task scored, the
general-ability audit → optional merge of the per-task adapters → the summary (average, BWT, FWT, forgetting)
and the plots. State lives in sequence.json after every step, so a killed sequence resumes in the stage it was in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Config
from tunesmith.config.forgetting import REFERENCE
from tunesmith.config.load import validate
from tunesmith.config.sequence import EARLIER, SequenceConfig, dump_sequence, stage_mapping
from tunesmith.data.tokenize import ensure_chat_template
from tunesmith.errors import UserError
from tunesmith.evaluate import sequence_eval
from tunesmith.evaluate.reference import generated_reference
from tunesmith.evaluate.retention import retention_summary
from tunesmith.evaluate.sequence_eval import TaskRows
from tunesmith.methods.loading import load_run
from tunesmith.methods.merge import merged_adapter_run, whole_model_folder
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.output import err
from tunesmith.recipes.train import run_train
from tunesmith.train.loop import StepHook
from tunesmith.train.run_dir import write_json
from tunesmith.train.run_folder import RunFolder

STATE_FILE, CONFIG_FILE = "sequence.json", "sequence.yaml"
MERGED = "merged"  # the run folder of the merged per-task adapters, and its name for `--adapter`


def run_sequence(
    seq: SequenceConfig, config_path: str, resume: bool = False, hooks: list[StepHook] | None = None
) -> Path:
    """Run (or resume) the sequence; returns its folder, whose sequence.json holds the matrix and summary."""
    tasks = {task.name: sequence_eval.load_task_rows(seq, task) for task in seq.tasks}  # bad rows stop here
    folder = sequence_folder(seq, config_path, resume)
    state = read_state(folder)
    base_cfg = tasks[seq.tasks[0].name].cfg
    tokenizer = load_tokenizer(base_cfg.model.name, trust_remote_code=base_cfg.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    base = load_causal_lm(base_cfg.model.name, trust_remote_code=base_cfg.model.trust_remote_code).eval()
    if "order" not in state:
        state["order"] = _training_order(seq, list(tasks.values()), base, tokenizer)
        _save(folder, state)
    ordered = [tasks[name] for name in state["order"]["tasks"]]
    if "base" not in state:
        err.print("base model: scoring every task")
        state["base"] = sequence_eval.score_all(base, tokenizer, ordered, _dim)
        _save(folder, state)
    state.setdefault("stages", [])
    previous, reference = base_cfg.model.name, _original_reference(ordered, base, tokenizer, base_cfg)
    for index, trained in enumerate(_stages(seq, ordered)):
        if index < len(state["stages"]) and state["stages"][index].get("status") == "scored":
            previous = state["stages"][index]["next_base"]
            continue
        stage_inputs = _StageInputs(previous, reference, config_path, hooks)
        record = _run_stage(seq, folder, index, trained, ordered, stage_inputs)
        record |= _score_stage(seq, state, index, record, ordered, base, base_cfg)
        record["next_base"] = _next_base(seq, Path(record["run"]), previous)
        _store_stage(folder, state, index, record)
        previous = record["next_base"]
    if seq.merge is not None and "merged" not in state:
        state["merged"] = _merge_and_score(seq, folder, state, ordered, tokenizer)
        _save(folder, state)
    state["summary"] = summarise(seq, state)
    _save(folder, state)
    _plot(folder, state)
    return folder


def sequence_folder(seq: SequenceConfig, config_path: str, resume: bool) -> Path:
    """A new folder (sequence.yaml written), or on resume the existing one, refusing a changed config."""
    output = Path(seq.run.output_dir)
    if resume:
        if seq.run.name:
            folder = output / seq.run.name
        else:
            found = sorted(output.glob(f"{Path(config_path).stem}-*"), key=lambda p: p.stat().st_mtime)
            folder = found[-1] if found else output / "-"
        if not (folder / CONFIG_FILE).is_file():
            raise UserError(f"nothing to resume: {folder} is not a tunesmith sequence folder; set run.name")
        saved = yaml.safe_load((folder / CONFIG_FILE).read_text())
        if saved != yaml.safe_load(dump_sequence(seq)):
            raise UserError(f"{folder}: the sequence config changed since it started; resume it unchanged")
        err.print(f"resuming sequence {folder}")
        return folder
    name = seq.run.name or f"{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = output / name
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"sequence folder {folder} already exists; pass --resume to continue it or set run.name")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(dump_sequence(seq))
    return folder


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(folder: Path, state: dict[str, Any]) -> None:
    write_json(folder / STATE_FILE, state)


def _dim(line: str) -> None:
    err.print(line, style="dim", highlight=False)


def _training_order(seq: SequenceConfig, tasks: list[TaskRows], base, tokenizer) -> dict[str, Any]:
    names = [t.spec.name for t in tasks]
    if isinstance(seq.order, list):
        return {"rule": "list", "tasks": list(seq.order)}
    if seq.order == "given":
        return {"rule": "given", "tasks": names}
    losses = sequence_eval.easy_first(base, tokenizer, tasks)
    err.print("easy_first: base loss " + ", ".join(f"{n} {loss:.3f}" for n, loss in losses.items()))
    return {"rule": "easy_first", "tasks": sorted(names, key=lambda n: losses[n]), "base_loss": losses}


def _stages(seq: SequenceConfig, ordered: Sequence[TaskRows]) -> list[list[TaskRows]]:
    """The tasks each stage trains on: one each in order, or all at once (joint)."""
    return [list(ordered)] if seq.mode == "joint" else [[task] for task in ordered]


def _stage_name(index: int, trained: Sequence[TaskRows]) -> str:
    return f"{index + 1}-{trained[0].spec.name if len(trained) == 1 else 'joint'}"


def _uses_reference(cfg: Config) -> bool:
    replay, ewc = cfg.forgetting.replay, cfg.forgetting.ewc
    return replay.data == REFERENCE or (ewc.weight > 0 and ewc.data == REFERENCE)


def _original_reference(ordered: list[TaskRows], base, tokenizer, base_cfg: Config) -> str | None:
    """The original base model's name when a stage replays or protects `reference` (its answers generated and
    cached now, while it is in memory): a later stage starts from the previous stage's weights, whose own answers
    are not what to keep."""
    if not any(_uses_reference(task.cfg) for task in ordered):
        return None
    audit = base_cfg.audit
    generated_reference(base, tokenizer, base_cfg.model.name, audit.reference_new_tokens, audit.batch_size)
    return base_cfg.model.name


@dataclass(frozen=True)
class _StageInputs:
    previous: str  # the weights the stage starts from
    reference: str | None  # the original base, whose answers `reference` means (None: no stage uses them)
    config_path: str
    hooks: list[StepHook] | None


def _run_stage(
    seq: SequenceConfig,
    folder: Path,
    index: int,
    trained: list[TaskRows],
    ordered: list[TaskRows],
    inputs: _StageInputs,
) -> dict[str, Any]:
    """Train the stage as a run folder under stages/ (resumed when it exists, skipped when it completed)."""
    name, previous, config_path, hooks = _stage_name(index, trained), inputs.previous, inputs.config_path, inputs.hooks
    mapping = _stage_mapping(seq, folder, name, trained, ordered[:index], inputs)
    cfg = validate(mapping, f"{config_path}: stage {name}")
    run_dir = folder / "stages" / name
    status = RunFolder(run_dir).status
    done = status.is_file() and json.loads(status.read_text()).get("status") == "completed"
    if not done:
        err.print(f"[bold]stage {index + 1}[/]: {name} (base: {previous})")
        run_train(cfg, config_path, resume=RunFolder(run_dir).config.is_file(), hooks=hooks)
    summary = json.loads(RunFolder(run_dir).summary.read_text())
    return {
        "name": name,
        "tasks": [t.spec.name for t in trained],
        "run": str(run_dir),
        "base": previous,
        "train_seconds": summary.get("train_seconds"),
        "steps": summary.get("steps"),
    }


def _stage_mapping(
    seq: SequenceConfig,
    folder: Path,
    name: str,
    trained: list[TaskRows],
    earlier: list[TaskRows],
    inputs: _StageInputs,
) -> dict[str, Any]:
    """The stage's raw config: its task's (or for joint, the first task's) sections, the stage's base weights,
    its run folder, the earlier tasks' rows wherever the config says `earlier`, and the original base as the model
    whose answers `reference` means."""
    mapping = stage_mapping(seq, trained[0].spec)
    model = inputs.previous if seq.adapters == "shared" else trained[0].cfg.model.name
    mapping.setdefault("model", {})["name"] = model
    mapping["run"] = {"seed": seq.run.seed, "output_dir": str(folder / "stages"), "name": name}
    if len(trained) > 1:
        data = mapping["data"]
        data["train"], data["val"] = _joint_files(folder, trained)
        data.update(format="chat", system_prompt=None, max_train_rows=None)
    forgetting = mapping.get("forgetting") or {}
    if inputs.reference and forgetting.get("reference_model") is None:
        forgetting["reference_model"] = inputs.reference
        mapping["forgetting"] = forgetting
    for key in ("replay", "ewc"):
        section = forgetting.get(key) or {}
        if section.get("data") != EARLIER:
            continue
        if earlier:
            section["data"] = _rows_file(folder / "data" / f"earlier-{name}.jsonl", earlier)
        else:  # the first stage: nothing learnt before it to replay or protect
            del forgetting[key]
    return mapping


def _rows_file(path: Path, tasks: Sequence[TaskRows], split: str = "train") -> str:
    """The tasks' rows as chat JSONL (prompt formatting, system prompts and labels already applied)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"messages": list(e.messages)}, ensure_ascii=False) + "\n"
        for task in tasks
        for e in (task.train if split == "train" else task.val)
        if e.messages
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return str(path)


def _joint_files(folder: Path, trained: Sequence[TaskRows]) -> tuple[str, str]:
    data = folder / "data"
    return _rows_file(data / "joint-train.jsonl", trained), _rows_file(data / "joint-val.jsonl", trained, "val")


def _score_stage(
    seq: SequenceConfig,
    state: dict[str, Any],
    index: int,
    record: dict[str, Any],
    ordered: list[TaskRows],
    base,
    base_cfg,
) -> dict[str, Any]:
    """Every task's score after this stage; with per-task adapters an earlier task keeps its own adapter's score
    (that adapter is frozen), and later tasks are scored with the newest adapter."""
    loaded = load_run(Path(record["run"]))
    err.print(f"stage {index + 1}: scoring every task")
    scores: list[dict[str, Any]] = []
    for position, task in enumerate(ordered):
        if seq.adapters == "per_task" and position < index:
            scores.append({**state["stages"][position]["scores"][position], "from_stage": position + 1})
            continue
        _dim(f"scoring {task.spec.name} on {len(task.test)} test rows")
        scores.append(sequence_eval.score_task(loaded.model, loaded.tokenizer, task))
    out: dict[str, Any] = {"scores": scores}
    if seq.audit:
        _dim("general ability: reference perplexity and KL to the original base")
        out["general"] = sequence_eval.general_ability(loaded.model, loaded.tokenizer, base, base_cfg)
    return out


def _next_base(seq: SequenceConfig, run_dir: Path, previous: str) -> str:
    """The weights the next stage starts from: this stage's model (an adapter folded in) for shared training."""
    if seq.adapters == "per_task" or seq.mode == "joint":
        return previous
    return str(whole_model_folder(run_dir, run_dir / "merged"))


def _store_stage(folder: Path, state: dict[str, Any], index: int, record: dict[str, Any]) -> None:
    record["status"] = "scored"
    del state["stages"][index:]
    state["stages"].append(record)
    _save(folder, state)
    line = " · ".join(f"{s['metric']} {s['score']:.4f}" for s in record["scores"])
    err.print(f"[green]stage {index + 1} scored[/]: {line}", highlight=False)


def _merge_and_score(
    seq: SequenceConfig, folder: Path, state: dict[str, Any], ordered: list[TaskRows], tokenizer
) -> dict[str, Any]:
    assert seq.merge is not None
    runs = [Path(stage["run"]) for stage in state["stages"]]
    names = [stage["tasks"][0] for stage in state["stages"]]
    err.print(f"merging {len(runs)} adapters ({seq.merge.combination})")
    merge = seq.merge
    run = merged_adapter_run(runs, names, folder / MERGED, merge.combination, merge.weights, merge.density)
    scores = sequence_eval.score_all(load_run(run).model, tokenizer, ordered, _dim)
    return {"run": str(run), "adapter": str(RunFolder(run).adapter), "combination": merge.combination, "scores": scores}


def summarise(seq: SequenceConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Average, BWT, FWT and forgetting (sequential), or the joint model's scores; plus the time trained."""
    metrics = [s["metric"] for s in state["base"]]
    base = [s["score"] for s in state["base"]]
    matrix = [[s["score"] for s in stage["scores"]] for stage in state["stages"]]
    seconds = sum(stage.get("train_seconds") or 0 for stage in state["stages"])
    if seq.mode == "joint":
        return {"average": sum(matrix[0]) / len(matrix[0]), "train_seconds": seconds}
    summary = retention_summary(matrix, base, metrics) | {"train_seconds": seconds}
    if "merged" in state:
        merged = [s["score"] for s in state["merged"]["scores"]]
        summary["merged_average"] = sum(merged) / len(merged)
    return summary


def _plot(folder: Path, state: dict[str, Any]) -> None:
    from tunesmith.evaluate.report.sequence_plots import write_plots

    write_plots(folder, state)
