"""Serving under load: `tunesmith serve` (continuous batching) against one-at-a-time `generate` on the same model.

    .venv/bin/python bench/serve_load.py                       # concurrency 1, 4, 16, 64; ~15 min on 2 cores
    .venv/bin/python bench/serve_load.py --concurrency 1,16 --requests 32 --rounds 1

The server is the real console script (`tunesmith serve smollm2-135m`) on a free port, called over HTTP by asyncio
clients (httpx, streaming, so time to first token is measured). Each client sends Alpaca instructions one after
another, greedy, `max_tokens` new tokens at most (an answer may stop earlier at its end-of-turn token; the tokens
counted are the ones generated, from the server's usage). The anchor is the same prompts through plain
`model.generate`, one prompt at a time, bf16 weights under bf16 autocast (as ../shared/bench/plain_scoring.py),
in this process. Rounds alternate which goes first.
Target (issue 20): at 16 concurrent clients, >= 5x the anchor's generated tokens/s, and no failed request below
the queue bound. Results: <out>/serve-load.json and the table printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _sst2 import read_jsonl
from paths import ALPACA, RUNS

MODEL = "smollm2-135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompts(count: int) -> list[str]:
    rows = read_jsonl(ALPACA)
    return [(r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")) for r in rows[:count]]


def anchor(texts: list[str], max_tokens: int) -> dict:
    """Plain transformers as ../shared/bench/plain_scoring.py runs it: bf16 weights, bf16 autocast, the chat
    template, then `generate` per prompt (greedy, KV cache). (fp32 weights under autocast would re-cast every
    weight at every token and make a strawman of the anchor.) On a host where bf16 matmuls measure slower than
    fp32 ones, the server decodes in fp32 (`train.precision: auto`), and so does the anchor: fp32 weights, no
    autocast; comparing against a slowed anchor would credit batching with the precision's gain."""
    import contextlib

    import torch

    from tunesmith.models import load_causal_lm, load_tokenizer
    from tunesmith.train.precision import use_bf16

    bf16 = use_bf16("auto")
    dtype = torch.bfloat16 if bf16 else torch.float32
    tokenizer, model = load_tokenizer(MODEL), load_causal_lm(MODEL, dtype=dtype).eval()
    generated, started = 0, time.perf_counter()
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), precision:
        for text in texts:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            out = model.generate(input_ids=ids, max_new_tokens=max_tokens, do_sample=False)
            generated += out.shape[1] - ids.shape[1]
    seconds = time.perf_counter() - started
    return {
        "requests": len(texts),
        "generated_tokens": generated,
        "seconds": seconds,
        "tokens_per_s": generated / seconds,
        "precision": "bf16" if bf16 else "fp32",
    }


def start_server(port: int, max_batch: int) -> subprocess.Popen:
    import httpx

    tunesmith = str(Path(sys.executable).with_name("tunesmith"))
    command = [tunesmith, "serve", MODEL, "--port", str(port), "--max-batch", str(max_batch), "--max-queue", "256"]
    command += ["--feedback-db", str(RUNS / "serve-load-feedback.db")]  # responses are logged, as by default
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up in 180 s")


async def one_request(client, url: str, text: str, max_tokens: int) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, first, usage = time.perf_counter(), None, None
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            return {"ok": False, "status": response.status_code}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            usage = chunk.get("usage") or usage
    latency = time.perf_counter() - started
    return {"ok": True, "latency": latency, "ttft": first or latency, "tokens": usage["completion_tokens"]}


async def load(port: int, texts: list[str], concurrency: int, max_tokens: int) -> dict:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    pending = list(texts)
    results: list[dict] = []

    async def worker(client) -> None:
        while pending:
            results.append(await one_request(client, url, pending.pop(0), max_tokens))

    limits = httpx.Limits(max_connections=concurrency + 4)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    good = [r for r in results if r["ok"]]
    tokens = sum(r["tokens"] for r in good)
    latencies, ttfts = sorted(r["latency"] for r in good), sorted(r["ttft"] for r in good)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "failed": len(results) - len(good),
        "seconds": seconds,
        "requests_per_s": len(good) / seconds,
        "generated_tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "latency_p50": statistics.median(latencies),
        "latency_p95": nearest_rank(latencies, 0.95),
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": nearest_rank(ttfts, 0.95),
    }


def nearest_rank(ordered: list[float], share: float) -> float:
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def serve_round(args: argparse.Namespace, levels: list[int]) -> list[dict]:
    port = free_port()
    proc = start_server(port, max(levels))
    try:
        asyncio.run(load(port, prompts(4), 2, 8))  # warm-up: first-call costs out of the measured runs
        out = []
        for level in levels:
            texts = prompts(max(args.requests, 2 * level))
            out.append(asyncio.run(load(port, texts, level, args.max_tokens)))
            print(f"  serve c={level}: {out[-1]['tokens_per_s']:.1f} tok/s, {out[-1]['failed']} failed", flush=True)
        return out
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=32, help="requests per level (at least 2x the level)")
    parser.add_argument("--anchor-requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RUNS / "bench-serve")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    rounds = []
    for index in range(args.rounds):
        order = ["anchor", "serve"] if index % 2 == 0 else ["serve", "anchor"]
        found: dict = {"order": order}
        for system in order:
            if system == "anchor":
                found["anchor"] = anchor(prompts(args.anchor_requests), args.max_tokens)
                print(f"  anchor: {found['anchor']['tokens_per_s']:.1f} tok/s", flush=True)
            else:
                found["serve"] = serve_round(args, levels)
        found["load_after"] = os.getloadavg()[0]
        rounds.append(found)
    report(rounds, args)


COLUMNS = "round system      c  req  fail  req/s  tok/s  p50 s  p95 s  TTFT p50  TTFT p95  x anchor"


def row(index: int, r: dict, base: float) -> str:
    cells = [
        f"{index:>5}",
        f"{'serve':<6}",
        f"{r['concurrency']:>6}",
        f"{r['requests']:>4}",
        f"{r['failed']:>5}",
        f"{r['requests_per_s']:>6.2f}",
        f"{r['tokens_per_s']:>6.1f}",
        f"{r['latency_p50']:>6.1f}",
        f"{r['latency_p95']:>6.1f}",
        f"{r['ttft_p50']:>9.2f}",
        f"{r['ttft_p95']:>9.2f}",
        f"{r['tokens_per_s'] / base:>9.2f}",
    ]
    return " ".join(cells)


def report(rounds: list[dict], args: argparse.Namespace) -> None:
    print("\n" + COLUMNS)
    for index, found in enumerate(rounds):
        base = found["anchor"]["tokens_per_s"]
        print(
            f"{index:>5} anchor       1 {found['anchor']['requests']:>4}     0      - {base:>6.1f}" + " " * 44 + "1.00"
        )
        for r in found["serve"]:
            print(row(index, r, base))
    at16 = [
        r["tokens_per_s"] / f["anchor"]["tokens_per_s"] for f in rounds for r in f["serve"] if r["concurrency"] == 16
    ]
    failed = sum(r["failed"] for f in rounds for r in f["serve"])
    verdict = {"ratio_at_16": at16, "failed": failed, "met": bool(at16) and min(at16) >= 5 and failed == 0}
    ratios = ", ".join(f"{x:.2f}x" for x in at16)
    print(f"\nat 16 clients: {ratios} the anchor; failed requests {failed}; target met: {verdict['met']}")
    (args.out / "serve-load.json").write_text(json.dumps({"rounds": rounds, "verdict": verdict}, indent=1))
    print(f"wrote {args.out / 'serve-load.json'}")


if __name__ == "__main__":
    main()
