"""A task-sequence config (`tunesmith sequence`): tasks learned one after another (or jointly), scored on every
task after every stage (docs/forgetting.md#task-sequences).

    run: {name: three-tasks, output_dir: runs, seed: 0}
    stage:                     # a tunesmith config every stage starts from: model, method, train, forgetting...
      method: {name: lora, r: 16}
    tasks:
      - {name: sst2, train: a.jsonl, val: a-val.jsonl, test: a-test.jsonl, metric: accuracy,
         config: {data: {format: text_label, system_prompt: "..."}}}
      - {name: wnut, train: b.jsonl, test: b-test.jsonl, metric: exact_match}
    order: given               # given | easy_first | [wnut, sst2]
    mode: sequential           # sequential | joint (all tasks at once: the upper reference)
    adapters: shared           # shared | per_task (a new LoRA adapter per task; earlier ones kept frozen)

Every stage's config is built and validated when the sequence is loaded, so a missing file, an unknown key or a
task type sequences cannot train stops with one line before any weights load.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tunesmith.config.load import apply_override, read_yaml, validate
from tunesmith.config.schema import Config, RunConfig
from tunesmith.config.section import Section
from tunesmith.errors import UserError, did_you_mean

SEQUENCE_TASKS = ("sft",)  # one causal LM carried from stage to stage; heads (classify, ner) are per model
ADAPTER_METHODS = ("lora", "qlora")  # methods whose export is a LoRA adapter PEFT can load and merge
EARLIER = "earlier"  # forgetting.replay.data / ewc.data: the earlier stages' training rows


class TaskSpec(Section):
    """One task of the sequence: its data, how it is scored, and any config it changes for its own stage."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Short name: stage folders, --adapter.")
    task: str = Field("sft", description="Task type; sequences train sft tasks (label words for classification).")
    train: str = Field(description="Training file.")
    val: str | None = Field(None, description="Validation file; default: a seeded split of train.")
    test: str = Field(description="Test file, scored after every stage (the retention matrix).")
    format: str | None = Field(None, description="Data format of all three files; default: the stage's data.format.")
    metric: str = Field("accuracy", description="The task's score in the matrix (a registered metric).")
    max_train_rows: int | None = Field(None, ge=1, description="Use only the first N training rows.")
    config: dict[str, Any] = Field(default_factory=dict, description="Config sections this stage changes.")

    @field_validator("task")
    @classmethod
    def _trainable_in_sequence(cls, value: str) -> str:
        if value not in SEQUENCE_TASKS:
            raise ValueError(
                f"task type {value!r} cannot be a sequence stage: sequences carry one causal LM from task to task, "
                f"so every task is {' or '.join(SEQUENCE_TASKS)} (a classification task as label words)"
            )
        return value

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        from tunesmith.metrics import METRICS

        if value not in METRICS or METRICS[value].kind == "tags":
            usable = [m for m, spec in METRICS.items() if spec.kind != "tags"]
            raise ValueError(f"unknown metric {value!r}.{did_you_mean(value, usable)} Choose from {', '.join(usable)}")
        return value


class MergeConfig(Section):
    """After a per_task sequence: the adapters combined into one (PEFT `add_weighted_adapter`), scored as a row."""

    combination: Literal["linear", "cat", "ties", "dare_linear", "dare_ties", "magnitude_prune"] = "ties"
    weights: list[float] | None = Field(None, description="One weight per task (default: 1 each).")
    density: float = Field(0.5, gt=0, le=1, description="ties/dare/magnitude_prune: share of each delta kept.")


