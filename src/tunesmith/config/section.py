"""The base of every config section: unknown keys are errors, assignments are validated, no inf/nan."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # No float setting means anything as inf or nan (`train.epochs=.inf` used to validate, then overflow later).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
