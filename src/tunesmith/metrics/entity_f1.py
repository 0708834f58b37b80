"""Entity-level precision, recall and F1 for BIO tags, scored as seqeval (and conlleval) do by default.

An entity counts as found only when its type and its exact span match. Spans are read leniently, as conlleval
reads them: an `I-X` that follows `O` or another type starts a new entity rather than being dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.metrics.macro_f1 import f1

Entity = tuple[str, int, int]  # (type, first token, last token + 1)


def _split(tag: str) -> tuple[str, str]:
    """("B"|"I"|"O", type) of a tag such as "B-person"; a bare "B"/"I" has an empty type."""
    if tag == "O" or not tag:
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return (prefix, kind) if prefix in {"B", "I"} else ("O", "")


def entities(tags: Sequence[str]) -> set[Entity]:
    """The entity spans in one tag sequence."""
    found: set[Entity] = set()
    start, current = None, ""
    for i, tag in enumerate([*tags, "O"]):  # the sentinel closes an entity that runs to the end
        prefix, kind = _split(tag)
        continues = prefix == "I" and start is not None and kind == current
        if start is not None and not continues:
            found.add((current, start, i))
            start = None
        if prefix != "O" and start is None:
            start, current = i, kind
    return found


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences, plus the entity counts."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    hits = n_gold = n_pred = 0
    for gold_tags, pred_tags in zip(gold, predicted, strict=True):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"a sentence has {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        g, p = entities(gold_tags), entities(pred_tags)
        hits, n_gold, n_pred = hits + len(g & p), n_gold + len(g), n_pred + len(p)
    return {
        "precision": hits / n_pred if n_pred else 0.0,
        "recall": hits / n_gold if n_gold else 0.0,
        "f1": f1(hits, n_pred, n_gold),
        "gold_entities": n_gold,
        "predicted_entities": n_pred,
    }


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 (exact span and type)."""
    return entity_scores(gold, predicted)["f1"]
