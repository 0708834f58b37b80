"""What this process runs on: library versions against the lock, the project's git commit, CPU features, compiler,
allocator, GPU, cache and Hub reachability. `tunesmith doctor` prints it all; every run's summary.json records
`run_environment()` (versions and commit), so a result can be traced to the code and libraries that made it."""

from __future__ import annotations

import ctypes.util
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import tunesmith

KEY_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
    "kernels",
    "bitsandbytes",
    "gguf",
    "pydantic",
    "numpy",
    "trl",
)
LOCK_FILE = "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Python and the key libraries (None: not installed)."""
    return {"python": platform.python_version(), **{name: installed_version(name) for name in KEY_LIBRARIES}}


def project_root() -> Path | None:
    """The source checkout tunesmith runs from (editable installs), or None for an installed package."""
    root = Path(tunesmith.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def lock_path() -> Path | None:
    root = project_root()
    return root / LOCK_FILE if root is not None and (root / LOCK_FILE).is_file() else None


def read_lock(path: Path) -> dict[str, str]:
    """name -> pinned version of every `name==version` line."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line.strip()):
            pins[_normal(match[1])] = match[2]
    return pins


def lock_differences(pins: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """Locked packages whose installed version differs: name -> (locked, installed or None)."""
    return {
        name: (locked, found) for name, locked in sorted(pins.items()) if (found := installed_version(name)) != locked
    }


def git_commit() -> dict[str, Any] | None:
    """The project's commit and whether the checkout has uncommitted changes; None outside a git checkout."""
    root = project_root()
    if root is None or shutil.which("git") is None:
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": dirty}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True)
    return done.stdout.strip()


def run_environment() -> dict[str, Any]:
    """For summary.json: library versions, the git commit, and whether the installed set matches the lock."""
    lock = lock_path()
    differences = lock_differences(read_lock(lock)) if lock else None
    return {
        "versions": library_versions(),
        "git": git_commit(),
        "matches_lock": None if differences is None else not differences,
    }


def cpu_features() -> dict[str, Any]:
    """The CPU features that decide training speed here: bf16 matmuls (AVX512-BF16, AMX) and the thread count."""
    import torch

    lines = _cpuinfo_lines()
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)
    return {
        "model": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags or "amx_tile" in flags,
    }


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def compiler() -> str | None:
    """The C++ compiler torch.compile would use (first line of its version), or None."""
    for name in ("c++", "g++", "clang++"):
        if path := shutil.which(name):
            try:
                done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
                return f"{path}: {done.stdout.splitlines()[0] if done.stdout else '?'}"
            except (OSError, subprocess.SubprocessError):
                return path
    return None


def allocator() -> dict[str, Any]:
    preloaded = os.environ.get("LD_PRELOAD", "")
    return {
        "jemalloc": ctypes.util.find_library("jemalloc") if sys.platform.startswith("linux") else None,
        "in_use": "jemalloc" in preloaded,
    }


def accelerator() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False, "torch_cuda": torch.version.cuda}
    return {
        "cuda": True,
        "torch_cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def cache_usage() -> dict[str, Any]:
    from tunesmith.models.cache import cache_dir

    root = cache_dir()
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0
    return {"path": str(root), "bytes": size}


def hub_reachability(timeout: float = 3.0) -> str:
    """'offline mode', 'reachable (N ms)' or 'unreachable', asking the Hub's endpoint once (models/hub.py)."""
    from huggingface_hub import constants

    from tunesmith.models.hub import hub_reachable, offline_requested

    if offline_requested():
        return "offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set)"
    started = time.perf_counter()
    if not hub_reachable(timeout):
        return f"unreachable: {constants.ENDPOINT} did not answer within {timeout:.0f} s"
    return f"reachable: {constants.ENDPOINT} ({(time.perf_counter() - started) * 1000:.0f} ms)"
