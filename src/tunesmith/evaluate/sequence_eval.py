"""Score one model on every task of a sequence (a row of the retention matrix), and its general ability against
the original base (the audit's reference perplexity and KL)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.config.sequence import SequenceConfig, TaskSpec, task_config
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.data.prepare import split_examples
from tunesmith.data.tokenize import pad_id
from tunesmith.errors import UserError
from tunesmith.evaluate.forgetting import run_forgetting
from tunesmith.evaluate.model_pair import ModelPair
from tunesmith.evaluate.scoring import loss_scores, plan_eval, score_system
from tunesmith.methods.loading import LoadedModel, merged_for_inference
from tunesmith.metrics import METRICS

EASY_FIRST_ROWS = 64  # training rows whose base-model loss ranks the tasks for order: easy_first


@dataclass
class TaskRows:
    """A task's rows and settings, loaded once per sequence."""

    spec: TaskSpec
    cfg: Config  # the task's stage config, with eval.metrics = [its metric]
    test: list[Example]
    train: list[Example]  # for the candidate labels of classification-like answers, and replay
    val: list[Example]  # joint mode's validation rows
    format: str


def load_task_rows(seq: SequenceConfig, task: TaskSpec) -> TaskRows:
    """The task's test rows (the first `max_test_rows`) and training rows; bad rows stop here, before training."""
    cfg = task_config(seq, task)
    cfg.eval.metrics = [task.metric]
    splits = split_examples(cfg.data, cfg.run.seed)
    test = load_examples(task.test, cfg.data.format, cfg.data.skip_invalid, cfg.data.system_prompt)
    rows = [e for e in test.examples if e.target is not None][: seq.max_test_rows]
    if not rows:
        raise UserError(f"{task.test}: task {task.name} has no test row with an answer to score")
    return TaskRows(task, cfg, rows, splits.train, splits.val, test.format)


def score_task(model: nn.Module, tokenizer: PreTrainedTokenizerBase, task: TaskRows) -> dict[str, Any]:
    """The task's metric on its test rows: label likelihood for classification-like answers, else greedy
    generation (exact match, ROUGE-L...), perplexity from the loss."""
    metric = task.spec.metric
    plan = plan_eval(task.cfg, tokenizer, task.format, task.train, task.test)
    if plan.labels is not None and METRICS[metric].kind == "label":
        plan = dataclasses.replace(plan, generate=False)  # label likelihood gives the score: no greedy pass
    started = time.perf_counter()
    prompts = [list(e.prompt_messages) for e in task.test]
    pad = pad_id(tokenizer) if metric == "perplexity" else None
    with merged_for_inference(model) as scoring:
        scores = score_system(scoring, tokenizer, task.test, prompts, plan, task.cfg, pad)
    scoring, found = plan.scoring, scores["metrics"]
    if metric not in found and metric in scores.get("generation", {}).get("metrics", {}):
        scoring, found = "generation", scores["generation"]["metrics"]  # e.g. exact match of a short-answer task
    if metric not in found:
        raise UserError(
            f"task {task.spec.name}: metric {metric} was not computed on {task.spec.test} "
            f"(scored by {plan.scoring}: {', '.join(found) or 'nothing'}); choose one of those"
        )
    rows = min(len(task.test), task.cfg.eval.max_examples) if scoring == "generation" else len(task.test)
    return {
        "score": float(found[metric]),
        "metric": metric,
        "scoring": scoring,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 2),
    }


def score_all(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[TaskRows], log=lambda _: None
) -> list[dict[str, Any]]:
    results = []
    for task in tasks:
        log(f"scoring {task.spec.name} on {len(task.test)} test rows")
        results.append(score_task(model, tokenizer, task))
    return results


def easy_first(model: nn.Module, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[TaskRows]) -> dict[str, float]:
    """Each task's base-model loss on its first training rows (lower: easier, trained first)."""
    losses = {}
    for task in tasks:
        rows = task.train[:EASY_FIRST_ROWS]
        losses[task.spec.name] = loss_scores(model, tokenizer, rows, task.cfg, pad_id(tokenizer))["loss"]
    return losses


def general_ability(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, base: nn.Module, base_cfg: Config
) -> dict[str, Any]:
    """Reference perplexity and KL(base ‖ model) against the original base model (`tunesmith audit`'s measures)."""
    pair = ModelPair(LoadedModel(model, tokenizer, base_cfg, is_adapter=False), _base=base)
    result = run_forgetting(pair, base_cfg.audit.model_copy(update={"earlier_task": None}))
    return {
        "reference_perplexity": result["perplexity"],
        "kl_base_tuned": result["kl_base_tuned"],
        "reference_rows": result["reference_rows"],
    }
