"""Label-likelihood scoring speed and MFU of the base model on SST-2 dev rows (forward only).

    python bench/label_scoring_speed.py                      # 300 rows, batch 16, bf16, 2 repeats
    python bench/label_scoring_speed.py --rows 872 --batch-size 32
    python bench/label_scoring_speed.py --shots 8             # long rows: 8 training rows as earlier turns
    python bench/label_scoring_speed.py --shots 16 --rows 200 --vary-shots   # long rows, each with its own shots

Times `evaluate.label_scoring.label_logprobs` (what `tunesmith eval` runs for label likelihood) on smollm2-135m
with the SST-2 system prompt and the labels negative/positive. MFU = useful forward FLOPs (2·N_body per prompt
token once and per label token per candidate, plus the lm_head at the label positions) per second over a bf16
matmul peak measured in the same run. The prompt tokens every row begins with (the system turn) run once
(`label_scoring.SharedPrefix`); "computed" counts them once, the headline MFU counts them for every row, as a
row-by-row scorer computes them. To compare with older code, run this file with
`PYTHONPATH=<worktree of that commit>/src`.
"""

from __future__ import annotations

import argparse
import time

from _sst2 import NAMES, read_jsonl
from paths import SST2
from sft_speed import bf16_matmul_peak

SYSTEM = "Classify the sentiment of the movie review. Answer positive or negative."
LABELS = ["negative", "positive"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shots", type=int, default=0, help="training rows before each prompt (long rows)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument(
        "--vary-shots", action="store_true", help="different shots for every row (else all rows share the same ones)"
    )
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.evaluate.label_scoring import MIN_SHARED, encode_candidates, label_logprobs, shared_length
    from tunesmith.models.resolve import resolve_model

    folder = resolve_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    rows = read_jsonl(SST2 / "dev.jsonl")[: args.rows]
    train = read_jsonl(SST2 / "train.jsonl")[: max(args.shots * len(rows), args.shots)]
    prompts = []
    for i, r in enumerate(rows):  # --vary-shots: each row its own shots, as `tunesmith eval` draws them
        first = i * args.shots if args.vary_shots else 0
        shots = [
            turn
            for s in train[first : first + args.shots]
            for turn in ({"role": "user", "content": s["text"]}, {"role": "assistant", "content": NAMES[s["label"]]})
        ]
        prompts.append([{"role": "system", "content": SYSTEM}, *shots, {"role": "user", "content": r["text"]}])
    encoded = [encode_candidates(tokenizer, p, LABELS) for p in prompts]
    prompt_tokens = sum(len(c.prefix) for c in encoded)
    label_tokens = sum(len(s) for c in encoded for s in c.suffixes)
    embed = model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.parameters()) - embed
    flops = 2 * body * (prompt_tokens + label_tokens) + 2 * embed * label_tokens
    shared = shared_length(encoded) if shared_length(encoded) >= MIN_SHARED else 0
    computed = flops - 2 * body * shared * (len(encoded) - 1)
    peak = bf16_matmul_peak(trials=3)
    print(
        f"{len(rows)} rows · {prompt_tokens / len(rows):.1f} prompt tokens/row, {shared} shared by all · "
        f"peak {peak:.0f} GFLOP/s"
    )
    for repeat in range(args.repeats):
        started = time.perf_counter()
        label_logprobs(model, tokenizer, prompts, LABELS, args.batch_size, bf16=not args.fp32)
        seconds = time.perf_counter() - started
        print(
            f"repeat {repeat}: {len(rows) / seconds:.1f} rows/s · {flops / seconds / 1e9:.0f} GFLOP/s · "
            f"MFU {flops / seconds / (peak * 1e9):.1%} (computed {computed / seconds / (peak * 1e9):.1%})"
        )


if __name__ == "__main__":
    main()
