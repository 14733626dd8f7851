"""Choosing warm-start parents among a dataset's previous runs."""

from __future__ import annotations

import pytest

from reviewtune.core.warm_start import PreviousRun, choose_parents, warm_start_config

NAMES = frozenset({"learning_rate", "epochs", "sagemaker_program"})


def run(name, names=NAMES, metric="validation:accuracy", jobs=4):
    return PreviousRun(name, frozenset(names), metric, jobs)


def choose(previous, max_jobs=4):
    return choose_parents(
        previous, hyperparameter_names=NAMES, objective_metric="validation:accuracy", max_jobs=max_jobs
    )


def test_newest_five_compatible_runs_are_chosen():
    previous = [run(f"r{n}") for n in range(8)]

    assert choose(previous) == ["r0", "r1", "r2", "r3", "r4"]


def test_incompatible_runs_are_skipped():
    previous = [
        run("other-hps", names=NAMES | {"dropout"}),
        run("other-metric", metric="validation:loss"),
        run("ok"),
        run("OK"),  # the same job again (names are case-insensitive)
    ]

    assert choose(previous) == ["ok"]


def test_parents_and_new_budget_stay_within_500_training_jobs():
    previous = [run("big", jobs=300), run("also-big", jobs=150), run("small", jobs=40)]

    assert choose(previous, max_jobs=100) == ["big", "small"]


def test_config_shape_and_limits():
    assert warm_start_config([]) is None
    assert warm_start_config(["a", "b"]) == {
        "ParentHyperParameterTuningJobs": [
            {"HyperParameterTuningJobName": "a"},
            {"HyperParameterTuningJobName": "b"},
        ],
        "WarmStartType": "TransferLearning",
    }
    with pytest.raises(ValueError):
        warm_start_config(list("abcdef"))
    with pytest.raises(ValueError):
        warm_start_config(["a"], "Sideways")
