"""The quick speed bench's model and data, for the micro-benchmarks that time single steps.

smollm2-135m as `tunesmith train` loads it for SFT (bf16 frozen base, fp32 LoRA r=16 all-linear, PEFT's input
casts skipped as the loop skips them), and the first 96 Alpaca rows, tokenized with its chat template.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from paths import ALPACA


def quick_sft_model_and_data(rows: int = 96) -> tuple[Any, list[Any]]:
    """(model, encoded training examples)."""
    from tunesmith.compat.peft_casts import skip_adapter_input_casts
    from tunesmith.config import load_config
    from tunesmith.data.prepare import prepare_data
    from tunesmith.data.tokenize import load_chat_tokenizer
    from tunesmith.recipes.train import load_for_training
    from tunesmith.tasks import TASKS

    with tempfile.TemporaryDirectory() as tmp:
        lines = ALPACA.read_text().splitlines()
        train, val = Path(tmp) / "train.jsonl", Path(tmp) / "val.jsonl"
        train.write_text("\n".join(lines[:rows]) + "\n")
        val.write_text("\n".join(lines[rows : rows + 32]) + "\n")
        sets = [f"data.train={train}", f"data.val={val}", "data.format=alpaca", "method.dropout=0"]
        cfg = load_config(None, sets)
        tokenizer = load_chat_tokenizer(cfg)
        data = prepare_data(cfg.data, tokenizer, 0).train
    model = load_for_training(cfg, TASKS["sft"].steps, None, tokenizer)
    skip_adapter_input_casts(model)
    return model, data
