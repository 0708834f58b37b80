"""The library versions a runtime patch was checked on, and which installed ones fall outside them.

Import-light (no torch), so `compat.environment` can state its versions too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class Checked:
    """A library and the versions (a PEP 440 specifier, e.g. ">=5.24,<5.26") a patch was checked on."""

    library: str
    versions: str


def unchecked_versions(checked: Sequence[Checked]) -> list[str]:
    """One line per installed library whose version lies outside what the patch was checked on."""
    lines = []
    for item in checked:
        try:
            installed = metadata.version(item.library)
            inside = SpecifierSet(item.versions).contains(Version(installed), prereleases=True)
        except (metadata.PackageNotFoundError, InvalidVersion):
            continue  # not installed: the patch does not apply to it
        if not inside:
            lines.append(f"{item.library} {installed} (checked on {item.versions})")
    return lines
