"""Config loading: shipped configs validate, unknown keys suggest, overrides type-check, YAML is safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.errors import UserError

pytestmark = pytest.mark.unit
CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    load_config(path)


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"sft-lora.yaml", "sft-full.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.lrr=1", "unknown key 'train.lrr'. Did you mean \"lr\"?"),
        ("trian.lr=1", 'Did you mean "train"?'),
        ("method.name=qlorra", "must be one of: lora, qlora, full"),
        ("method.name=[lora]", "must be one of: lora, qlora, full"),
        ("method=3", "'method': Input should be a valid dictionary"),
        ("task.name=clasify", "'clasify' is not a task; one of: sft, classify"),
        ("train.lr=abc", "'train.lr'"),
        ("run.name=../escape", "plain folder name"),
        ("train.batch_size=0", "'train.batch_size'"),
    ],
)
def test_bad_values_are_one_line_errors(override, needle):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_overrides_are_typed_and_nested():
    cfg = load_config(None, ["train.lr=1e-4", "method.r=4", "data.max_length=128", "train.early_stopping_patience=2"])
    assert cfg.train.lr == 1e-4 and cfg.method.r == 4 and cfg.data.max_length == 128
    assert cfg.method.name == "lora"


def test_python_yaml_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("run: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="invalid YAML"):
        load_config(path)


def test_bare_on_off_words_mean_the_switch_not_a_boolean():
    cfg = load_config(None, ["train.activation_checkpointing=off", "eval.exact_match=on"])
    assert cfg.train.activation_checkpointing == "off" and cfg.eval.exact_match == "on"
