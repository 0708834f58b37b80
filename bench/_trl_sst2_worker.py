"""The plain stack's training for bench/end_to_end.py: TRL SFTTrainer with its defaults + PEFT LoRA, as
../shared/bench/trl_baseline.py runs it, on SST-2 text/label rows as chat prompt/completion pairs; saves the adapter.

    python bench/_trl_sst2_worker.py MODEL_DIR TRAIN.jsonl SYSTEM_PROMPT OUT_DIR

Prints one JSON line: rows, train seconds, peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time


def main() -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model_dir, train_path, system, out_dir = sys.argv[1:5]
    rows = [json.loads(line) for line in open(train_path, encoding="utf-8") if line.strip()]
    data = Dataset.from_list(
        [
            {
                "prompt": [{"role": "system", "content": system}, {"role": "user", "content": r["text"]}],
                "completion": [{"role": "assistant", "content": r["label"]}],
            }
            for r in rows
        ]
    )
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_sst2_"),
        use_cpu=True,
        num_train_epochs=1,
        max_length=512,
        per_device_train_batch_size=8,
        learning_rate=2e-4,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        eval_strategy="no",
        seed=0,
    )
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok, peft_config=lora)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(out_dir)  # the adapter (safetensors) that plain_scoring.py --adapter loads
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"rows": len(rows), "train_s": round(seconds, 1), "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
