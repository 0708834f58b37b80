"""Evaluation and generation speed: tunesmith's paths against plain transformers on the same rows.

    python bench/eval_speed.py [--rows 64] [--new-tokens 48]

- Eval loss: `evaluate_loss` (length-sorted batches, logits only at supervised positions, bf16 autocast) vs a plain
  loop calling `model(**batch, labels=...)` on batches in file order, fp32. Both report the same mean loss.
- Generation: `generate_all` (length-sorted batches, left padding, KV cache, bf16 autocast) vs plain
  `model.generate` one prompt at a time, greedy, fp32. New tokens per second of wall time.
"""

from __future__ import annotations

import argparse
import time

import torch
from paths import ALPACA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()

    from tunesmith.data.batching import collate
    from tunesmith.data.load import load_examples
    from tunesmith.data.tokenize import encode_examples
    from tunesmith.evaluate.generate import generate_all, generate_batch
    from tunesmith.models import load_causal_lm, load_tokenizer
    from tunesmith.train.loss import evaluate_loss

    tok = load_tokenizer("smollm2-135m")
    examples = load_examples(str(ALPACA), max_rows=args.rows).examples
    encoded, _ = encode_examples(tok, examples, 512)
    tokens = sum(len(e.input_ids) for e in encoded)
    fp32 = load_causal_lm("smollm2-135m", dtype=torch.float32).eval()
    bf16 = load_causal_lm("smollm2-135m", dtype=torch.bfloat16).eval()

    start = time.perf_counter()
    ours = evaluate_loss(bf16, encoded, tok.pad_token_id, batch_size=16, bf16=True)
    ours_s = time.perf_counter() - start
    start, total, count = time.perf_counter(), 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), 16):
            batch = collate(encoded[i : i + 16], tok.pad_token_id)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(fp32(**batch).loss) * n
            count += n
    plain_s = time.perf_counter() - start
    print(
        f"eval loss: tunesmith {ours['loss']:.4f} in {ours_s:.1f}s ({tokens / ours_s:.0f} tok/s) | "
        f"plain transformers {total / count:.4f} in {plain_s:.1f}s ({tokens / plain_s:.0f} tok/s) | "
        f"speed-up {plain_s / ours_s:.2f}x"
    )

    prompts = [list(e.prompt_messages) for e in examples[:32]]
    start = time.perf_counter()
    answers = generate_all(bf16, tok, prompts, args.new_tokens, batch_size=16, bf16=True)
    ours_s = time.perf_counter() - start
    ours_new = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
    start, plain_new = time.perf_counter(), 0
    for conv in prompts:
        answer = generate_batch(fp32, tok, [conv], args.new_tokens)[0]
        plain_new += len(tok(answer, add_special_tokens=False)["input_ids"])
    plain_s = time.perf_counter() - start
    print(
        f"generation ({len(prompts)} prompts, <= {args.new_tokens} new tokens): tunesmith {ours_new / ours_s:.1f} "
        f"new tok/s | one-at-a-time fp32 generate {plain_new / plain_s:.1f} new tok/s | "
        f"speed-up {plain_s / ours_s:.2f}x"
    )


if __name__ == "__main__":
    main()
