"""Options several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key (repeatable): --set train.lr=1e-4 --set data.format=chat"),
]
