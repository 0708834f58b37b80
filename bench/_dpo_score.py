"""Held-out preference accuracy for bench/dpo.py: the base and each adapter, scored the same way; one JSON line.

Usage: python bench/_dpo_score.py TEST.jsonl '{"name": "ADAPTER_DIR", ...}'

A pair counts when its chosen answer has the higher summed log-probability (tunesmith's encoding of the test rows,
the precision `train.precision: auto` picks, adapters merged).
"""

from __future__ import annotations

import json
import sys

from peft import PeftModel

from tunesmith.data.load import load_examples
from tunesmith.data.preference import encode_pairs
from tunesmith.data.tokenize import pad_id, with_chat_template
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.train.numerics import completion_logps
from tunesmith.train.precision import inference, use_bf16
from tunesmith.train.preference import collate_pairs

BATCH = 16


def accuracy(model, pairs, pad: int) -> float:
    wins = 0
    with inference(model, use_bf16("auto")):
        for start in range(0, len(pairs), BATCH):
            logps, _ = completion_logps(model, collate_pairs(pairs[start : start + BATCH], pad))
            chosen, rejected = logps.chunk(2)
            wins += int((chosen > rejected).sum())
    return wins / len(pairs)


def main() -> None:
    test, adapters = sys.argv[1], json.loads(sys.argv[2])
    tokenizer = with_chat_template(load_tokenizer("smollm2-135m"))
    examples = load_examples(test, "preference").examples
    pairs, _ = encode_pairs(tokenizer, examples, 512)
    pairs.sort(key=lambda p: p.length)
    pad = pad_id(tokenizer)
    scores = {"base": accuracy(load_causal_lm("smollm2-135m"), pairs, pad), "pairs": len(pairs)}
    for name, folder in adapters.items():
        model = PeftModel.from_pretrained(load_causal_lm("smollm2-135m"), folder).merge_and_unload()
        scores[name] = accuracy(model, pairs, pad)
    print(json.dumps(scores))


if __name__ == "__main__":
    main()
