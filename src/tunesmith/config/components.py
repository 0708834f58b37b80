"""The components a config names by `method.name` and `task.name`, registered by the packages that define them.

Each training method defines its own config class in `methods/<name>.py`, and `methods.register` adds it here
(as PEFT's `register_peft_method` does); `tasks.register` adds each task's name. The config's method union and
the loader's suggestions come from these tables, so adding a method or a task touches its own file and one
registration line, never the config package.

`config` sits below `methods` and `tasks` (they build on typed configs), so it cannot import them. On the first
lookup, `load_components` imports the packages in `COMPONENT_PACKAGES` by name, which registers everything
they define: the one place a lower layer names higher ones (docs/architecture.md), and it uses nothing of
theirs but the tables below. `import tunesmith.config` stays free of torch until a config is validated.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tunesmith.registry import add_unique

if TYPE_CHECKING:
    from tunesmith.config.schema import MethodSection

COMPONENT_PACKAGES = ("tunesmith.methods", "tunesmith.tasks")
DEFAULT_METHOD = "lora"

METHOD_CONFIGS: dict[str, type[MethodSection]] = {}
TASK_NAMES: dict[str, str] = {}  # name -> one-line description


def register_method_config(config: type[MethodSection]) -> type[MethodSection]:
    """Add a method's config class under the default of its `name` field; a taken name raises ValueError."""
    return add_unique(METHOD_CONFIGS, config.model_fields["name"].default, config, "method config")


def register_task_name(name: str, description: str) -> None:
    add_unique(TASK_NAMES, name, description, "task")


def load_components() -> None:
    """Import the packages that register methods and tasks (once; later calls cost a dict lookup)."""
    for package in COMPONENT_PACKAGES:
        importlib.import_module(package)


def method_configs() -> dict[str, type[MethodSection]]:
    load_components()
    return METHOD_CONFIGS


def task_names() -> dict[str, str]:
    load_components()
    return TASK_NAMES
