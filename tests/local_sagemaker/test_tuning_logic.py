"""Tuning logic with a ScriptedRunner (no processes): pruning, completion criteria, search space, median rule."""

from __future__ import annotations

import json
import math
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from reviewtune.local.sagemaker import RunSpec, ScriptedRun, ScriptedRunner
from reviewtune.local.sagemaker.early_stopping import MedianRunningAveragePruner
from reviewtune.local.sagemaker.errors import ValidationError
from reviewtune.local.sagemaker.search_space import search_space

from .conftest import ROLE_ARN, wait_for


def accuracy_script(epochs: int, accuracy) -> ScriptedRunner:
    """Each trial prints ``epochs`` metric lines; ``accuracy(hyperparameters, epoch)`` gives the value."""

    def script(spec: RunSpec) -> ScriptedRun:
        lines = []
        for epoch in range(1, epochs + 1):
            value = accuracy(spec.hyperparameters, epoch)
            lines += [f"epoch {epoch}", f"val_loss: {1 / value:.4f} - val_acc: {value:.4f}"]
        return ScriptedRun(lines)

    return ScriptedRunner(script)


def learning_rate(hyperparameters: dict[str, str]) -> float:
    return float(hyperparameters["learning_rate"])


LINEAR_RANGE = {"ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "0", "MaxValue": "1"}]}


def test_hyperband_stops_trials_that_fall_behind(make_world):
    # Accuracy grows with the learning rate: Hyperband's successive halving stops the weaker trials at a rung.
    world = make_world(runner=accuracy_script(9, lambda hps, epoch: 10 + 80 * learning_rate(hps) + epoch))
    request = world.tuning_request(
        "hyperband",
        strategy="Hyperband",
        ranges=LINEAR_RANGE,
        max_jobs=12,
        max_parallel=1,
        static={"epochs": "9"},
    )
    world.sm.create_hyper_parameter_tuning_job(**request)

    described = world.wait_tuning("hyperband")
    trials = world.trials("hyperband")

    stopped = [t for t in trials if t["TrainingJobStatus"] == "Stopped"]
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert len(trials) == 12
    assert stopped, "Hyperband stopped no trial"
    for trial in stopped:  # its last accuracy tells at which epoch it stopped
        last = trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        assert round(last - 10 - 80 * learning_rate(trial["TunedHyperParameters"])) < 9
    best = described["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == max(
        t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials
    )


def test_target_objective_value_completes_the_tuning_job_early(make_world):
    world = make_world(runner=accuracy_script(2, lambda hps, epoch: 100 * learning_rate(hps)))
    request = world.tuning_request(
        "target",
        ranges=LINEAR_RANGE,
        max_jobs=30,
        max_parallel=1,
        TuningJobCompletionCriteria={"TargetObjectiveMetricValue": 50.0},
    )
    world.sm.create_hyper_parameter_tuning_job(**request)

    described = world.wait_tuning("target")
    values = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in world.trials("target")]

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert values[-1] >= 50.0 and all(v < 50.0 for v in values[:-1])
    assert len(values) < 30


