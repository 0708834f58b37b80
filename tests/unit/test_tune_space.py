"""The tune: section and the search space: validation, the checks before any trial, conditional method keys,
grid values, objectives and the Pareto front."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tunesmith.config.load import validate
from tunesmith.config.tune import ObjectiveSpec, ParamSpec
from tunesmith.errors import UserError
from tunesmith.tune.measures import constraint
from tunesmith.tune.results import pareto_front
from tunesmith.tune.runner import config_hash
from tunesmith.tune.space import AUTO_SPACES, check_space, config_data, resolve_space, suggest_params

pytestmark = pytest.mark.unit

BASE = {"method": {"name": "lora", "r": 8}, "train": {"lr": 1e-4}}


def _error(data: dict) -> str:
    with pytest.raises(UserError) as info:
        validate(data, "study.yaml")
    return str(info.value)


def test_entry_shapes_are_checked_when_the_config_loads():
    assert "low 0.001 is above high 1e-05" in _error(
        {"tune": {"space": {"train.lr": {"type": "log_uniform", "low": 1e-3, "high": 1e-5}}}}
    )
    assert 'Did you mean "low"' in _error({"tune": {"space": {"train.lr": {"type": "uniform", "lw": 0, "high": 1}}}})
    assert "needs low > 0" in _error({"tune": {"space": {"train.lr": {"type": "log_uniform", "low": 0, "high": 1}}}})
    assert "non-empty 'choices'" in _error({"tune": {"space": {"method.r": {"type": "categorical"}}}})
    assert 'Did you mean "accuracy"' in _error({"tune": {"objective": "acuracy"}})
    assert 'Did you mean "sampler"' in _error({"tune": {"smapler": "tpe"}})
    assert "not a duration" in _error({"tune": {"timeout": "soon"}})
    assert "needs an explicit tune.space" in _error({"tune": {"sampler": "grid"}})
    assert "continuous range" in _error(
        {"tune": {"sampler": "grid", "space": {"train.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}}}
    )


def test_objective_forms_and_directions():
    tune = validate(
        {"tune": {"objective": ["accuracy", {"metric": "peak_rss_mb", "max": 3000}], "timeout": "30m"}}, "x"
    )
    assert [o.metric for o in tune.tune.objective] == ["accuracy", "peak_rss_mb"]
    assert tune.tune.primary.maximize and not tune.tune.objective[1].maximize
    assert tune.tune.timeout == 1800
    assert validate({}, "x").tune.primary.metric == "loss" and not validate({}, "x").tune.primary.maximize
    assert constraint(ObjectiveSpec(metric="peak_rss_mb", max=3000), 3500) == 500  # infeasible: > 0
    assert constraint(ObjectiveSpec(metric="accuracy", min=0.8), 0.9) == pytest.approx(-0.1)


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"train.lrr": {"type": "log_uniform", "low": 1e-5, "high": 1e-3}}, "unknown key 'train.lrr'. Did you mean"),
        ({"train.lr": {"type": "categorical", "choices": ["fast", "slow"]}}, "train.lr = 'fast'"),
        ({"train.warmup_ratio": {"type": "uniform", "low": 0.0, "high": 1.5}}, "train.warmup_ratio = 1.5"),
        ({"method.num_virtual_tokens": {"type": "int", "low": 4, "high": 8}}, "unknown key"),
        ({"data.val": {"type": "categorical", "choices": ["a.jsonl"]}}, "not searchable"),
        ({"run.seed": {"type": "int", "low": 0, "high": 3}}, "not searchable"),
    ],
)
def test_space_keys_and_ranges_are_checked_against_the_whole_config(space, expected):
    specs = {key: ParamSpec(**spec) for key, spec in space.items()}
    with pytest.raises(UserError) as info:
        check_space(BASE, specs, "study.yaml")
    message = str(info.value)
    assert message.startswith("study.yaml: tune.space.") and expected in message and "\n" not in message


def test_method_name_searched_makes_method_keys_conditional():
    space = {
        "method.name": ParamSpec(type="categorical", choices=["lora", "full"]),
        "method.r": ParamSpec(type="categorical", choices=[4, 8]),
        "train.lr": ParamSpec(type="log_uniform", low=1e-5, high=1e-3),
    }
    check_space(BASE, space, "study.yaml")  # r is a lora key; full has none, which is fine
    full = suggest_params(optuna.trial.FixedTrial({"method.name": "full", "train.lr": 1e-4}), space, "lora")
    assert full == {"method.name": "full", "train.lr": 1e-4}
    cfg = validate(config_data(BASE, full), "x")  # lora's r is dropped from the base with the method
    assert cfg.method.name == "full" and cfg.train.lr == 1e-4
    lora = suggest_params(optuna.trial.FixedTrial({"method.name": "lora", "method.r": 4, "train.lr": 1e-4}), space, "x")
    assert validate(config_data(BASE, lora), "x").method.r == 4
    with pytest.raises(UserError, match="none of the searched methods has"):
        check_space(BASE, {**space, "method.num_virtual_tokens": ParamSpec(type="int", low=4, high=8)}, "s")


def test_auto_spaces_are_valid_for_their_methods():
    for method, space in AUTO_SPACES.items():
        base = {"method": {"name": method}}
        if method == "qlora":
            continue  # needs bitsandbytes' config checks at validation only; same keys as lora
        check_space(base, space, f"{method}.yaml")
        assert resolve_space(validate(base, "x")) == space


def test_grid_values():
    assert ParamSpec(type="int", low=4, high=16, step=4).grid_values() == [4, 8, 12, 16]
    assert ParamSpec(type="uniform", low=0.0, high=0.2, step=0.1).grid_values() == [0.0, 0.1, 0.2]
    assert ParamSpec(type="categorical", choices=[1e-4, 3e-4]).grid_values() == [1e-4, 3e-4]


def test_a_rerun_may_change_how_the_study_runs_but_not_what_it_compares():
    base = {"train": {"lr": 1e-4}, "tune": {"trials": 5, "jobs": 1}}
    assert config_hash(base) == config_hash({"train": {"lr": 1e-4}, "tune": {"trials": 50, "jobs": 2}})
    assert config_hash(base) != config_hash({"train": {"lr": 2e-4}, "tune": {"trials": 5}})


def _done(number: int, values: dict[str, float]):
    trial = create_trial(
        state=TrialState.COMPLETE,
        value=values["accuracy"],
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"values": values},
    )
    trial.number = number
    return trial


def test_pareto_front_of_accuracy_up_and_memory_down():
    objectives = [ObjectiveSpec(metric="accuracy"), ObjectiveSpec(metric="peak_rss_mb")]
    trials = [
        _done(0, {"accuracy": 0.80, "peak_rss_mb": 1000}),
        _done(1, {"accuracy": 0.85, "peak_rss_mb": 1500}),
        _done(2, {"accuracy": 0.78, "peak_rss_mb": 1200}),  # worse on both than trial 0
        _done(3, {"accuracy": 0.85, "peak_rss_mb": 1600}),  # ties 1 on accuracy, more memory
        _done(4, {"accuracy": 0.90, "peak_rss_mb": 3000}),
    ]
    assert [t.number for t in pareto_front(trials, objectives)] == [0, 1, 4]
