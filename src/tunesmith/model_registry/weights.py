"""The registry's weight store: each registered export folder copied once under the SHA-256 of its content.

A folder's content hash is the SHA-256 of its manifest (every file's relative path, size and SHA-256, sorted),
so two registrations of the same weights share one copy and any changed byte changes the address. Weights are
accepted as safetensors only: a pickle-based file (.bin, .pt, .pth, .pkl, .ckpt) is refused, since loading one
can run code. `verify` recomputes the manifest before a version is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tunesmith.errors import UserError
from tunesmith.train.checkpoint import file_sha256

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
MANIFEST = "registry_manifest.json"


def manifest(folder: Path) -> list[dict[str, object]]:
    """Every file under `folder` (the manifest itself aside): relative path, size and SHA-256, sorted by path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return [
        {"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
    ]


def content_hash(entries: list[dict[str, object]]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def check_safe(folder: Path) -> None:
    """A UserError naming the first pickle-based file, or a folder without safetensors weights."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no exported weights (train the run to the end, or export it)")
    unsafe = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if unsafe:
        raise UserError(f"{unsafe[0]}: pickle-based weights are not accepted; save them as safetensors")
    if not any(folder.rglob("*.safetensors")):
        raise UserError(f"{folder}: no .safetensors file to register")


def put(folder: Path, store: Path) -> str:
    """Copy `folder` into the store under its content hash (once; atomically by rename) and return the hash."""
    check_safe(folder)
    entries = manifest(folder)
    digest = content_hash(entries)
    target = store / digest
    if target.is_dir():
        verify(store, digest)
        return digest
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=store))
    try:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        (staging / MANIFEST).write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():  # another process stored the same weights first: theirs is as good
            raise
    return digest


def verify(store: Path, digest: str) -> Path:
    """The stored folder of `digest` after checking every file against the hash; a UserError on any mismatch."""
    folder = store / digest
    if not folder.is_dir():
        raise UserError(f"{folder}: the registered weights are missing from the store")
    found = content_hash(manifest(folder))
    if found != digest:
        raise UserError(f"{folder}: the stored weights changed since they were registered (content hash {found[:12]})")
    return folder
