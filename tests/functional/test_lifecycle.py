"""Warm start, Model Registry, champion, completion criteria and costs, through the handlers (moto + fake SageMaker).

GIVEN a stack on moto and the in-memory SageMaker, WHEN files of a dataset are dropped and their jobs end, THEN
the requests, the run items, the registry and the messages say what happened.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.validate import validate_parameters

from reviewtune.core import registry
from reviewtune.core.champion import get_champion
from reviewtune.core.registration import register_and_decide
from tests.functional.pipeline import Pipeline, good_file
from tests.support.aws import REGION
from tests.support.files import with_extra_column

SAGEMAKER_MODEL = boto3.client("sagemaker", region_name=REGION).meta.service_model


def valid(operation: str, request: dict) -> dict:
    """The request, checked against SageMaker's API model (what AWS would refuse as malformed)."""
    validate_parameters(request, SAGEMAKER_MODEL.operation_model(operation).input_shape)
    return request


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def start(pipeline: Pipeline, key: str = "incoming/team/a.tsv", body: bytes | None = None) -> str:
    result = pipeline.start_tuning(pipeline.drop_event(key, body))
    assert result["status"] == "TUNING", result
    return result["run_id"]


def tuning_request(pipeline: Pipeline, run_id: str) -> dict:
    return valid("CreateHyperParameterTuningJob", pipeline.sagemaker.tuning[run_id]["request"])


def channels(request: dict) -> dict[str, str]:
    return {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in request["TrainingJobDefinition"]["InputDataConfig"]
    }


def message(pipeline: Pipeline, run_id: str) -> str:
    [received] = pipeline.messages(run_id)
    return received["Message"]


# ------------------------------------------------------------------------------------------------ warm start


def test_first_run_starts_cold_and_records_what_later_runs_need(pipeline):
    run_id = start(pipeline)

    request = tuning_request(pipeline, run_id)
    assert "WarmStartConfig" not in request
    item = pipeline.run(run_id)
    assert item["config"]["warm_start"]["parents"] == [] and item["config"]["warm_start"]["reason"] == "no earlier succeeded run of the dataset"
    assert item["config"]["objective_metric"] == "validation:accuracy"
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert set(item["config"]["hyperparameter_names"]) == set(static) | {"learning_rate", "train_batch_size"}
    assert set(item["data"]["sha256"]) == {"train", "validation", "test"}


def test_same_data_warm_starts_identically_reading_the_parent_s_data(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)

    # A re-export with one more column: other content (so not DUPLICATE), the same splits byte for byte.
    second = start(pipeline, body=with_extra_column(good_file()))

    request = tuning_request(pipeline, second)
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": first}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    assert channels(request) == {
        "train": f"s3://{stack.bucket}/runs/{first}/data/train/",
        "validation": f"s3://{stack.bucket}/runs/{first}/data/validation/",
    }
    item = pipeline.run(second)
    assert item["data"]["sha256"] == pipeline.run(first)["data"]["sha256"]
    assert item["config"]["warm_start"]["parents"] == [first]
    assert item["config"]["warm_start"]["channels"] == channels(request)


def test_other_data_warm_starts_by_transfer_learning_on_its_own_data_and_the_message_names_the_parents(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    request = tuning_request(pipeline, second)
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": first}],
        "WarmStartType": "TransferLearning",
    }
    assert channels(request)["train"] == f"s3://{stack.bucket}/runs/{second}/data/train/"

    pipeline.succeed(second)
    assert f"Warm start:          TransferLearning from {first}" in message(pipeline, second)


def test_warm_start_parameter_false_starts_every_run_cold(stack, monkeypatch):
    monkeypatch.setenv("WARM_START", "false")
    pipeline = Pipeline(stack)
    first = start(pipeline)
    pipeline.succeed(first)

    second = start(pipeline, body=with_extra_column(good_file()))  # not DUPLICATE: other bytes

    assert "WarmStartConfig" not in tuning_request(pipeline, second)
    assert pipeline.run(second)["config"]["warm_start"] == {
        "parents": [],
        "type": None,
        "channels": {
            "train": f"s3://{stack.bucket}/runs/{second}/data/train/",
            "validation": f"s3://{stack.bucket}/runs/{second}/data/validation/",
        },
        "reason": "off (WarmStart=false)",
    }


def test_a_warm_start_sagemaker_refuses_is_dropped_and_the_run_tunes_from_scratch(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ValidationException"]

    second = start(pipeline, body=with_extra_column(good_file()))

    request = tuning_request(pipeline, second)
    assert "WarmStartConfig" not in request
    assert channels(request)["train"] == f"s3://{stack.bucket}/runs/{second}/data/train/"
    warm_start = pipeline.run(second)["config"]["warm_start"]
    assert warm_start["parents"] == [] and "ValidationException" in warm_start["refused"]


def test_failed_runs_are_not_parents(pipeline):
    first = start(pipeline)
    pipeline.sagemaker.finish_tuning(first, "Failed", trials=[{"status": "Failed"}], failure="boom")
    pipeline.tuning_ended(first, "Failed")

    second = start(pipeline)

    assert "WarmStartConfig" not in tuning_request(pipeline, second)
    assert pipeline.run(second)["config"]["warm_start"]["reason"] == "no earlier succeeded run of the dataset"


# ------------------------------------------------------------------------------------------------ completion criteria


def test_completion_criteria_parameters_reach_the_tuning_job_request(stack, monkeypatch):
    monkeypatch.setenv("TARGET_OBJECTIVE_METRIC_VALUE", "81.5")
    monkeypatch.setenv("MAX_JOBS_NOT_IMPROVING", "5")
    monkeypatch.setenv("COMPLETE_ON_CONVERGENCE", "enabled")
    pipeline = Pipeline(stack)

    run_id = start(pipeline)

    assert tuning_request(pipeline, run_id)["HyperParameterTuningJobConfig"]["TuningJobCompletionCriteria"] == {
        "TargetObjectiveMetricValue": 81.5,
        "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 5},
        "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"},
    }


