"""The training commands restart once with jemalloc preloaded, unless told not to or already done."""

from __future__ import annotations

import sys

import pytest

from tunesmith import allocator

pytestmark = pytest.mark.unit


def test_preload_env_adds_jemalloc_in_front_of_existing_preloads():
    env = allocator.preload_env({"LD_PRELOAD": "libfoo.so", "PATH": "/bin"}, "libjemalloc.so.2")
    assert env["LD_PRELOAD"] == "libjemalloc.so.2 libfoo.so"
    assert env["PATH"] == "/bin" and env[allocator._RESTARTED] == "1"


@pytest.mark.parametrize(
    "environ, library",
    [
        ({}, None),  # not installed
        ({allocator.CHOICE: "system"}, "libjemalloc.so.2"),  # the user keeps glibc's malloc
        ({allocator._RESTARTED: "1"}, "libjemalloc.so.2"),  # never restart twice
        ({"LD_PRELOAD": "/opt/libtcmalloc.so"}, "libjemalloc.so.2"),  # the user chose an allocator
    ],
)
def test_no_restart(environ, library):
    assert allocator.preload_env(environ, library) is None


def test_only_training_commands_restart(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: "libjemalloc.so.2")
    monkeypatch.delenv(allocator._RESTARTED, raising=False)
    monkeypatch.delenv(allocator.CHOICE, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    allocator.restart_with_jemalloc(["tunesmith", "models", "list"])
    assert calls == []
    allocator.restart_with_jemalloc(["tunesmith", "train", "cfg.yaml"])
    ((executable, argv, env),) = calls
    assert executable == sys.executable and argv == [sys.executable, "tunesmith", "train", "cfg.yaml"]
    assert env["LD_PRELOAD"] == "libjemalloc.so.2"
