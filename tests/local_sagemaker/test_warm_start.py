"""Warm start: a tuning job seeded with the trials of finished parent tuning jobs, and SageMaker's checks."""

from __future__ import annotations

import math

import pytest
from botocore.exceptions import ClientError

from reviewtune.local.sagemaker import RunSpec, ScriptedRun, ScriptedRunner

from .conftest import wait_for

BEST_LEARNING_RATE = 0.01
WIDE_RANGE = {
    "ContinuousParameterRanges": [
        {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ],
}


def peaked_accuracy(spec: RunSpec) -> ScriptedRun:
    """Accuracy peaks at learning_rate 0.01 and falls with the distance in log10 units."""
    distance = math.log10(float(spec.hyperparameters["learning_rate"])) - math.log10(BEST_LEARNING_RATE)
    value = 90.0 - 20.0 * distance * distance
    return ScriptedRun([f"val_loss: {1 / value:.4f} - val_acc: {value:.4f}"])


@pytest.fixture
def world(make_world):
    return make_world(runner=ScriptedRunner(peaked_accuracy))


def error_of(call, **kwargs) -> dict:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]


def warm(parents: list[str], kind: str = "TransferLearning") -> dict:
    return {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": name} for name in parents],
        "WarmStartType": kind,
    }


def finished_parent(world, name: str = "parent", **kwargs) -> list[dict]:
    request = world.tuning_request(name, **{"ranges": WIDE_RANGE, "max_parallel": 1, **kwargs})
    world.sm.create_hyper_parameter_tuning_job(**request)
    assert world.wait_tuning(name)["HyperParameterTuningJobStatus"] == "Completed"
    return world.trials(name)


def lr(trial: dict) -> float:
    return float(trial["TunedHyperParameters"]["learning_rate"])


def objective(trial: dict) -> float:
    return trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]


def test_child_study_holds_the_parent_trials_inside_its_ranges(world):
    parent_trials = finished_parent(world, strategy="Random", max_jobs=8)
    child_range = {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.003", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
        ]
    }
    request = world.tuning_request(
        "child", strategy="Bayesian", ranges=child_range, max_jobs=2, max_parallel=1
    )

    world.sm.create_hyper_parameter_tuning_job(**request, WarmStartConfig=warm(["parent"]))
    described = world.wait_tuning("child")

    inside = {t["TrainingJobName"]: objective(t) for t in parent_trials if lr(t) >= 0.003}
    assert 0 < len(inside) < len(parent_trials), "the test needs parent trials on both sides of 0.003"
    study = world.service._tuning_jobs.get("child").study
    seeded = [t for t in study.trials if t.user_attrs.get("parent") == "parent"]
    assert {t.user_attrs["training_job"]: t.value for t in seeded} == pytest.approx(inside)
    assert all(t.state.name == "COMPLETE" for t in seeded)
    assert described["WarmStartConfig"] == warm(["parent"])
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert len(world.trials("child")) == 2  # the parents' trials are knowledge, not the child's training jobs
    assert "OverallBestTrainingJob" not in described  # only IdenticalDataAndAlgorithm reports it


def test_bayesian_child_starts_near_the_parents_best(world):
    parent_trials = finished_parent(world, strategy="Random", max_jobs=12)
    request = world.tuning_request(
        "child", strategy="Bayesian", ranges=WIDE_RANGE, max_jobs=1, max_parallel=1
    )
    cold = world.tuning_request("cold", strategy="Bayesian", ranges=WIDE_RANGE, max_jobs=1, max_parallel=1)

    world.sm.create_hyper_parameter_tuning_job(**request, WarmStartConfig=warm(["parent"]))
    world.sm.create_hyper_parameter_tuning_job(**cold)
    world.wait_tuning("child")
    world.wait_tuning("cold")

    best_parent = max(parent_trials, key=objective)
    first_warm, first_cold = lr(world.trials("child")[0]), lr(world.trials("cold")[0])
    # TPE models the 12 seeded trials, so its first suggestion lies near the best of them; without the seeds
    # (same RandomSeed) the first suggestion is a random draw from the whole range.
    assert abs(math.log10(first_warm / lr(best_parent))) < 0.3
    assert abs(math.log10(first_warm / BEST_LEARNING_RATE)) < abs(math.log10(first_cold / BEST_LEARNING_RATE))