def test_no_completion_criteria_by_default(pipeline):
    run_id = start(pipeline)
    assert "TuningJobCompletionCriteria" not in tuning_request(pipeline, run_id)["HyperParameterTuningJobConfig"]


# ------------------------------------------------------------------------------------------------ registry, champion


def test_succeeded_runs_are_registered_and_the_first_becomes_champion(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=with_extra_column(good_file()))
    pipeline.succeed(second)

    packages = pipeline.sagemaker.packages()
    for package in packages:
        valid("CreateModelPackage", {k: v for k, v in package.items() if k not in ("ModelPackageArn",)})
    assert [p["CustomerMetadataProperties"]["run_id"] for p in packages] == [first, second]
    assert [p["ModelApprovalStatus"] for p in packages] == ["Approved", "PendingManualApproval"]
    assert {p["ModelPackageGroupName"] for p in packages} == {registry.package_group_name("team/a.tsv")}
    best = pipeline.run(first)["tuning"]["best_training_job"]["model_uri"]
    assert packages[0]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == best
    assert packages[0]["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{stack.bucket}/runs/{first}/evaluation/evaluation.json"
    )
    assert packages[0]["ClientToken"] == first

    one, two = pipeline.run(first), pipeline.run(second)
    assert one["model_package_arn"] == packages[0]["ModelPackageArn"]
    assert one["champion"]["decision"] == "first champion"
    assert two["champion"]["decision"] == "kept" and two["champion"]["champion_run_id"] == first
    assert two["registry"]["approval"] == "PendingManualApproval"
    champion = get_champion(pipeline.clients.runs_table, "team/a.tsv")
    assert champion.run_id == first and champion.model_package_arn == packages[0]["ModelPackageArn"]

    assert "Champion:            first champion: challenger 74.1 %" in message(pipeline, first)
    text = message(pipeline, second)
    assert f"Model registry:      {packages[1]['ModelPackageArn']} (PendingManualApproval)" in text
    assert "Champion:            champion kept: challenger 74.1 % vs 74.1 % on the same" in text


def test_a_run_on_another_test_split_is_not_compared(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))
    pipeline.succeed(second)

    item = pipeline.run(second)
    assert item["status"] == "SUCCEEDED"
    assert item["champion"]["decision"] == "not compared: different test split"
    assert item["registry"]["approval"] == "PendingManualApproval"
    assert pipeline.sagemaker.packages()[1]["ModelApprovalStatus"] == "PendingManualApproval"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first
    assert f"Champion:            {first} kept, not compared: different test split" in message(pipeline, second)


def test_a_refused_registration_does_not_cost_the_run_its_outcome(pipeline):
    pipeline.sagemaker.fail["create_model_package"] = ["AccessDeniedException"]
    run_id = start(pipeline)

    result = pipeline.succeed(run_id)

    assert result["status"] == "SUCCEEDED"
    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED" and "model_package_arn" not in item
    assert "AccessDeniedException" in item["registry"]["error"]
    assert item["champion"]["decision"] == "first champion"  # the pointer does not depend on the registry
    text = message(pipeline, run_id)
    assert "Model registry:      registration failed: AccessDeniedException" in text
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def test_a_retried_record_results_registers_once(pipeline):
    run_id = start(pipeline)
    pipeline.succeed(run_id)
    item = pipeline.run(run_id)

    again = register_and_decide(item, item["results"], pipeline.settings, pipeline.clients)

    assert len(pipeline.sagemaker.packages()) == 1
    assert again["model_package_arn"] == item["model_package_arn"]
    assert again["champion"]["decision"] == "already champion"


# ------------------------------------------------------------------------------------------------ costs


def test_costs_are_in_the_run_item_and_the_success_message(pipeline):
    run_id = start(pipeline)
    pipeline.succeed(run_id)

    cost = pipeline.run(run_id)["tuning"]["cost"]
    assert [t["billable_seconds"] for t in cost["trials"]] == [600, 600]
    assert cost["billable_seconds"] == 1200 and cost["training_instance_type"] == "ml.g5.xlarge"
    assert cost["total"] == pytest.approx(1200 * 1.408 / 3600, abs=1e-4)
    text = message(pipeline, run_id)
    assert "Estimated cost:      US$ 0.47 for 1,200 billable seconds on 1 x ml.g5.xlarge" in text
    assert f"  {run_id}-001-abcdef01: 600 billable s, US$ 0.23" in text


def test_costs_are_in_the_failure_message(pipeline):
    run_id = start(pipeline)
    pipeline.sagemaker.finish_tuning(run_id, "Failed", trials=[{"status": "Failed"}], failure="out of memory")
    pipeline.tuning_ended(run_id, "Failed")

    assert pipeline.run(run_id)["tuning"]["cost"]["billable_seconds"] == 600
    text = message(pipeline, run_id)
    assert "Estimated cost:      US$ 0.23 for 600 billable seconds" in text
    assert "Warm start:          none (no earlier succeeded run of the dataset)" in text
