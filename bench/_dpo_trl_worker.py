"""One TRL DPOTrainer run for bench/dpo.py (the anchor: TRL defaults but for the shared settings); prints one JSON
line and saves the adapter.

Usage: python bench/_dpo_trl_worker.py TRAIN.jsonl VAL.jsonl OUT_DIR SETTINGS_JSON
"""

from __future__ import annotations

import json
import resource
import sys
import time

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from tunesmith.models import resolve_model


def rows(path: str) -> Dataset:
    return Dataset.from_list([json.loads(line) for line in open(path)])


def main() -> None:
    train, _val, out, settings = sys.argv[1:5]
    s = json.loads(settings)
    model_dir = resolve_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = DPOConfig(
        output_dir=out,
        use_cpu=True,
        num_train_epochs=s["epochs"],
        per_device_train_batch_size=s["batch_size"],
        learning_rate=s["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=s["warmup_ratio"],  # a float below 1 is a ratio of the total steps (transformers 5)
        beta=s["beta"],
        max_length=s["max_length"],
        save_strategy="no",
        report_to=[],
        logging_steps=4,
        eval_strategy="no",
        seed=0,
        **({} if s.get("trl_bf16") is None else {"bf16": s["trl_bf16"]}),
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=rows(train), processing_class=tokenizer, peft_config=lora
    )
    data = trainer.train_dataset
    tokens = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"], strict=True)
    )
    started = time.time()
    trainer.train()
    train_s = time.time() - started
    trainer.save_model(out + "/adapter")
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(
        json.dumps(
            {
                "system": "trl-dpo",
                "n_train": len(data),
                "train_tokens": tokens,
                "train_s": round(train_s, 1),
                "train_tokens_per_s": round(tokens / train_s, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "last_logged_loss": losses[-1] if losses else None,
                "bf16": args.bf16,
                "gradient_checkpointing": args.gradient_checkpointing,
                "adapter": out + "/adapter",
            }
        )
    )


if __name__ == "__main__":
    main()
