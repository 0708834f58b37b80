"""The `tune:` section: what `tunesmith tune` searches, how, and what it optimises.

Only the shape of each entry is checked here; whether a key exists in the run config and takes every value of its
range is checked by `tunesmith.tune.space.check_space` against the whole config, before any trial starts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from tunesmith.config.section import Section

# Objectives that are not validation metrics: read from the trial's summary and metrics log.
RUN_OBJECTIVES = {"loss": False, "train_seconds": False, "peak_rss_mb": False}  # name -> higher is better


class ParamSpec(Section):
    """One searched config key: a range (`log_uniform`, `uniform`, `int`) or a list of `choices`."""

    type: Literal["log_uniform", "uniform", "int", "categorical"]
    low: float | None = Field(None, description="Lower end of a range (included).")
    high: float | None = Field(None, description="Upper end of a range (included).")
    step: float | None = Field(None, gt=0, description="uniform, int: spacing of the values tried (int: default 1).")
    log: bool = Field(False, description="int: sample on a log scale (e.g. a rank from 4 to 64).")
    choices: list[Any] | None = Field(None, description="categorical: the values tried (numbers, strings, bools).")

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical entry needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical entry takes 'choices', not low/high")
            if any(isinstance(choice, dict | list) for choice in self.choices):
                raise ValueError("categorical choices must be plain values (numbers, strings, booleans, null)")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} entry takes low/high, not 'choices' (use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} entry needs both 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.type == "log_uniform" and self.low <= 0:
            raise ValueError(f"log_uniform needs low > 0 (got {self.low:g})")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int entry needs whole low/high (got {self.low:g}, {self.high:g})")
        if self.type == "int" and self.log and self.low < 1:
            raise ValueError("an int entry with log: true needs low >= 1")
        return self

    def grid_values(self) -> list[Any]:
        """The values a grid search tries: the choices, every int of the range, or the ends (and steps) of a
        float range."""
        if self.type == "categorical":
            return list(self.choices or [])
        low, high = float(self.low or 0), float(self.high or 0)
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(low), int(high) + 1, step))
        if self.step is not None:
            count = int(round((high - low) / self.step))
            return [round(low + i * self.step, 12) for i in range(count + 1)]
        return [low, high] if low != high else [low]


class ObjectiveSpec(Section):
    """One thing a study optimises: `loss` (validation), a task metric computed on the validation split
    (accuracy, macro_f1, entity_f1, ...), `train_seconds` or `peak_rss_mb`."""

    metric: str = "loss"
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto", description="auto: the metric's own direction (loss, seconds and memory: minimize)."
    )
    max: float | None = Field(None, description="A constraint: trials above this value are infeasible.")
    min: float | None = Field(None, description="A constraint: trials below this value are infeasible.")

    @model_validator(mode="after")
    def _known(self) -> ObjectiveSpec:
        if self.metric not in RUN_OBJECTIVES:
            from tunesmith.metrics import unknown_metric  # the registry imports no model code

            if problem := unknown_metric(self.metric):
                more = "" if "Did you mean" in problem else f" Or one of: {', '.join(RUN_OBJECTIVES)}."
                raise ValueError(problem + more)
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"objective {self.metric}: min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def maximize(self) -> bool:
        if self.direction != "auto":
            return self.direction == "maximize"
        if self.metric in RUN_OBJECTIVES:
            return RUN_OBJECTIVES[self.metric]
        from tunesmith.metrics import METRICS

        return METRICS[self.metric].higher_is_better


def _objectives(value: object) -> object:
    """`objective: accuracy`, `objective: {metric: accuracy}` and a list of either all mean a list of specs."""
    items = value if isinstance(value, list) else [value]
    return [{"metric": item} if isinstance(item, str) else item for item in items]


def _seconds(value: object) -> object:
    """A duration: seconds as a number, or text such as 90s, 30m, 1.5h."""
    if value is None or isinstance(value, int | float):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 30m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _auto_space(value: object) -> object:
    return None if value == "auto" else value


Objectives = Annotated[list[ObjectiveSpec], BeforeValidator(_objectives)]
Space = Annotated[dict[str, ParamSpec] | None, BeforeValidator(_auto_space)]
Duration = Annotated[float | None, BeforeValidator(_seconds)]


class TuneConfig(Section):
    """Hyperparameter search (`tunesmith tune`): docs/tuning.md."""

    space: Space = Field(
        None, description="Config key -> range or choices; auto (or null): the shipped space of the config's method."
    )
    sampler: Literal["tpe", "random", "grid", "qmc"] = Field("tpe", description="tpe is multivariate TPE.")
    pruner: Literal["median", "successive_halving", "hyperband", "none"] = Field(
        "median", description="Stops unpromising trials at a validation pass (reads the primary objective)."
    )
    objective: Objectives = Field(
        default_factory=lambda: [ObjectiveSpec()],
        description="One metric, or several: the first is optimised and pruned on; the others are recorded for "
        "the Pareto front and, with max/min, are constraints.",
    )
    trials: int = Field(20, ge=1, le=100_000, description="Finished trials (complete or pruned) the study ends at.")
    timeout: Duration = Field(None, gt=0, description="Stop starting trials after this long (e.g. 30m).")
    step_budget: int | None = Field(
        None, ge=1, description="Start no trial once the study's trials have taken this many optimizer steps."
    )
    jobs: int = Field(1, ge=1, le=64, description="Trials run at once, each in its own process (cores split).")
    storage: str | None = Field(
        None, description="SQLAlchemy URL of the study database; default: sqlite in runs/<study>/study.db."
    )
    study: str | None = Field(None, description="Study name (and folder under run.output_dir); default: config stem.")
    seed: int = Field(0, description="Seed of the sampler.")
    startup_trials: int = Field(5, ge=0, description="Random trials before TPE models the space; no pruning before.")
    warmup_evals: int = Field(1, ge=0, description="Validation passes of each trial that are never pruned.")
    test: str | None = Field(
        None, description="Held-out test file, used once by `tune best`; refused when it overlaps val or train."
    )
    heartbeat_seconds: int = Field(
        10,
        ge=1,
        le=3600,
        description="How often a running trial says it is alive; a killed trial is retried "
        "(from its last checkpoint) after 3 missed heartbeats.",
    )
    max_retries: int = Field(3, ge=0, description="Times a killed trial is retried before it counts as failed.")

    @model_validator(mode="after")
    def _grid_needs_values(self) -> TuneConfig:
        if self.sampler == "grid" and self.space is None:
            raise ValueError("sampler grid needs an explicit tune.space (choices, or ranges with a step)")
        if self.sampler == "grid" and self.space:
            for key, spec in self.space.items():
                if spec.type in ("uniform", "log_uniform") and spec.step is None and spec.low != spec.high:
                    raise ValueError(
                        f"sampler grid: tune.space.{key} is a continuous range; give it 'step' or make it categorical"
                    )
        return self

    @property
    def primary(self) -> ObjectiveSpec:
        return self.objective[0]
