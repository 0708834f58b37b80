"""The check that training runs first: the same checks as `data check`, on the rows training will use.

The report is cached under `<cache>/checks/`, keyed by the checked rows, the check settings, the tokenizer and
`data.max_length`, so a second run on the same data costs only the hash. Error findings (the kinds in
`data.check.errors`) stop training with one line that names the finding and how to allow it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import Config
from tunesmith.data.quality.check import check_splits
from tunesmith.data.quality.report import check_kinds
from tunesmith.data.quality.rows import SplitData
from tunesmith.errors import UserError
from tunesmith.models.cache import cache_dir
from tunesmith.output import err

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tunesmith.data.prepare import Splits

REPORT_FILE = "data_check.json"
CACHE_VERSION = 1  # bump when a check changes what it finds


def check_before_training(
    cfg: Config, tokenizer: PreTrainedTokenizerBase, run_dir: Path | None = None, splits: Splits | None = None
) -> dict[str, Any] | None:
    """Check the training data; return the report (None when `data.check.enabled` is false).

    `splits` are the rows `prepare_data` chose (loaded again when not given). With `data.skip_invalid` the user
    has chosen to drop invalid rows, so schema findings are warnings then. The report is written to
    `run_dir/data_check.json` when `run_dir` is given. Raises `UserError` on an error finding.
    """
    settings = cfg.data.check
    if not settings.enabled:
        return None
    check_kinds(settings.errors)
    if cfg.data.skip_invalid:
        settings = settings.model_copy(update={"errors": [kind for kind in settings.errors if kind != "schema"]})
    if splits is None:
        from tunesmith.data.prepare import split_examples

        splits = split_examples(cfg.data, cfg.run.seed)
    parts = _split_data(cfg, splits)
    holdout = cfg.data.val is None
    name = getattr(tokenizer, "name_or_path", None) or cfg.model.name
    key = _cache_key(parts, {**settings.model_dump(), "holdout": holdout}, name, cfg.data.max_length)
    cached = cache_dir() / "checks" / f"{key}.json"
    report = _read(cached)
    if report is None:
        report = check_splits(parts, settings, tokenizer, cfg.data.max_length, holdout).as_dict()
        _write(cached, report)
    if run_dir is not None:
        _write(Path(run_dir) / REPORT_FILE, report)
    if not report["ok"]:
        raise UserError(_failure(report, settings.errors, cached))
    _say_warnings(report)
    return report


def _split_data(cfg: Config, splits: Splits) -> list[SplitData]:
    """The train and val rows as check inputs, with the rows `data.skip_invalid` dropped from each file."""
    train_path, val_path = cfg.data.train or "", cfg.data.val
    parts = [SplitData("train", train_path, splits.format, list(splits.train))]
    parts.append(SplitData("val", val_path or f"{train_path} (hold-out)", splits.format, list(splits.val)))
    for problem in splits.rejected:
        parts[1 if val_path and problem.path == str(val_path) else 0].problems.append(problem)
    return parts


def _cache_key(parts: list[SplitData], settings: dict[str, Any], tokenizer: str, max_length: int) -> str:
    """Hash of everything the report depends on."""
    digest = hashlib.sha256()
    head = {"v": CACHE_VERSION, "settings": settings, "tokenizer": tokenizer, "max_length": max_length}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for part in parts:
        digest.update(f"\0{part.name}\0{part.format}\0".encode())
        for example in part.examples:
            digest.update(json.dumps([example.line, example.messages, example.text]).encode())
        for problem in part.problems:
            digest.update(f"{problem.line}:{problem.code}".encode())
    return digest.hexdigest()[:24]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, report: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _failure(report: dict[str, Any], errors: list[str], cached: Path) -> str:
    """One line: the first error finding, its first rows, and the two ways to let training go on."""
    failing = [f for f in report["findings"] if f["severity"] == "error"]
    first = failing[0]
    rows = "; ".join(", ".join(f"{k} {v}" for k, v in row.items()) for row in first["rows"][:2])
    more = f" (and {len(failing) - 1} more error finding(s))" if len(failing) > 1 else ""
    kinds = {f["kind"] for f in failing}
    allowed = ", ".join(kind for kind in errors if kind not in kinds)
    return (
        f"data check failed: {first['kind']}: {first['message']} [{first['code']}] in {first['split']}"
        f"{f' ({rows})' if rows else ''}{more}; report: {cached}; fix the data (`tunesmith data clean`), or allow "
        f"it with --set data.check.errors=[{allowed}] or skip the check with --set data.check.enabled=false"
    )


def _say_warnings(report: dict[str, Any]) -> None:
    """One line listing the warning findings, so training never hides them."""
    if report["warnings"]:
        counts = ", ".join(f"{f['code']} {f['count']:,} ({f['split']})" for f in report["findings"])
        err.print(f"[yellow]data check[/]: {report['warnings']} warning(s): {counts}; see {REPORT_FILE}")
