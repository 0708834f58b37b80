"""The CLI prints through the package's two consoles (`tunesmith.output`): results to stdout, messages to stderr."""

from __future__ import annotations

from tunesmith.output import err, out

__all__ = ["err", "out"]
