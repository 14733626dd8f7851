"""The Bayesian strategy models finished trials early: a warm start's parents steer the first new trial."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from reviewtune.local.sagemaker.search_space import search_space
from reviewtune.local.sagemaker.strategies import BAYESIAN_RANDOM_TRIALS, make_sampler

RANGES = {"ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "1e-5", "MaxValue": "1e-3", "ScalingType": "Logarithmic"}]}


def _study(parents: list[tuple[float, float]]) -> optuna.Study:
    space = search_space(RANGES)
    study = optuna.create_study(direction="maximize", sampler=make_sampler("Bayesian", 7, space))
    distributions = {name: dimension.distribution for name, dimension in space.items()}
    study.add_trials(
        [
            optuna.trial.create_trial(params={"learning_rate": lr}, distributions=distributions, value=value, state=TrialState.COMPLETE)
            for lr, value in parents
        ]
    )
    return study


def _first_asks(study: optuna.Study, count: int) -> list[float]:
    space = search_space(RANGES)
    distributions = {name: dimension.distribution for name, dimension in space.items()}
    values = []
    for _ in range(count):
        trial = study.ask(distributions)
        values.append(trial.params["learning_rate"])
        study.tell(trial, 50.0)
    return values


def test_parents_change_what_the_same_seed_proposes() -> None:
    cold = _first_asks(_study([]), 3)
    good_near_1e_4 = [(1e-5, 40.0), (3e-5, 55.0), (1e-4, 75.0), (3e-4, 52.0), (1e-3, 33.0)]
    warm = _first_asks(_study(good_near_1e_4), 3)
    assert warm != cold
    assert len(good_near_1e_4) >= BAYESIAN_RANDOM_TRIALS


def test_without_parents_the_first_trials_are_the_seeds_random_draws() -> None:
    first = _first_asks(_study([]), BAYESIAN_RANDOM_TRIALS)
    again = _first_asks(_study([]), BAYESIAN_RANDOM_TRIALS)
    assert first == again  # RandomSeed makes a tuning job repeatable