def test_best_objective_not_improving_completes_the_tuning_job(make_world):
    # Every trial scores the same: after the first, none improves, so the job ends after 1 + 3 trials.
    world = make_world(runner=accuracy_script(1, lambda hps, epoch: 70.0))
    request = world.tuning_request(
        "plateau",
        ranges=LINEAR_RANGE,
        max_jobs=20,
        max_parallel=1,
        TuningJobCompletionCriteria={"BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 3}},
    )
    world.sm.create_hyper_parameter_tuning_job(**request)

    described = world.wait_tuning("plateau")

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert len(world.trials("plateau")) == 4
    assert described["TuningJobCompletionDetails"]["NumberOfTrainingJobsObjectiveNotImproving"] == 3


def test_tuning_gives_up_after_five_failed_trials(make_world):
    runner = ScriptedRunner(
        lambda spec: ScriptedRun(["Traceback (most recent call last):", "KeyError: 'text'"], 1)
    )
    world = make_world(runner=runner)
    world.sm.create_hyper_parameter_tuning_job(**world.tuning_request("broken", max_jobs=10, max_parallel=1))

    described = world.wait_tuning("broken")

    assert described["HyperParameterTuningJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("No training job succeeded after 5 attempts.")
    assert len(world.trials("broken")) == 5
    job = world.sm.describe_training_job(TrainingJobName=world.trials("broken")[0]["TrainingJobName"])
    assert (
        job["FailureReason"]
        == "AlgorithmError: Traceback (most recent call last):\nKeyError: 'text', exit code: 1"
    )


def test_trials_share_the_cpus_and_get_sampled_hyperparameters_as_strings(make_world):
    runner = accuracy_script(1, lambda hps, epoch: 50.0)
    world = make_world(runner=runner, total_cpus=5)
    ranges = {
        "ContinuousParameterRanges": [
            {
                "Name": "learning_rate",
                "MinValue": "0.00001",
                "MaxValue": "0.00005",
                "ScalingType": "Logarithmic",
            }
        ],
        "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "4"}],
        "CategoricalParameterRanges": [{"Name": "train_batch_size", "Values": ['"128"', '"256"']}],
    }
    request = world.tuning_request("sampled", ranges=ranges, max_jobs=4, max_parallel=2)
    del request["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"]
    world.sm.create_hyper_parameter_tuning_job(**request)
    world.wait_tuning("sampled")

    assert len(runner.runs) == 4
    for spec in runner.runs:
        hps = spec.hyperparameters
        assert 1e-5 <= float(hps["learning_rate"]) <= 5e-5 and hps["learning_rate"] == repr(
            float(hps["learning_rate"])
        )
        assert hps["epochs"] in {"1", "2", "3", "4"}
        assert hps["train_batch_size"] in {'"128"', '"256"'}
        assert spec.env["SM_NUM_CPUS"] == "2"  # 5 CPUs // 2 parallel trials
        assert spec.command[spec.command.index("--train_batch_size") + 1] == hps["train_batch_size"]
        assert json.loads(spec.env["SM_HPS"])["train_batch_size"] in {"128", "256"}


def test_search_space_maps_every_scaling_to_an_optuna_distribution():
    space = search_space(
        {
            "ContinuousParameterRanges": [
                {"Name": "lr", "MinValue": "1e-5", "MaxValue": "5e-5", "ScalingType": "Logarithmic"},
                {"Name": "dropout", "MinValue": "0.1", "MaxValue": "0.5", "ScalingType": "Linear"},
                {
                    "Name": "momentum",
                    "MinValue": "0.9",
                    "MaxValue": "0.999",
                    "ScalingType": "ReverseLogarithmic",
                },
            ],
            "IntegerParameterRanges": [
                {"Name": "layers", "MinValue": "1", "MaxValue": "6", "ScalingType": "Auto"}
            ],
            "CategoricalParameterRanges": [{"Name": "pooling", "Values": ["cls", "mean"]}],
        }
    )

    assert space["lr"].distribution == FloatDistribution(1e-5, 5e-5, log=True)
    assert space["dropout"].distribution == FloatDistribution(0.1, 0.5)
    assert space["layers"].distribution == IntDistribution(1, 6)
    assert space["pooling"].distribution == CategoricalDistribution(["cls", "mean"])
    momentum = space["momentum"]
    low, high = momentum.distribution.low, momentum.distribution.high
    assert momentum.distribution.log and math.isclose(low, 0.001) and math.isclose(high, 0.1)
    assert 0.9 <= float(momentum.to_hyperparameter(low)) <= 0.999
    assert 0.9 <= float(momentum.to_hyperparameter(high)) <= 0.999
    assert space["layers"].to_hyperparameter(3) == "3"
    assert space["lr"].to_hyperparameter(2.5e-05) == "2.5e-05"


@pytest.mark.parametrize(
    "ranges",
    [
        {
            "IntegerParameterRanges": [
                {"Name": "n", "MinValue": "1", "MaxValue": "9", "ScalingType": "ReverseLogarithmic"}
            ]
        },
        {
            "ContinuousParameterRanges": [
                {"Name": "m", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "ReverseLogarithmic"}
            ]
        },
        {"CategoricalParameterRanges": [{"Name": "c", "Values": ["a", "a"]}]},
        {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "one", "MaxValue": "2"}]},
        {},
    ],
)
def test_search_space_rejects_invalid_ranges(ranges):
    with pytest.raises(ValidationError):
        search_space(ranges)


def test_search_space_holds_sagemaker_s_limits_on_ranges_and_hyperparameters():
    def categorical(count: int) -> dict:
        return {"CategoricalParameterRanges": [{"Name": f"h{i}", "Values": ["1", "2"]} for i in range(count)]}

    assert len(search_space(categorical(30))) == 30
    with pytest.raises(ValidationError, match="define 31 hyperparameter ranges; at most 30"):
        search_space(categorical(31))
    static = {f"s{i}": "1" for i in range(97)}
    assert len(search_space(categorical(2), static)) == 2  # 97 + 2 + _tuning_objective_metric: 100
    with pytest.raises(ValidationError, match="has 101 hyperparameters .*_tuning_objective_metric.*at most 100"):
        search_space(categorical(3), static)


