"""Full tuning runs with real training subprocesses, one per SageMaker strategy.

The synthetic train.py reports ``val_acc = 50 + 1000 * learning_rate + batch / 64 + epoch`` every epoch, so
the objective of every trial, and therefore the best one, is known from its tuned hyperparameters.
"""

from __future__ import annotations

import itertools
import json

import pytest


def expected_accuracy(tuned: dict[str, str], epochs: int = 3) -> float:
    learning_rate = float(tuned.get("learning_rate", "0.01"))
    batch = int(json.loads(tuned.get("train_batch_size", "64")))
    return round(50.0 + 1000.0 * learning_rate + batch / 64.0 + epochs, 4)


CATEGORICAL_GRID = {
    "CategoricalParameterRanges": [
        {"Name": "learning_rate", "Values": ["0.001", "0.01"]},
        {"Name": "train_batch_size", "Values": ['"64"', '"128"']},
    ]
}


@pytest.mark.parametrize(
    ("strategy", "ranges", "max_jobs"),
    [("Random", None, 4), ("Bayesian", None, 3), ("Grid", CATEGORICAL_GRID, 4), ("Hyperband", None, 3)],
)
def test_tuning_job_runs_trials_and_reports_the_best(world, strategy, ranges, max_jobs):
    name = f"tune-{strategy.lower()}"
    world.sm.create_hyper_parameter_tuning_job(
        **world.tuning_request(name, strategy=strategy, ranges=ranges, max_jobs=max_jobs, max_parallel=2)
    )

    described = world.wait_tuning(name)
    trials = world.trials(name)

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert len(trials) == max_jobs
    assert sorted(t["TrainingJobName"].rsplit("-", 2)[1] for t in trials) == [
        f"{n:03d}" for n in range(1, max_jobs + 1)
    ]
    objectives = {
        t["TrainingJobName"]: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials
    }
    for trial in trials:
        assert trial["ObjectiveStatus"] == "Succeeded"
        if trial["TrainingJobStatus"] == "Completed":  # Hyperband may stop a trial early
            assert objectives[trial["TrainingJobName"]] == expected_accuracy(trial["TunedHyperParameters"])
    best = described["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "MetricName": "validation:accuracy",
        "Value": max(objectives.values()),
        "Type": "Maximize",
    }
    assert objectives[best["TrainingJobName"]] == max(objectives.values())
    counters = described["TrainingJobStatusCounters"]
    assert counters["Completed"] + counters["Stopped"] == max_jobs
    assert counters["InProgress"] == counters["NonRetryableError"] == counters["RetryableError"] == 0
    assert described["ObjectiveStatusCounters"] == {"Succeeded": max_jobs, "Pending": 0, "Failed": 0}
    assert described["HyperParameterTuningEndTime"] >= described["CreationTime"]

    best_job = world.sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    final = {m["MetricName"]: m["Value"] for m in best_job["FinalMetricDataList"]}
    assert final["validation:accuracy"] == best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert final["validation:loss"] == round(100.0 / final["validation:accuracy"], 4)
    assert best_job["TuningJobArn"] == described["HyperParameterTuningJobArn"]
    assert best_job["ModelArtifacts"]["S3ModelArtifacts"] == (
        f"s3://{world.bucket}/runs/{name}/models/{best['TrainingJobName']}/output/model.tar.gz"
    )
    assert world.model_json(best["TrainingJobName"])["train_files"] == ["train.tsv"]

    if strategy == "Grid":
        combos = {tuple(sorted(t["TunedHyperParameters"].items())) for t in trials}
        assert combos == {
            (("learning_rate", lr), ("train_batch_size", bs))
            for lr, bs in itertools.product(["0.001", "0.01"], ['"64"', '"128"'])
        }


