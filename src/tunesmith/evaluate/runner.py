"""`tunesmith eval`: the tuned model beside base-model baselines (zero-shot and k-shot) on the same rows.

Systems, in report order: the base model with 0, k1, k2... shots (`eval.shots`), the prior baselines of label
rows (majority, stratified random), then the tuned model zero-shot (as it was trained). For an adapter run the
base is the same weights with the adapter off. The report (`runs/<run>/eval.json`, keys in docs/evaluation.md)
holds every system's scores, timings and answers, and the statistics of `uncertainty.add_statistics`
(intervals, paired differences, per-class results, calibration, the collapse warning).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Config
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.data.prepare import Splits, split_examples
from tunesmith.data.tokenize import encode_examples, pad_id
from tunesmith.errors import UserError
from tunesmith.evaluate import base_cache
from tunesmith.evaluate.generate import eval_decoding, exact_match, generate_all
from tunesmith.evaluate.scoring import EvalPlan, plan_eval, score_system, target_tokens
from tunesmith.evaluate.shots import ShotPool, build_prompts, shot_pool
from tunesmith.evaluate.uncertainty import add_statistics
from tunesmith.methods.loading import LoadedModel, load_run, merged_for_inference
from tunesmith.metrics import METRICS
from tunesmith.models import load_causal_lm
from tunesmith.output import err
from tunesmith.train.loss import evaluate_loss
from tunesmith.train.precision import use_bf16

DEFAULT_CONTEXT = 2048  # when the model config names no context window


def _eval_rows(cfg: Config, data_path: str | None, splits: Splits | None) -> tuple[list[Example], str, str]:
    """(rows, where they came from, their data format)."""
    if data_path:
        loaded = load_examples(data_path, cfg.data.format, cfg.data.skip_invalid, cfg.data.system_prompt)
        return loaded.examples, data_path, loaded.format
    splits = splits or split_examples(cfg.data, cfg.run.seed)
    return splits.val, "validation split of the run", splits.format


def training_splits(cfg: Config, data_path: str | None) -> Splits | None:
    """The run's train/val splits (shots come from train); None when the training file is gone but `--data`
    gives the rows: then only zero-shot baselines run."""
    try:
        return split_examples(cfg.data, cfg.run.seed)
    except UserError:
        if data_path is None:
            raise
        return None


def score_model(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    cfg: Config,
    with_exact_match: bool,
) -> dict[str, Any]:
    """Validation loss, perplexity and (optionally) strict string exact match of greedy answers (`tunesmith
    demo`, whose answers are JSON: there case and punctuation matter)."""
    encoded, _ = encode_examples(tokenizer, examples, cfg.data.max_length)
    bf16 = use_bf16(cfg.train.precision)
    scores: dict[str, Any] = evaluate_loss(model, encoded, pad_id(tokenizer), cfg.eval.batch_size, bf16)
    if with_exact_match:
        rows = [e for e in examples if e.target is not None][: cfg.eval.max_examples]
        conversations = [list(e.prompt_messages) for e in rows]
        decoding = eval_decoding(cfg.eval.max_new_tokens, cfg.eval.stop)
        answers = generate_all(model, tokenizer, conversations, decoding, cfg.eval.batch_size, bf16)
        scores["exact_match"] = exact_match(answers, [e.target for e in rows])
        scores["exact_match_n"] = len(rows)
        scores["predictions"] = [
            {"line": e.line, "target": e.target, "answer": a} for e, a in zip(rows, answers, strict=True)
        ]
    return scores


def context_budget(model: nn.Module, tokenizer: PreTrainedTokenizerBase, plan: EvalPlan) -> int:
    """Prompt tokens a k-shot prompt may use: the context window less the longest answer scored or generated."""
    window = getattr(getattr(model, "config", None), "max_position_embeddings", None) or DEFAULT_CONTEXT
    answer = max(target_tokens(tokenizer, plan.labels)) + 2 if plan.labels else 0
    return window - max(answer, plan.max_new_tokens if plan.generate else 0)


@contextmanager
def base_model(loaded: LoadedModel, cfg: Config) -> Iterator[nn.Module]:
    """The untuned model: the run's model with its adapter off, or the base weights loaded afresh."""
    if loaded.is_adapter:
        with loaded.model.disable_adapter():
            yield loaded.model
    else:
        yield load_causal_lm(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code).eval()


