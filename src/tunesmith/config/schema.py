"""The typed run configuration: one pydantic model per concern, nested by concern.

Every model forbids unknown keys; `config.load` turns such errors into a suggestion of the nearest valid key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _on_off(value: object) -> object:
    """YAML reads a bare on/off/yes/no as a boolean; for on/off/auto switches, take it as the word meant."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


OnOffAuto = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)]


class RunConfig(Section):
    name: str | None = Field(None, description="Run name; default: <config name>-<timestamp>.")
    output_dir: str = Field("runs", description="Folder that holds run directories.")
    seed: int = Field(0, description="Seed for data order, splits, initialisation and dropout.")

    @model_validator(mode="after")
    def _safe_name(self) -> RunConfig:
        if self.name is not None and (
            not self.name or "/" in self.name or "\\" in self.name or self.name in {".", ".."}
        ):
            raise ValueError(f"run.name {self.name!r} must be a plain folder name (no '/', '\\\\', '.' or '..')")
        return self


class ModelConfig(Section):
    name: str = Field("smollm2-135m", description="Catalog name, Hugging Face Hub id, or local folder.")
    dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Storage dtype of the base weights. auto: bf16 for a frozen LoRA base where the CPU/GPU "
        "supports bf16, else fp32. Trainable weights are always fp32.",
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the Hub. Off unless you trust it.")


class DataConfig(Section):
    train: str | None = Field(None, description="Training file: JSONL, JSON, CSV or Parquet.")
    val: str | None = Field(None, description="Validation file; default: a seeded split of train.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of train held out when `val` is not given.")
    max_val_rows: int | None = Field(200, ge=1, description="Cap on validation rows (evaluation cost).")
    max_train_rows: int | None = Field(None, ge=1, description="Use only the first N training rows.")
    format: str = Field("auto", description="auto, alpaca, prompt_completion, chat, text_label or text.")
    max_length: int = Field(512, ge=8, description="Tokens per example after the chat template.")
    skip_invalid: bool = Field(False, description="Drop invalid rows (reported) instead of stopping.")
    system_prompt: str | None = Field(None, description="System message prepended to every conversation.")


class LoraConfig(Section):
    name: Literal["lora"] = "lora"
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field("all-linear", description="Module names to adapt, or 'all-linear'.")


class FullConfig(Section):
    name: Literal["full"] = "full"


MethodConfig = Annotated[LoraConfig | FullConfig, Field(discriminator="name")]


class TrainConfig(Section):
    epochs: float = Field(1, gt=0, description="Passes over the training data (fractions allowed).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps with linear warmup.")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the global gradient norm; null disables.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast where supported.")
    eval_every: int = Field(50, ge=1, description="Evaluate on validation data every N optimizer steps.")
    save_every: int = Field(50, ge=1, description="Checkpoint every N optimizer steps.")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept (the best one is kept too).")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without a better validation loss."
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: all cores.")
    activation_checkpointing: OnOffAuto = Field(
        "auto",
        description="Recompute activations in backward to save memory. auto: only for micro-batches of "
        ">= 2048 padded tokens, where it costs little or even saves time on CPU.",
    )


class EvalConfig(Section):
    batch_size: int = Field(16, ge=1)
    exact_match: OnOffAuto = Field("auto", description="Generate and score exact match; auto: when targets are short.")
    max_new_tokens: int = Field(64, ge=1)
    max_examples: int = Field(200, ge=1, description="Rows used for generation-based metrics.")


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=LoraConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_method_name(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("method"), dict) and "name" not in data["method"]:
            data = {**data, "method": {"name": "lora", **data["method"]}}
        return data
