"""API keys: read from a file or an environment variable (never from the command line), kept only as SHA-256
hashes, compared in constant time. The file is re-read when it changes, so keys are added and revoked without a
restart. One key per line, optionally `name:key`; blank lines and `#` comments are skipped."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import UserError

ENV_VAR = "TUNESMITH_API_KEYS"  # comma-separated keys (or name:key)
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Keys:
    by_hash: dict[bytes, str]  # SHA-256 of a key -> its name


class KeyStore:
    def __init__(self, file: Path | None = None, env: str | None = None) -> None:
        self.file, self._lock = file, threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._env_keys = _parse(env.replace(",", "\n"), ENV_VAR) if env else {}
        self._keys = Keys(dict(self._env_keys))
        self._reload()
        if not self._keys.by_hash:
            where = file or f"${ENV_VAR}"
            raise UserError(f"no API key found in {where}; add one per line, at least {MIN_KEY_LENGTH} characters")

    @classmethod
    def from_environment(cls, file: Path | None) -> KeyStore | None:
        """The keys of `file` and of $TUNESMITH_API_KEYS, or None when neither is given."""
        env = os.environ.get(ENV_VAR)
        return cls(file, env) if file is not None or env else None

    def __len__(self) -> int:
        return len(self._keys.by_hash)

    def check(self, presented: str | None) -> str | None:
        """The key's name when `presented` is a current key, else None. Every stored hash is compared, each in
        constant time, so the time taken says nothing about which key or how much of it matched."""
        self._reload()
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for stored, name in self._keys.by_hash.items():
            if hmac.compare_digest(stored, digest):
                found = name
        return found

    def _reload(self) -> None:
        if self.file is None:
            return
        try:
            stat = self.file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            text = self.file.read_text(encoding="utf-8")
        except OSError as exc:
            if self._stamp is None:  # at start: the operator named a file that is not there
                raise UserError(f"{self.file}: cannot read the API key file ({exc.strerror})") from None
            text, stamp = "", (0, 0)  # removed while serving: its keys are revoked
        try:
            keys = _parse(text, str(self.file))
        except UserError:
            if self._stamp is None:
                raise
            return  # a bad edit while serving keeps the keys that were loaded; the next good save applies
        with self._lock:
            self._keys, self._stamp = Keys({**self._env_keys, **keys}), stamp


def _parse(text: str, source: str) -> dict[bytes, str]:
    keys: dict[bytes, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, key = line.rpartition(":") if ":" in line else (f"key-{number}", "", line)
        if len(key) < MIN_KEY_LENGTH:
            raise UserError(f"{source}:{number}: an API key must be at least {MIN_KEY_LENGTH} characters")
        keys[hashlib.sha256(key.encode()).digest()] = name or f"key-{number}"
    return keys