class SequenceConfig(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    stage: dict[str, Any] = Field(default_factory=dict, description="The config every stage starts from.")
    tasks: list[TaskSpec] = Field(min_length=1)
    order: Literal["given", "easy_first"] | list[str] = Field(
        "given", description="given, easy_first (by the base model's loss on each task), or a list of task names."
    )
    mode: Literal["sequential", "joint"] = "sequential"
    adapters: Literal["shared", "per_task"] = "shared"
    merge: MergeConfig | None = Field(None, description="per_task only: score the adapters merged into one.")
    max_test_rows: int = Field(200, ge=1, description="Cap on test rows scored per task and stage.")
    audit: bool = Field(True, description="Reference perplexity and KL to the original base after every stage.")

    @model_validator(mode="after")
    def _consistent(self) -> SequenceConfig:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
        if isinstance(self.order, list) and sorted(self.order) != sorted(names):
            raise ValueError(f"order must list every task once: {', '.join(names)}")
        if self.merge is not None and self.adapters != "per_task":
            raise ValueError("merge combines per-task adapters: set adapters: per_task")
        if self.merge and self.merge.weights is not None and len(self.merge.weights) != len(self.tasks):
            raise ValueError(f"merge.weights needs one weight per task ({len(self.tasks)})")
        if self.mode == "joint" and self.adapters == "per_task":
            raise ValueError("mode joint trains one model on every task: adapters must be shared")
        return self


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def stage_mapping(seq: SequenceConfig, task: TaskSpec) -> dict[str, Any]:
    """The raw config of `task`'s stage: the shared stage config, the task's own changes, then its data files."""
    data = _deep_merge(seq.stage, task.config)
    data_section = data.setdefault("data", {})
    data_section.update({"train": task.train, "val": task.val})
    if task.format is not None:
        data_section["format"] = task.format
    if task.max_train_rows is not None:
        data_section["max_train_rows"] = task.max_train_rows
    data.setdefault("task", {})["name"] = task.task
    data.setdefault("run", {})["seed"] = seq.run.seed
    return data


def task_config(seq: SequenceConfig, task: TaskSpec, source: str = "sequence") -> Config:
    """The validated config of `task`'s stage (data paths, task type, the shared and own sections)."""
    mapping = stage_mapping(seq, task)
    forgetting = mapping.get("forgetting") or {}
    for section in (forgetting.get("replay") or {}, forgetting.get("ewc") or {}):
        if section.get("data") == EARLIER:  # filled per stage by the recipe; a placeholder file passes validation
            section["data"] = task.train
    return validate(mapping, f"{source}: tasks[{task.name}]")


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    # a union's branch names ("literal['given','easy_first']", "list[str]") are not keys the user wrote
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p == "str")))
    dotted = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        owner: type[BaseModel] = TaskSpec if loc and loc[0] == "tasks" else SequenceConfig
        if loc and loc[0] == "merge":
            owner = MergeConfig
        elif loc and loc[0] == "run":
            owner = RunConfig
        return f"unknown key '{dotted}'.{did_you_mean(str(loc[-1]), owner.model_fields)}"
    message = error["msg"].removeprefix("Value error, ")
    return f"'{dotted}': {message}" if dotted else message


def _check_files(seq: SequenceConfig, source: str) -> None:
    for task in seq.tasks:
        for key in ("train", "val", "test"):
            path = getattr(task, key)
            if path is not None and not Path(path).is_file():
                raise UserError(f"{source}: tasks[{task.name}].{key}: file not found: {path}")


def load_sequence(path: str | Path, overrides: list[str] | None = None) -> SequenceConfig:
    """Read, override (`--set stage.train.lr=1e-4`), validate the sequence and every stage's config."""
    data = read_yaml(Path(path))
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        seq = SequenceConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{path}: {_describe(exc)}") from None
    _check_files(seq, str(path))
    configs = [task_config(seq, task, str(path)) for task in seq.tasks]
    if seq.adapters == "per_task" and (bad := {c.method.name for c in configs} - set(ADAPTER_METHODS)):
        methods = ", ".join(ADAPTER_METHODS)
        raise UserError(f"{path}: adapters: per_task needs a LoRA-type method ({methods}), not {bad.pop()}")
    if seq.mode == "joint" and len({c.model.name for c in configs}) > 1:
        raise UserError(f"{path}: mode joint trains one model: every task must use the same model.name")
    return seq


def dump_sequence(seq: SequenceConfig) -> str:
    import yaml

    return yaml.safe_dump(seq.model_dump(mode="json"), sort_keys=False)
