"""Shared fixtures: a tiny random causal LM with a real (tiny, trained-in-test) BPE tokenizer and ChatML template."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each (and in the CLIs they start), not two threads
    # per worker contending for the same two cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    'Extract the name and city: Maria lives in Porto. {"name": "Maria", "city": "Porto"}',
    "What is the capital of France? The capital of France is Paris.",
    "user assistant system 0123456789 , . : ; ! ? { } [ ] \" ' - _",
] * 20


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def tiny_llama_config(tokenizer, config_class=None, **overrides):
    """The 2-layer, 32-wide Llama config of the tiny test models (`overrides` change single fields); the same
    shape for another architecture with `config_class` (e.g. `Qwen2Config`)."""
    from transformers import LlamaConfig

    fields = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    return (config_class or LlamaConfig)(**(fields | overrides))


def build_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide Llama with the tiny tokenizer: a model folder like any local HF folder."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = tiny_llama_config(tokenizer)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def qa_data(tmp_path: Path) -> Path:
    """40 short prompt/completion rows a tiny model can partly learn."""
    rows = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


BERT_WORDS = "good great fine bad awful poor movie film plot was is the a very not maria lives in porto works at acme"


def build_tiny_bert_dir(path: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT encoder (a plain BertModel with pooler, like all-MiniLM) and a WordPiece
    tokenizer whose vocabulary covers the test sentences, with `##` pieces for any other word."""
    import string

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits
    words = sorted(set(BERT_WORDS.split()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *(f"##{c}" for c in chars), ".", ","]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def sets_for(tiny_model_dir: Path, qa_data: Path, tmp_path: Path):
    """tests/reliability: a config file and `--set` options for a tiny run named `name` under tmp_path/runs."""
    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  max_steps: 4\n")
    tiny = ["train.precision=fp32", "train.batch_size=4", "data.max_length=64", "train.lr=5e-3"]

    def build(name: str, *extra: str) -> list[str]:
        where = [f"model.name={tiny_model_dir}", f"data.train={qa_data}", f"run.output_dir={tmp_path / 'runs'}"]
        args = [*where, f"run.name={name}", *tiny, *extra]
        return [str(config), *(x for a in args for x in ("--set", a))]

    return build


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server in a temp folder for the session (initdb + pg_ctl), stopped afterwards; skips
    with the reason where the server binaries are missing."""
    from tunesmith.databases import local_postgres, postgres_missing

    if reason := postgres_missing():
        pytest.skip(reason)
    with local_postgres() as url:
        yield url