def test_identical_data_and_algorithm_reports_the_overall_best(world):
    parent_trials = finished_parent(world, strategy="Random", max_jobs=6)
    low_range = {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.0012", "ScalingType": "Linear"}
        ]
    }
    request = world.tuning_request("child", ranges=low_range, max_jobs=2, max_parallel=1)

    world.sm.create_hyper_parameter_tuning_job(
        **request, WarmStartConfig=warm(["parent"], "IdenticalDataAndAlgorithm")
    )
    described = world.wait_tuning("child")

    best_parent = max(parent_trials, key=objective)
    assert objective(best_parent) > objective(described["BestTrainingJob"])
    assert described["OverallBestTrainingJob"]["TrainingJobName"] == best_parent["TrainingJobName"]
    assert described["BestTrainingJob"]["TuningJobName"] == "child"


def test_static_hyperparameter_of_the_parent_becomes_tunable(world):
    # The parent kept train_batch_size static; the child tunes it: parent trials are seeded with the static value.
    finished_parent(world, strategy="Random", max_jobs=3, static={"train_batch_size": '"64"'})
    ranges = {
        **WIDE_RANGE,
        "CategoricalParameterRanges": [{"Name": "train_batch_size", "Values": ['"64"', '"128"']}],
    }
    request = world.tuning_request("child", strategy="Bayesian", ranges=ranges, max_jobs=1, max_parallel=1)

    world.sm.create_hyper_parameter_tuning_job(**request, WarmStartConfig=warm(["parent"]))
    world.wait_tuning("child")

    seeded = [t for t in world.service._tuning_jobs.get("child").study.trials if t.user_attrs.get("parent")]
    assert len(seeded) == 3
    assert {t.params["train_batch_size"] for t in seeded} == {'"64"'}


def test_parent_must_exist_and_have_ended(make_world):
    world = make_world(runner=ScriptedRunner(peaked_accuracy, line_delay=5.0))
    request = world.tuning_request("running", ranges=WIDE_RANGE, max_jobs=1, max_parallel=1)
    world.sm.create_hyper_parameter_tuning_job(**request)

    missing = error_of(
        world.sm.create_hyper_parameter_tuning_job,
        **world.tuning_request("child-a", ranges=WIDE_RANGE),
        WarmStartConfig=warm(["nowhere"]),
    )
    running = error_of(
        world.sm.create_hyper_parameter_tuning_job,
        **world.tuning_request("child-b", ranges=WIDE_RANGE),
        WarmStartConfig=warm(["running"]),
    )
    world.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="running")
    wait_for(
        lambda: world.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="running"),
        lambda d: d["HyperParameterTuningJobStatus"] == "Stopped",
        20,
    )
    world.sm.create_hyper_parameter_tuning_job(
        **world.tuning_request("child-c", ranges=WIDE_RANGE, max_jobs=1, max_parallel=1),
        WarmStartConfig=warm(["running"]),
    )  # a Stopped parent is fine

    assert missing["Code"] == "ResourceNotFound"
    assert "nowhere" in missing["Message"]
    assert running["Code"] == "ValidationException"
    assert "running is InProgress" in running["Message"]
    assert "Completed, Stopped or Failed" in running["Message"]
    with pytest.raises(ClientError):  # nothing was created for the rejected requests
        world.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="child-b")


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                Strategy="Grid",
                ParameterRanges={
                    "CategoricalParameterRanges": [{"Name": "learning_rate", "Values": ["0.01", "0.02"]}]
                },
            ),
            "ValidationException",
            "not supported with the Grid strategy",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                HyperParameterTuningJobObjective={"Type": "Minimize", "MetricName": "validation:loss"}
            ),
            "ValidationException",
            "objective metric",
        ),
        (
            lambda r: r["TrainingJobDefinition"]["StaticHyperParameters"].update(dropout="0.1"),
            "ValidationException",
            "added ['dropout']",
        ),
        (
            lambda r: r["TrainingJobDefinition"]["StaticHyperParameters"].pop("epochs"),
            "ValidationException",
            "missing ['epochs']",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                ParameterRanges={
                    "CategoricalParameterRanges": [{"Name": "learning_rate", "Values": ["0.01", "0.02"]}]
                }
            ),
            "ValidationException",
            "type of hyperparameter 'learning_rate' must not change",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].update(
                MaxNumberOfTrainingJobs=497
            ),
            "ResourceLimitExceeded",
            "parent tuning jobs (4) plus MaxNumberOfTrainingJobs (497)",
        ),
    ],
    ids=["grid", "objective", "added-hyperparameter", "removed-hyperparameter", "type-change", "500-jobs"],
)
def test_incompatible_warm_start_is_rejected(world, change, code, message):
    finished_parent(world, max_jobs=4, max_parallel=2)
    request = world.tuning_request("child", ranges=WIDE_RANGE)
    change(request)

    error = error_of(world.sm.create_hyper_parameter_tuning_job, **request, WarmStartConfig=warm(["parent"]))

    assert error["Code"] == code
    assert message in error["Message"]


