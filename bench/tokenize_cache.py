"""Tokenization with a cold and a warm cache (`data.cache_tokenized`), on Alpaca rows with SmolLM2's tokenizer.

    python bench/tokenize_cache.py [--rows 400 2000]

For each row count: plain `encode_examples`; a cold cache (fingerprint + encode + write); a warm cache
(fingerprint + read). The cache lives in a temporary folder, so the user's cache is untouched. Best of 3 runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from paths import ALPACA


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[400, 2000])
    args = parser.parse_args()

    from tunesmith.data.load import load_examples
    from tunesmith.data.token_cache import encode_cached, tokenizer_fingerprint
    from tunesmith.data.tokenize import encode_examples
    from tunesmith.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    print(f"tokenizer fingerprint: {best_of(lambda: tokenizer_fingerprint(tok)):.3f} s")
    print("| rows | tokens | plain encode s | cold cache s | warm cache s | warm speed-up |\n|---|---|---|---|---|---|")
    for rows in args.rows:
        examples = load_examples(str(ALPACA), max_rows=rows).examples
        encoded, _ = encode_examples(tok, examples, 512)
        plain = best_of(lambda: encode_examples(tok, examples, 512))  # noqa: B023 - called at once

        def cold() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                assert not encode_cached(tok, examples, 512, root=Path(tmp))[2]  # noqa: B023

        with tempfile.TemporaryDirectory() as tmp:
            encode_cached(tok, examples, 512, root=Path(tmp))
            warm = best_of(lambda: encode_cached(tok, examples, 512, root=Path(tmp)))  # noqa: B023
            assert encode_cached(tok, examples, 512, root=Path(tmp))[0] == encoded  # noqa: B023
        cold_s = best_of(cold)
        tokens = sum(len(e.input_ids) for e in encoded)
        print(f"| {rows} | {tokens} | {plain:.3f} | {cold_s:.3f} | {warm:.3f} | {plain / warm:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