def test_trial_gets_the_framework_container_contract(world):
    request = world.tuning_request("contract", max_jobs=1, max_parallel=2)
    request["TrainingJobDefinition"]["Environment"] = {"REVIEWTUNE_LABEL": "from-definition"}
    world.sm.create_hyper_parameter_tuning_job(**request)
    world.wait_tuning("contract")
    [trial] = world.trials("contract")

    written = world.model_json(trial["TrainingJobName"])
    env, args = written["env"], written["args"]
    folder = world.workdir / "training" / trial["TrainingJobName"]

    assert args[args.index("--train_batch_size") + 1] == trial["TunedHyperParameters"]["train_batch_size"]
    assert args[args.index("--learning_rate") + 1] == trial["TunedHyperParameters"]["learning_rate"]
    assert "--sagemaker_program" not in args
    assert env["SM_CHANNEL_TRAIN"] == str(folder / "input" / "data" / "train")
    assert json.loads(env["SM_CHANNELS"]) == ["train", "validation"]
    assert env["SM_MODEL_DIR"] == str(folder / "model")
    assert env["SM_NUM_CPUS"] == env["OMP_NUM_THREADS"] == "4"  # one trial in all: it gets the 4 CPUs
    assert env["REVIEWTUNE_LABEL"] == "from-definition"
    assert env["SM_NUM_GPUS"] == "0"
    assert json.loads(env["SM_HPS"])["epochs"] == 3
    assert written["cwd"] == str(folder / "code")
    assert (folder / "log.txt").read_text().count("val_acc") == 3
    # the packed model lives in S3 (read above); the job folder keeps the model, not a second copy of it
    assert (folder / "model" / "model.json").is_file()
    assert not (folder / "model.tar.gz").exists()


def test_sdk_analytics_dataframe_has_one_row_per_trial(world):
    import boto3
    import sagemaker
    from sagemaker.analytics import HyperparameterTuningJobAnalytics

    world.sm.create_hyper_parameter_tuning_job(
        **world.tuning_request("analytics", max_jobs=3, max_parallel=2)
    )
    world.wait_tuning("analytics")
    session = sagemaker.Session(
        boto_session=boto3.Session(region_name="us-east-1"),
        sagemaker_client=boto3.client("sagemaker", endpoint_url=world.service.url, region_name="us-east-1"),
    )

    frame = HyperparameterTuningJobAnalytics("analytics", sagemaker_session=session).dataframe()

    assert len(frame) == 3
    assert set(frame["TrainingJobName"]) == {t["TrainingJobName"] for t in world.trials("analytics")}
    assert frame["FinalObjectiveValue"].notna().all()
    assert (frame["TrainingElapsedTimeSeconds"] > 0).all()
    assert set(frame.columns) >= {"learning_rate", "train_batch_size", "TrainingJobStatus"}


def test_list_training_jobs_for_tuning_job_sorts_filters_and_paginates(world):
    world.sm.create_hyper_parameter_tuning_job(**world.tuning_request("listing", max_jobs=3, max_parallel=2))
    world.wait_tuning("listing")
    objectives = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in world.trials("listing")]

    first = world.sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="listing",
        SortBy="FinalObjectiveMetricValue",
        SortOrder="Descending",
        MaxResults=2,
    )
    rest = world.sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="listing",
        SortBy="FinalObjectiveMetricValue",
        SortOrder="Descending",
        MaxResults=2,
        NextToken=first["NextToken"],
    )
    stopped = world.sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="listing", StatusEquals="Stopped"
    )

    values = [
        t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in first["TrainingJobSummaries"]
    ]
    values += [
        t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in rest["TrainingJobSummaries"]
    ]
    assert values == sorted(objectives, reverse=True)
    assert "NextToken" not in rest
    assert stopped["TrainingJobSummaries"] == []
    listed = world.sm.list_hyper_parameter_tuning_jobs(NameContains="LIST")[
        "HyperParameterTuningJobSummaries"
    ]
    assert [s["HyperParameterTuningJobName"] for s in listed] == ["listing"]
    assert listed[0]["Strategy"] == "Random" and listed[0]["TrainingJobStatusCounters"]["Completed"] == 3
    assert (
        len(world.sm.list_training_jobs(NameContains="listing-", MaxResults=100)["TrainingJobSummaries"]) == 3
    )
