"""The `forgetting:` section: what keeps a tuned model from losing what its base knew (docs/forgetting.md).

Every mitigation is off by default and they combine freely: replay rows mixed into each batch, a KL term toward
the base model's next-token distribution, EWC and L2-SP penalties on the weights.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.section import Section

REFERENCE = "reference"  # the base model's own answers to built-in prompts, cached for the audit


class ReplayConfig(Section):
    data: str | None = Field(
        None,
        description="Rows mixed into every batch: a data file (general text, or an earlier task's rows), or "
        "'reference' for the base model's answers to built-in prompts (cached). null: no replay.",
    )
    fraction: float = Field(
        0.125,
        gt=0,
        lt=1,
        description="Share of each micro-batch's rows that are replay rows (added to train.batch_size task rows).",
    )
    max_rows: int = Field(2000, ge=1, description="Cap on replay rows read from the file.")


class KLToBaseConfig(Section):
    weight: float = Field(
        0.0, ge=0, description="λ of λ·KL(base ‖ tuned) per trained token, added to the loss. 0: off."
    )
    on: Literal["auto", "task", "replay"] = Field(
        "auto", description="Rows the KL is computed on. auto: the replay rows when replay is on, else the task rows."
    )


class EWCConfig(Section):
    weight: float = Field(0.0, ge=0, description="λ of λ·Σ F·(θ − θ*)², F the diagonal Fisher. 0: off.")
    data: str = Field(
        REFERENCE, description="Rows the Fisher is estimated on: a data file, or 'reference' (see replay.data)."
    )
    batches: int = Field(16, ge=1, description="Batches of the Fisher estimate.")
    batch_size: int = Field(4, ge=1, description="Rows per Fisher batch.")
    normalize: bool = Field(
        True, description="Scale the Fisher to mean 1, so the weight means the same across models and data."
    )


class L2SPConfig(Section):
    weight: float = Field(0.0, ge=0, description="λ of λ·‖θ − θ₀‖², θ₀ the weights training starts from. 0: off.")


class ForgettingConfig(Section):
    reference_model: str | None = Field(
        None,
        description="Whose answers 'reference' means: a model id or folder. null: model.name, the weights training "
        "starts from (a task sequence sets it to the original base, so later stages keep what the base knew).",
    )
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    kl_to_base: KLToBaseConfig = Field(default_factory=KLToBaseConfig)
    ewc: EWCConfig = Field(default_factory=EWCConfig)
    l2_sp: L2SPConfig = Field(default_factory=L2SPConfig)

    @model_validator(mode="after")
    def _kl_rows_exist(self) -> ForgettingConfig:
        if self.kl_to_base.weight and self.kl_to_base.on == "replay" and self.replay.data is None:
            raise ValueError("forgetting.kl_to_base.on=replay needs forgetting.replay.data (a file or 'reference')")
        return self

    @property
    def kl_on_replay(self) -> bool:
        return self.kl_to_base.on == "replay" or (self.kl_to_base.on == "auto" and self.replay.data is not None)

    def active(self) -> list[str]:
        """The mitigations switched on, by name."""
        names = ["replay"] if self.replay.data is not None else []
        return names + [n for n in ("kl_to_base", "ewc", "l2_sp") if getattr(self, n).weight > 0]
