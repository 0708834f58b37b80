"""Task building blocks: label sets, the tokens_tags format, sub-token alignment, packing, loss normalisation."""

from __future__ import annotations

import pytest
import torch

from tunesmith.data.example import Example
from tunesmith.data.formats import FORMATS, RowError
from tunesmith.data.formats.tokens_tags import tokens_and_tags
from tunesmith.errors import UserError
from tunesmith.methods.peft_task import peft_task_type
from tunesmith.tasks import TASKS
from tunesmith.tasks.base import label_set
from tunesmith.tasks.classify import LabeledText
from tunesmith.tasks.classify import collate as classify_collate
from tunesmith.tasks.classify import loss_sum as classify_loss_sum
from tunesmith.tasks.heads import with_head_lr
from tunesmith.tasks.ner import align, space_before_words
from tunesmith.tasks.pretrain import pack, paragraphs
from tunesmith.train.numerics import IGNORE_INDEX, accumulate_step

pytestmark = pytest.mark.unit


def test_task_name_is_checked_against_the_registry():
    from tunesmith.config import load_config
    from tunesmith.config.components import TASK_NAMES

    assert set(TASK_NAMES) == set(TASKS)
    for name in TASKS:
        assert load_config(None, [f"task.name={name}"]).task.name == name
    with pytest.raises(UserError, match="'clasify' is not a task; one of: sft, classify, ner, pretrain"):
        load_config(None, ["task.name=clasify"])


def test_label_set_sorts_numbers_numerically_and_refuses_unknown_labels():
    assert label_set(None, ["10", "2", "2", "1"], "f") == ["1", "2", "10"]
    assert label_set(None, ["pos", "neg"], "f") == ["neg", "pos"]
    assert label_set(["pos", "neg"], ["neg"], "f") == ["pos", "neg"]  # configured order is the id order
    with pytest.raises(UserError, match="not in task.labels"):
        label_set(["pos", "neg"], ["meh"], "f")
    with pytest.raises(UserError, match="at least 2"):
        label_set(None, ["pos", "pos"], "f")


def test_tokens_tags_round_trip_and_row_errors():
    fmt = FORMATS["tokens_tags"]
    example = fmt.to_example({"tokens": ["Maria", "lives", "in", "Porto"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]}, 3)
    assert tokens_and_tags(example) == (["Maria", "lives", "in", "Porto"], ["B-PER", "O", "O", "B-LOC"])
    assert example.line == 3
    bad = [
        ({"tokens": ["a", "b"], "ner_tags": ["O"]}, "length_mismatch"),
        ({"tokens": ["a b"], "ner_tags": ["O"]}, "space_in_token"),
        ({"tokens": [], "ner_tags": []}, "empty_field"),
        ({"tokens": "a b", "ner_tags": ["O"]}, "wrong_type"),
        ({"tokens": ["a"]}, "missing_field"),
    ]
    for record, code in bad:
        with pytest.raises(RowError) as err:
            fmt.to_example(record, 1)
        assert err.value.code == code


def test_first_sub_token_carries_the_tag(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    # "portoxyz" splits into porto ##x ##y ##z; "\u200b" has no sub-token at all.
    ids, labels, firsts, truncated = align(tokenizer, ["Maria", "Portoxyz", "\u200b", "."], [1, 2, 3, 0], 64)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "maria", "porto", "##x", "##y", "##z", ".", "[SEP]"]
    assert labels == [IGNORE_INDEX, 1, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 0, IGNORE_INDEX]
    assert firsts == [-1, 0, 1, -1, -1, -1, 3, -1] and not truncated
    ids, labels, firsts, truncated = align(tokenizer, ["Maria", "Portoxyz", "."], [1, 2, 0], 4)
    assert truncated and len(ids) == 4 and firsts == [-1, 0, 1, -1]  # the cut keeps [SEP]


def test_byte_level_words_get_their_leading_space(tiny_tokenizer, tiny_bert_dir):
    from transformers import AutoTokenizer

    assert space_before_words(tiny_tokenizer)  # "Ġlives" in running text, not "lives"
    assert not space_before_words(AutoTokenizer.from_pretrained(tiny_bert_dir))
    words = ["The", "quick", "brown", "fox"]
    ids, _, firsts, _ = align(tiny_tokenizer, words, None, 64, spaced=True)
    assert ids == tiny_tokenizer(" ".join(words))["input_ids"]
    assert [w for w in firsts if w >= 0] == [0, 1, 2, 3]


def test_paragraphs_are_documents_with_their_lines():
    docs = paragraphs("\nFirst line\nstill first.\n\n  \nSecond.\n\n\nThird\n")
    assert [(d.line, d.text) for d in docs] == [(2, "First line\nstill first."), (6, "Second."), (9, "Third")]