def _finished_trial(study: optuna.Study, values: list[float]) -> None:
    trial = study.ask()
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
    study.tell(trial, values[-1])


@pytest.mark.parametrize(
    ("direction", "current", "pruned"),
    [("maximize", 55.0, True), ("maximize", 65.0, False), ("minimize", 0.9, True)],
)
def test_median_rule_compares_with_the_median_running_average_at_the_same_epoch(direction, current, pruned):
    study = optuna.create_study(direction=direction, pruner=MedianRunningAveragePruner())
    if direction == "maximize":
        for history in ([50, 70], [60, 60], [70, 80]):  # running averages at epoch 2: 60, 60, 75 -> median 60
            _finished_trial(study, history)
    else:
        for history in ([1.0, 0.6], [0.8, 0.8]):  # running averages at epoch 2: 0.8, 0.8 -> median 0.8
            _finished_trial(study, history)
    trial = study.ask()
    trial.report(current, 1)
    trial.report(current, 2)

    assert trial.should_prune() is pruned


def test_median_rule_never_stops_the_first_trial():
    study = optuna.create_study(direction="maximize", pruner=MedianRunningAveragePruner())
    trial = study.ask()
    trial.report(1.0, 1)

    assert trial.should_prune() is False


def test_convergence_detection_completes_a_flat_search(make_world):
    world = make_world(runner=accuracy_script(1, lambda hps, epoch: 70.0 + learning_rate(hps) * 1e-6))
    request = world.tuning_request(
        "converged",
        ranges=LINEAR_RANGE,
        max_jobs=20,
        max_parallel=1,
        TuningJobCompletionCriteria={"ConvergenceDetected": {"CompleteOnConvergence": "Enabled"}},
    )
    world.sm.create_hyper_parameter_tuning_job(**request)

    described = world.wait_tuning("converged")

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert len(world.trials("converged")) == 6
    assert "ConvergenceDetectedTime" in described["TuningJobCompletionDetails"]


def test_image_entrypoints_run_images_without_a_script(make_world):
    runner = ScriptedRunner(lambda spec: ScriptedRun(["done"]))
    image = "local/evaluate:latest"
    world = make_world(
        runner=runner, image_entrypoints={image: ["python3", "/opt/ml/processing/input/code/run.py"]}
    )
    world.sm.create_processing_job(
        ProcessingJobName="entry",
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
        AppSpecification={
            "ImageUri": image,
            "ContainerArguments": ["--out", "/opt/ml/processing/output", "plain"],
        },
        RoleArn=ROLE_ARN,
    )

    wait_for(
        lambda: world.sm.describe_processing_job(ProcessingJobName="entry")["ProcessingJobStatus"],
        lambda status: status == "Completed",
        timeout=10,
    )

    root = world.workdir / "processing" / "entry"
    [spec] = runner.runs
    assert spec.command == [
        sys.executable,
        str(root / "opt/ml/processing/input/code/run.py"),
        "--out",
        str(root / "opt/ml/processing/output"),
        "plain",
    ]
    assert spec.cwd == root


def test_the_kept_epoch_s_line_is_the_objective_but_no_epoch(make_world):
    # train.py --keep_epoch best prints the restored epoch's metric line again after the last epoch: the trial's
    # final objective is that value, and the pruner saw two epochs, not three.
    def script(spec: RunSpec) -> ScriptedRun:
        return ScriptedRun([
            "val_loss: 0.5000 - val_acc: 80.0000",
            "val_loss: 0.6000 - val_acc: 70.0000",
            "kept_epoch: 1 - val_loss: 0.5000 - val_acc: 80.0000",
        ])

    world = make_world(runner=ScriptedRunner(script))
    request = world.tuning_request("kept", ranges=LINEAR_RANGE, max_jobs=1, max_parallel=1, static={"epochs": "2"})
    world.sm.create_hyper_parameter_tuning_job(**request)
    world.wait_tuning("kept")
    [trial] = world.trials("kept")
    assert trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == 80.0
    [study_trial] = world.service._tuning_jobs.get("kept").study.trials
    assert study_trial.intermediate_values == {1: 80.0, 2: 70.0}
