"""PEFT's task settings for a model, read from its head, so the PEFT methods wrap every task's model correctly.

The task type picks PEFT's wrapper: for SEQ_CLS and TOKEN_CLS it trains and saves the new classification head
(`classifier` / `score`) in full next to the adapters (`modules_to_save`); a CAUSAL_LM wrapper would leave it
frozen and random. The head is kept out of the adapted layers ("all-linear" would otherwise adapt it too).
"""

from __future__ import annotations

from typing import Any

from torch import nn

CLASSIFIER_HEADS = ["classifier", "score"]  # transformers' head names: BERT-style and Llama/GPT-2-style


def peft_task_type(model: nn.Module | None) -> str:
    """SEQ_CLS, TOKEN_CLS or CAUSAL_LM, from the transformers class of `model` (None: CAUSAL_LM)."""
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    return "CAUSAL_LM"


def peft_task_options(model: nn.Module | None) -> dict[str, Any]:
    """Keyword arguments for a PEFT config: the task type and, for classifiers, the head left unadapted."""
    task_type = peft_task_type(model)
    if task_type == "CAUSAL_LM":
        return {"task_type": task_type}
    return {"task_type": task_type, "exclude_modules": CLASSIFIER_HEADS}