def test_more_than_ten_changes_are_rejected(world):
    values = [str(n) for n in range(11)]
    ranges = {**WIDE_RANGE, "CategoricalParameterRanges": [{"Name": "layers", "Values": values}]}
    finished_parent(world, max_jobs=2, ranges=ranges)
    request = world.tuning_request("child", ranges=WIDE_RANGE, static={"layers": "3"})

    error = error_of(world.sm.create_hyper_parameter_tuning_job, **request, WarmStartConfig=warm(["parent"]))

    assert error["Code"] == "ValidationException"
    assert "makes 11 changes" in error["Message"]


def test_identical_data_needs_the_same_data_and_image_transfer_learning_does_not(world):
    finished_parent(world, max_jobs=2)
    request = world.tuning_request("child", ranges=WIDE_RANGE, max_jobs=1, max_parallel=1)
    request["TrainingJobDefinition"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] += "-v2"

    error = error_of(
        world.sm.create_hyper_parameter_tuning_job,
        **request,
        WarmStartConfig=warm(["parent"], "IdenticalDataAndAlgorithm"),
    )
    world.sm.create_hyper_parameter_tuning_job(
        **request, WarmStartConfig=warm(["parent"], "TransferLearning")
    )

    assert error["Code"] == "ValidationException"
    assert "needs the input data of the parent parent" in error["Message"]
    assert world.wait_tuning("child")["WarmStartConfig"]["WarmStartType"] == "TransferLearning"


def test_parents_are_one_to_five_distinct_jobs(world):
    finished_parent(world, max_jobs=1)
    request = world.tuning_request("child", ranges=WIDE_RANGE)

    six = error_of(
        world.sm.create_hyper_parameter_tuning_job, **request, WarmStartConfig=warm(["parent"] * 6)
    )
    twice = error_of(
        world.sm.create_hyper_parameter_tuning_job, **request, WarmStartConfig=warm(["parent"] * 2)
    )

    assert six["Code"] == twice["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 5" in six["Message"]
    assert "more than once" in twice["Message"]


@pytest.mark.parametrize("strategy", ["Random", "Hyperband"])
def test_random_and_hyperband_children_run_on_a_seeded_study(world, strategy):
    parent_trials = finished_parent(world, strategy="Random", max_jobs=3)
    request = world.tuning_request("child", strategy=strategy, ranges=WIDE_RANGE, max_jobs=3, max_parallel=1)

    world.sm.create_hyper_parameter_tuning_job(**request, WarmStartConfig=warm(["parent"]))
    described = world.wait_tuning("child")

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert len(world.trials("child")) == 3
    study = world.service._tuning_jobs.get("child").study
    assert sum(1 for t in study.trials if t.user_attrs.get("parent")) == len(parent_trials)


def test_core_choice_of_parents_is_accepted_by_the_service(world):
    from reviewtune.core.warm_start import Hyperparameters, PreviousRun, choose_parents, warm_start_config

    finished_parent(world, "older", max_jobs=2)
    finished_parent(world, "newer", max_jobs=2)
    request = world.tuning_request("child", ranges=WIDE_RANGE, max_jobs=2, max_parallel=1)
    request["TrainingJobDefinition"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] += (
        "-next-run"
    )
    shape = Hyperparameters.of_request(request)
    previous = [PreviousRun(name, Hyperparameters.of_request(world.service._tuning_jobs.get(name).request),
                            "validation:accuracy", 2) for name in ("newer", "older")]

    parents = choose_parents(previous, hyperparameters=shape, objective_metric="validation:accuracy", max_jobs=2)
    world.sm.create_hyper_parameter_tuning_job(**request, WarmStartConfig=warm_start_config(parents))

    described = world.wait_tuning("child")
    assert [
        p["HyperParameterTuningJobName"]
        for p in described["WarmStartConfig"]["ParentHyperParameterTuningJobs"]
    ] == [
        "newer",
        "older",
    ]
    study = world.service._tuning_jobs.get("child").study
    assert {t.user_attrs.get("parent") for t in study.trials if t.user_attrs.get("parent")} == {
        "newer",
        "older",
    }