def score_systems(
    loaded: LoadedModel,
    cfg: Config,
    rows: list[Example],
    plan: EvalPlan,
    pool: ShotPool | None,
    use_cache: bool = True,
) -> list[dict[str, Any]]:
    """Base with every shot count, then tuned zero-shot; each a dict of scores with its name. A base system
    scored before on the same content comes from the cache (`base_cache`, marked `cached`)."""
    tokenizer, pad = loaded.tokenizer, pad_id(loaded.tokenizer)
    zero = [list(e.prompt_messages) for e in rows]
    shots = sorted({0, *cfg.eval.shots}) if pool is not None else [0]
    budget, bf16 = context_budget(loaded.model, tokenizer, plan), use_bf16(cfg.train.precision)
    planned = []
    for k in shots:
        info: dict[str, Any] = {"name": f"base {k}-shot", "model": "base", "shots": k}
        prompts = zero
        if k:
            assert pool is not None
            built = build_prompts(tokenizer, rows, pool, k, cfg.run.seed, budget)
            prompts = built.prompts
            info["mean_shots_used"] = sum(built.shots_used) / max(len(rows), 1)
            info["shot_lines"] = built.shot_lines[:5]  # a sample, to see what was shown
        key = base_cache.base_key(cfg, tokenizer, rows, prompts, plan, bf16, with_loss=not k)
        cached = base_cache.load(key) if use_cache else None
        if cached is not None:
            err.print(f"{info['name']}: cached result (same model, rows and settings; --no-cache rescores)")
        planned.append((info, prompts, key, cached))
    if any(cached is None for *_, cached in planned):
        with base_model(loaded, cfg) as model:
            for info, prompts, key, cached in planned:
                if cached is None:
                    err.print(f"scoring {info['name']} on {len(rows)} rows", style="dim", highlight=False)
                    scores = score_system(
                        model, tokenizer, rows, prompts, plan, cfg, pad if not info["shots"] else None
                    )
                    base_cache.save(key, scores)
                    info.update(scores)
    systems = [info | (cached or {}) | ({"cached": True} if cached else {}) for info, _, _, cached in planned]
    err.print(f"scoring tuned on {len(rows)} rows", style="dim", highlight=False)
    with merged_for_inference(loaded.model) as model:
        tuned = score_system(model, tokenizer, rows, zero, plan, cfg, pad)
    systems.append({"name": "tuned", "model": "tuned", "shots": 0} | tuned)
    return systems


def evaluate_run(run_dir: Path, data_path: str | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Score the base model (zero- and k-shot) and the tuned model on the same rows."""
    loaded = load_run(run_dir)
    cfg = loaded.config
    assert cfg is not None
    splits = training_splits(cfg, data_path)
    rows, source, fmt = _eval_rows(cfg, data_path, splits)
    if not rows:
        raise UserError(f"{source}: no rows to evaluate")
    train = splits.train if splits is not None else []
    plan = plan_eval(cfg, loaded.tokenizer, fmt, train, rows)
    pool = shot_pool(train, rows) if any(cfg.eval.shots) and splits is not None else None
    systems = score_systems(loaded, cfg, rows, plan, pool, use_cache)
    by_name = {s["name"]: s for s in systems}
    report = {
        "run": str(run_dir),
        "data": source,
        "rows": len(rows),
        "base_model": cfg.model.name,
        "metrics": plan.metrics,
        "skipped_metrics": [m for m in plan.metrics if METRICS[m].kind == "tags"],
        "labels": plan.labels,
        "scoring": plan.scoring,
        "generation_rows": min(len(rows), cfg.eval.max_examples) if plan.generate else 0,
        "shot_seed": cfg.run.seed,
        "shot_pool": {"rows": len(pool.rows), "excluded_as_eval_rows": pool.excluded} if pool else None,
        "systems": systems,
        "base": by_name["base 0-shot"],
        "tuned": by_name["tuned"],
        "bootstrap": {"samples": cfg.eval.bootstrap, "seed": cfg.run.seed, "confidence": 0.95},
    }
    gold, train_targets = [e.target or "" for e in rows], [e.target for e in train if e.target is not None]
    add_statistics(report, gold, train_targets, plan, cfg.eval.bootstrap, cfg.run.seed)
    return report