def test_packing_puts_eos_between_documents_and_fills_every_block(tiny_tokenizer):
    docs = [Example(line=i + 1, text=f"The quick brown fox number {i}.") for i in range(5)]
    per_doc = [tiny_tokenizer(d.text, add_special_tokens=False)["input_ids"] for d in docs]
    stream = [t for ids in per_doc for t in [*ids, tiny_tokenizer.eos_token_id]]
    blocks, report = pack(tiny_tokenizer, docs, 16)
    assert all(len(b.input_ids) == 16 for b in blocks) and len(blocks) == len(stream) // 16
    assert [t for b in blocks for t in b.input_ids] == stream[: len(blocks) * 16]  # EOS after each document
    assert all(b.labels == b.input_ids for b in blocks)
    assert blocks[1].line == 1 + 16 // (len(per_doc[0]) + 1)  # a block remembers the document it starts in
    kept, _ = pack(tiny_tokenizer, docs, 16, keep_remainder=True)
    assert [t for b in kept for t in b.input_ids] == stream and report.encoded == len(blocks)


def test_classification_loss_is_normalised_by_the_whole_step():
    """Micro-batches of 3 and 1 examples give the gradient of one batch of 4 (per-example mean)."""
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).float()
            return type("Out", (), {"logits": self.head((self.emb(input_ids) * mask).sum(1) / mask.sum(1))})

    model = Tiny()
    rows = [LabeledText([1, 2, 3], 0, 1), LabeledText([4, 5], 2, 2), LabeledText([6], 1, 3), LabeledText([7, 8], 0, 4)]

    def grads(micro):
        model.zero_grad()
        accumulate_step(model, micro, None, classify_loss_sum, lambda b: int(b["labels"].numel()))
        return [p.grad.clone() for p in model.parameters()]

    split = grads([classify_collate(rows[:3], 0), classify_collate(rows[3:], 0)])
    whole = grads([classify_collate(rows, 0)])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(split, whole, strict=True))


def test_peft_task_type_follows_the_head():
    Seq = type("BertForSequenceClassification", (torch.nn.Module,), {})
    Tok = type("LlamaForTokenClassification", (torch.nn.Module,), {})
    assert peft_task_type(Seq()) == "SEQ_CLS" and peft_task_type(Tok()) == "TOKEN_CLS"
    assert peft_task_type(torch.nn.Linear(1, 1)) == "CAUSAL_LM" and peft_task_type(None) == "CAUSAL_LM"


def test_the_new_head_gets_its_own_rate_in_every_group_and_keeps_its_decay(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    from tunesmith.config import load_config
    from tunesmith.methods import layerwise_lr
    from tunesmith.train.loop import default_param_groups

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    cfg = load_config(None, ["task.name=classify", "train.lr=2e-5", "train.weight_decay=0.1"])
    assert cfg.task.head_lr == 1e-3  # the default, whatever train.lr is
    assert load_config(None, ["task.head_lr=null"]).task.head_lr == 1e-3  # as runs saved it before the default
    head = {id(p) for p in model.classifier.parameters()}
    for build in (default_param_groups, lambda m, t: layerwise_lr.scaled_param_groups(m, t, 0.5)):
        groups = with_head_lr(build, 1e-3)(model, cfg.train)
        params = [id(p) for g in groups for p in g["params"]]
        assert sorted(params) == sorted(id(p) for g in build(model, cfg.train) for p in g["params"])
        for group in groups:
            ids = {id(p) for p in group["params"]}
            assert ids <= head or not ids & head  # no group mixes head and body
            if ids <= head:
                assert group["lr"] == 1e-3
            else:
                assert group.get("lr", cfg.train.lr) < 1e-3
        decays = {g["weight_decay"] for g in groups if {id(p) for p in g["params"]} <= head}
        assert decays == {0.1, 0.0}  # weight and bias keep their groups' decay


def test_prompt_tuned_decoder_classifier_reads_each_rows_last_token(tiny_model_dir):
    """PEFT feeds the decoder embeddings, so transformers cannot find the padding: batched = one at a time."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from tunesmith.tasks.classify import sequence_logits

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    base.config.pad_token_id = 0
    model = get_peft_model(base, PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4)).eval()
    examples = [LabeledText([5, 6, 7, 8, 9], 0, 1), LabeledText([5, 6], 1, 2), LabeledText([11, 12, 13], 0, 3)]
    with torch.no_grad():
        batched = sequence_logits(model, classify_collate(examples, 0))
        single = torch.cat([sequence_logits(model, classify_collate([e], 0)) for e in examples])
        naive = model(**{k: v for k, v in classify_collate(examples, 0).items() if k != "labels"}).logits
    # Left padding puts the rows' padding between the virtual tokens and the text: a small shift of distances.
    torch.testing.assert_close(batched, single, atol=1e-3, rtol=1e-2)
    assert (naive - single).abs().max() > 20 * (batched - single).abs().max()  # the padding's logits


def test_prompt_tuned_tagger_scores_the_real_tokens_not_the_virtual_ones(tiny_model_dir):
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForTokenClassification

    from tunesmith.tasks.ner import loss_sum, token_logits

    torch.manual_seed(0)
    base = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=3)
    model = get_peft_model(base, PromptTuningConfig(task_type="TOKEN_CLS", num_virtual_tokens=4))
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([[1, 2, -100, -100]] * 2)}
    full = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    assert full.shape[1] == 8 and token_logits(model, batch).shape[1] == 4
    torch.testing.assert_close(token_logits(model, batch), full[:, 4:])
    loss, n = loss_sum(model, batch)
    assert n == 4 and torch.isfinite(loss)
