"""Choosing warm-start parents among a dataset's previous runs."""

from __future__ import annotations

import pytest

from reviewtune.core.warm_start import (
    Hyperparameters,
    PreviousRun,
    choose_parents,
    refusal,
    warm_start_config,
)

NAMES = frozenset({"learning_rate", "epochs", "sagemaker_program"})
SHAPE = Hyperparameters({"epochs": "2", "sagemaker_program": "train.py"}, {"learning_rate": ("Continuous", 1)})


def run(name, names=NAMES, metric="validation:accuracy", jobs=4):
    return PreviousRun(name, frozenset(names), metric, jobs)


def choose(previous, max_jobs=4, hyperparameters=SHAPE):
    return choose_parents(
        previous, hyperparameters=hyperparameters, objective_metric="validation:accuracy", max_jobs=max_jobs
    )


def test_a_parent_whose_tuned_hyperparameter_had_another_type_is_skipped_for_an_older_one_of_this_type():
    integer = Hyperparameters(SHAPE.static, {"learning_rate": ("Integer", 1)})
    previous = [run("new-shape"), PreviousRun("old-shape", integer, "validation:accuracy", 4), run("older")]

    assert choose(previous) == ["new-shape", "older"]
    assert refusal(integer, SHAPE) == "the type of hyperparameter 'learning_rate' must not change (Integer to Continuous)"


STATIC = {"epochs": "2", "sagemaker_program": "train.py"}
LR = {"learning_rate": ("Continuous", 1)}


@pytest.mark.parametrize(("parent", "child", "changes"), [
    # a categorical of 11 values made static: 11 changes
    (Hyperparameters({**STATIC, "learning_rate": "1e-4"}, {"train_batch_size": ("Categorical", 11)}),
     Hyperparameters({**STATIC, "learning_rate": "1e-4", "train_batch_size": "16"}, {}), 11),
    # six static values changed: 2 each
    (Hyperparameters({**STATIC, **{f"s{i}": "1" for i in range(6)}}, LR),
     Hyperparameters({**STATIC, **{f"s{i}": "2" for i in range(6)}}, LR), 12),
], ids=["categorical-made-static", "static-values-changed"])
def test_a_parent_more_than_ten_changes_away_is_skipped(parent, child, changes):
    assert choose([PreviousRun("far", parent, "validation:accuracy", 4)], hyperparameters=child) == []
    assert refusal(parent, child).startswith(f"it makes {changes} changes")


def test_ten_changes_are_accepted_and_a_static_value_made_tunable_costs_none():
    parent = Hyperparameters({**{f"s{i}": "1" for i in range(5)}, "epochs": "2"}, {"learning_rate": ("Continuous", 1)})
    child = Hyperparameters({f"s{i}": "2" for i in range(5)}, {"learning_rate": ("Continuous", 1),
                                                                 "epochs": ("Integer", 1)})

    assert refusal(parent, child) is None


def test_hyperparameters_of_a_request_round_trip_through_the_run_record():
    request = {"HyperParameterTuningJobConfig": {"ParameterRanges": {
        "ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "1e-5", "MaxValue": "1e-4"}],
        "CategoricalParameterRanges": [{"Name": "train_batch_size", "Values": ["16", "32"]}]}},
        "TrainingJobDefinition": {"StaticHyperParameters": {"epochs": "2"}}}

    shape = Hyperparameters.of_request(request)

    assert shape == Hyperparameters({"epochs": "2"}, {"learning_rate": ("Continuous", 1),
                                                      "train_batch_size": ("Categorical", 2)})
    assert Hyperparameters.from_record(shape.record()) == shape
    assert Hyperparameters.from_record({"static": {}, "tuned": {"x": "Continuous"}}) is None  # another shape


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


def test_one_parent_sagemaker_refuses_is_left_out_and_the_others_kept_in_their_order():
    far = Hyperparameters({**STATIC, **{f"s{i}": "1" for i in range(6)}}, LR)  # 12 changes from SHAPE's statics
    child = Hyperparameters({**STATIC, **{f"s{i}": "2" for i in range(6)}}, LR)
    near = Hyperparameters({**STATIC, **{f"s{i}": "1" if i < 5 else "2" for i in range(6)}}, LR)  # 10 changes
    previous = [PreviousRun(name, shape, "validation:accuracy", 4)
                for name, shape in (("newest", child), ("far", far), ("near", near))]

    assert choose(previous, hyperparameters=child) == ["newest", "near"]
