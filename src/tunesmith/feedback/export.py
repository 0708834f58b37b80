"""Feedback as training rows (`tunesmith feedback export`), in one of three shapes:

- `sft`: every corrected answer, as a `prompt_completion` row (chat prompts keep their turns);
- `dpo`: preference pairs `{prompt, chosen, rejected}`: a correction over the answer it corrects, and an answer
  rated +1 over one rated -1 for the same prompt (the exact rendered prompt, so the same question asked in another
  conversation is another prompt);
- `kto`: single judgements `{prompt, completion, label}`: each rated answer (+1 true, -1 false), and a correction
  (true) with the answer it corrects (false).

When one person judged the same answer more than once, the last judgement counts. Feedback that gives a shape
nothing (a rating only, for `sft`; a correction equal to the answer) is counted under `skipped`, by reason.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.feedback.store import FeedbackRecord, FeedbackStore, ResponseRecord


@dataclass
class Judged:
    """One answer (a response's choice) with the last rating and the last correction given for it."""

    response: ResponseRecord
    choice: int
    rating: int | None = None
    correction: str | None = None

    @property
    def answer(self) -> str:
        return self.response.answers[self.choice]

    @property
    def prompt(self) -> Any:
        return self.response.prompt_of(self.choice)

    @property
    def rendered(self) -> str:
        return self.response.rendered[self.choice // self.response.n]


@dataclass
class Export:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def judged_answers(pairs: Iterable[tuple[ResponseRecord, FeedbackRecord]]) -> list[Judged]:
    """Fold the feedback rows (oldest first) into one judgement per answer and person."""
    judged: dict[tuple[str, int, str], Judged] = {}
    for response, record in pairs:
        key = (response.id, record.choice, record.key_name)
        entry = judged.setdefault(key, Judged(response, record.choice))
        if record.rating is not None:
            entry.rating = record.rating
        if record.correction is not None and record.correction.strip():
            entry.correction = record.correction
    return list(judged.values())


def _completion(judged: Judged, text: str) -> Any:
    """A chat prompt's completion is an assistant turn; a plain prompt's is the text."""
    return [{"role": "assistant", "content": text}] if judged.response.kind == "chat" else text


def _corrects(judged: Judged, export: Export) -> bool:
    if judged.correction is None:
        export.skipped["no correction"] += 1
        return False
    if judged.correction.strip() == judged.answer.strip():
        export.skipped["correction equals the answer"] += 1
        return False
    return True


def sft_rows(answers: list[Judged]) -> Export:
    export = Export()
    for judged in answers:
        if _corrects(judged, export):
            export.rows.append({"prompt": judged.prompt, "completion": _completion(judged, judged.correction)})
    return export


def dpo_rows(answers: list[Judged]) -> Export:
    export, seen = Export(), set()

    def add(judged: Judged, chosen: str, rejected: str) -> None:
        key = (judged.rendered, chosen, rejected)
        if chosen.strip() == rejected.strip() or key in seen:
            export.skipped["same or repeated pair"] += 1
            return
        seen.add(key)
        prompt = judged.prompt
        export.rows.append(
            {"prompt": prompt, "chosen": _completion(judged, chosen), "rejected": _completion(judged, rejected)}
        )

    by_prompt: dict[str, dict[int, list[Judged]]] = defaultdict(lambda: defaultdict(list))
    for judged in answers:
        if judged.correction is not None:
            add(judged, judged.correction, judged.answer)
        if judged.rating is not None:
            by_prompt[judged.rendered][judged.rating].append(judged)
        elif judged.correction is None:
            export.skipped["no rating or correction"] += 1
    for ratings in by_prompt.values():
        for good in ratings.get(1, []):
            for bad in ratings.get(-1, []):
                add(good, good.answer, bad.answer)
        if not ratings.get(1) or not ratings.get(-1):
            export.skipped["rating without an opposite rating for the same prompt"] += sum(map(len, ratings.values()))
    return export


def kto_rows(answers: list[Judged]) -> Export:
    export = Export()
    for judged in answers:
        if judged.rating is not None:
            row = {
                "prompt": judged.prompt,
                "completion": _completion(judged, judged.answer),
                "label": judged.rating > 0,
            }
            export.rows.append(row)
        if judged.correction is not None and _corrects(judged, export):
            export.rows.append(
                {"prompt": judged.prompt, "completion": _completion(judged, judged.correction), "label": True}
            )
            if judged.rating is None:
                export.rows.append(
                    {"prompt": judged.prompt, "completion": _completion(judged, judged.answer), "label": False}
                )
    return export


EXPORTS: dict[str, Callable[[list[Judged]], Export]] = {"sft": sft_rows, "dpo": dpo_rows, "kto": kto_rows}


def export_feedback(store: FeedbackStore, format: str, out: Path) -> tuple[Path, Export, int]:
    """Write `out/<format>.jsonl`; returns the file, the export and the number of feedback rows read."""
    pairs = list(store.rated())
    export = EXPORTS[format](judged_answers(pairs))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{format}.jsonl"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in export.rows), encoding="utf-8")
    tmp.replace(path)
    return path, export, len(pairs)


def sft_view(rows: list[dict[str, Any]], format: str) -> list[dict[str, Any]]:
    """The rows as prompt/completion pairs for `data check` (a pair's chosen answer, a KTO row's completion)."""
    if format == "dpo":
        return [{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows]
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]


def export_report(db: str, format: str, out: Path, eval_files: list[Path]) -> dict[str, Any]:
    """Export, then run `data check` on the rows (as prompt/completion pairs): within themselves, and against
    each evaluation file for leakage. Returns the report `export_report.json` holds."""
    from tunesmith.config import load_config
    from tunesmith.data.quality.check import check_files

    store = open_existing(db)
    try:
        path, export, read = export_feedback(store, format, out)
    finally:
        store.close()
    view = out / f".{format}.check.jsonl"
    view.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sft_view(export.rows, format)))
    cfg = load_config(None, ["data.format=auto"])
    checks = []
    try:
        for against in [None, *eval_files] if export.rows else []:
            paths = {"train": str(view), "val": str(against) if against else None}
            found = check_files(paths, cfg).as_dict()
            checks.append({"against": str(against) if against else None, "ok": found["ok"], "counts": found["counts"]})
    finally:
        view.unlink(missing_ok=True)
    skipped = dict(export.skipped.most_common())
    return {"file": str(path), "format": format, "feedback_rows": read, "rows": len(export.rows), "skipped": skipped,
            "checks": checks}  # fmt: skip


def open_existing(db: str) -> FeedbackStore:
    """The database at `db`; a SQLite path must exist (an empty new file would export nothing, silently)."""
    from tunesmith.errors import UserError

    if "://" not in db and not Path(db).is_file():
        raise UserError(f"no feedback database at {db} (`tunesmith serve` writes ./feedback.db); name one with --db")
    return FeedbackStore(db)
