"""Where tunesmith keeps downloaded models."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the tunesmith cache root: $TUNESMITH_CACHE, else $XDG_CACHE_HOME/tunesmith, else ~/.cache/tunesmith."""
    if explicit := os.environ.get("TUNESMITH_CACHE"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "tunesmith"
    return Path.home() / ".cache" / "tunesmith"


def model_dir(name: str) -> Path:
    """Return the folder a catalog model `name` lives in once pulled (it may not exist yet)."""
    return cache_dir() / "models" / name


def is_cached(name: str) -> bool:
    """Tell whether catalog model `name` is in the cache.

    Pulls move a finished folder into place in one rename, so a folder with config.json is complete.
    """
    return (model_dir(name) / "config.json").is_file()
