"""The serving engine alone, without HTTP: closed-loop client threads against `serve.engine.Engine` on the real
model, for A/B runs of engine changes (each run is one process; alternate them, this host's noise between
processes is about ±15%).

    .venv/bin/python bench/serve_engine.py                  # 16 clients x 3 Alpaca prompts, greedy, 64 tokens
    .venv/bin/python bench/serve_engine.py --no-packed      # fp32 decode steps on plain F.linear

Prints generated tokens, seconds, tokens/s and the number of engine steps.
"""

from __future__ import annotations

import argparse
import threading
import time

from serve_load import prompts as alpaca_prompts

MODEL = "smollm2-135m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--each", type=int, default=3, help="requests each client sends, one after another")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-packed", action="store_true")
    args = parser.parse_args()

    import torch

    from tunesmith.models import load_causal_lm, load_tokenizer
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.prompts import chat_prompt_ids
    from tunesmith.serve.sampling import Sampling
    from tunesmith.train.precision import use_bf16

    bf16 = use_bf16("auto")
    tokenizer = load_tokenizer(MODEL)
    model = load_causal_lm(MODEL, dtype=torch.float32).eval()
    texts = alpaca_prompts(args.clients * args.each)
    prompts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in texts]
    engine = Engine(model, tokenizer, max_batch=args.clients, max_queue=1000, bf16=bf16, packed=not args.no_packed)
    results = []

    def client(k: int) -> None:
        for prompt in prompts[k * args.each : (k + 1) * args.each]:
            results.append(engine.submit(prompt, Sampling(max_tokens=args.max_tokens, temperature=0)).result())

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    engine.close()
    tokens = sum(r.completion_tokens for r in results)
    print(
        f"precision {'bf16' if bf16 else 'fp32'} packed {not args.no_packed}: {tokens} tokens in {seconds:.1f} s, "
        f"{tokens / seconds:.1f} tok/s, {engine.stats().steps} steps"
    )


if __name__ == "__main__":
    main()
