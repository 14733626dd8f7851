"""Requests the real SageMaker rejects are rejected with the same error codes and a message naming the field."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from reviewtune.local.sagemaker import ScriptedRun, ScriptedRunner

from .conftest import REGION


@pytest.fixture
def world(make_world):
    # Nothing here needs a process: accepted jobs replay one metric line.
    return make_world(runner=ScriptedRunner(lambda spec: ScriptedRun(["val_loss: 0.5 - val_acc: 61.0"])))


@pytest.fixture
def raw_sm(world):
    """A client that skips botocore's own checks, so the service sees the malformed request."""
    return boto3.client(
        "sagemaker",
        endpoint_url=world.service.url,
        region_name=REGION,
        config=Config(parameter_validation=False),
    )


def error_of(call, **kwargs) -> dict:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]


def test_tuning_job_name_must_match_the_pattern(world):
    error = error_of(world.sm.create_hyper_parameter_tuning_job, **world.tuning_request("bad_name"))

    assert error["Code"] == "ValidationException"
    assert "'bad_name' at 'hyperParameterTuningJobName'" in error["Message"]
    assert "regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}" in error["Message"]


def test_tuning_job_name_longer_than_32_characters_is_rejected(world):
    error = error_of(world.sm.create_hyper_parameter_tuning_job, **world.tuning_request("a" * 33))

    assert error["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 32" in error["Message"]


def test_missing_required_field_is_named(world, raw_sm):
    request = world.tuning_request("missing-config")
    del request["HyperParameterTuningJobConfig"]["ResourceLimits"]

    error = error_of(raw_sm.create_hyper_parameter_tuning_job, **request)

    assert error["Code"] == "ValidationException"
    assert error["Message"] == (
        "1 validation error detected: Value null at 'hyperParameterTuningJobConfig.resourceLimits' "
        "failed to satisfy constraint: Member must not be null"
    )


def test_missing_training_job_definition_is_named(world, raw_sm):
    request = world.tuning_request("no-definition")
    del request["TrainingJobDefinition"]

    error = error_of(raw_sm.create_hyper_parameter_tuning_job, **request)

    assert error["Code"] == "ValidationException"
    assert "TrainingJobDefinition is required" in error["Message"]


def test_duplicate_name_is_resource_in_use_case_insensitively(world):
    world.sm.create_hyper_parameter_tuning_job(**world.tuning_request("dup-Name", max_jobs=1))

    error = error_of(
        world.sm.create_hyper_parameter_tuning_job, **world.tuning_request("DUP-name", max_jobs=1)
    )

    assert error["Code"] == "ResourceInUse"
    assert "dup-Name" in error["Message"] and "already exists" in error["Message"]


def test_unknown_names_are_not_found_with_sagemakers_codes(world):
    tuning = error_of(world.sm.describe_hyper_parameter_tuning_job, HyperParameterTuningJobName="nope")
    training = error_of(world.sm.describe_training_job, TrainingJobName="nope")
    processing = error_of(world.sm.describe_processing_job, ProcessingJobName="nope")
    listing = error_of(
        world.sm.list_training_jobs_for_hyper_parameter_tuning_job, HyperParameterTuningJobName="nope"
    )

    assert tuning == {**tuning, "Code": "ResourceNotFound"}
    assert tuning["Message"] == "Amazon SageMaker can't find a tuning job called nope. Type another name."
    assert listing["Code"] == "ResourceNotFound"
    assert (
        training["Code"] == "ValidationException" and training["Message"] == "Requested resource not found."
    )
    assert processing["Code"] == "ValidationException" and "nope" in processing["Message"]


def test_objective_metric_must_be_defined(world):
    request = world.tuning_request("no-metric")
    request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = (
        "validation:f1"
    )

    error = error_of(world.sm.create_hyper_parameter_tuning_job, **request)

    assert error["Code"] == "ValidationException"
    assert "[validation:f1]" in error["Message"] and "MetricDefinitions" in error["Message"]


@pytest.mark.parametrize(
    ("strategy", "ranges", "extra", "expected"),
    [
        (
            "Grid",
            {
                "ContinuousParameterRanges": [
                    {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01"}
                ]
            },
            {},
            "Grid strategy supports only CategoricalParameterRanges; learning_rate",
        ),
        (
            "Random",
            {
                "ContinuousParameterRanges": [
                    {"Name": "lr", "MinValue": "0", "MaxValue": "1", "ScalingType": "Logarithmic"}
                ]
            },
            {},
            "Logarithmic scaling of hyperparameter 'lr' needs MinValue greater than 0",
        ),
        (
            "Random",
            {"ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.5", "MaxValue": "0.1"}]},
            {},
            "MinValue (0.5) of continuous hyperparameter 'lr' must be less than its MaxValue (0.1)",
        ),
        (
            "Random",
            {"IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "3"}]},
            {},
            "'epochs' is both tunable (ParameterRanges) and static",
        ),
        (
            "Hyperband",
            {"CategoricalParameterRanges": [{"Name": "train_batch_size", "Values": ["64"]}]},
            {"TrainingJobEarlyStoppingType": "Auto"},
            "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy",
        ),
    ],
)
def test_inconsistent_tuning_configuration_is_rejected(world, strategy, ranges, extra, expected):
    request = world.tuning_request("bad-config", strategy=strategy, ranges=ranges)
    request["HyperParameterTuningJobConfig"].update(extra)

    error = error_of(world.sm.create_hyper_parameter_tuning_job, **request)

    assert error["Code"] == "ValidationException"
    assert expected in error["Message"]


def test_too_many_parallel_jobs_exceeds_the_resource_limit(world):
    request = world.tuning_request("too-parallel", max_jobs=200, max_parallel=101)

    error = error_of(world.sm.create_hyper_parameter_tuning_job, **request)

    assert error["Code"] == "ResourceLimitExceeded"


def test_processing_job_name_longer_than_63_characters_is_rejected(world):
    error = error_of(
        world.sm.create_processing_job,
        ProcessingJobName="p" * 64,
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
        AppSpecification={"ImageUri": "image"},
        RoleArn="arn:aws:iam::123456789012:role/r",
    )

    assert error["Code"] == "ValidationException"
    assert "at 'processingJobName'" in error["Message"] and "less than or equal to 63" in error["Message"]


def test_unknown_operation_is_reported(world):
    error = error_of(world.sm.list_endpoints)

    assert error["Code"] == "UnknownOperationException"
    assert "ListEndpoints" in error["Message"]


def test_tags_are_listed_and_added(world):
    request = world.tuning_request("tagged", max_jobs=1)
    request["Tags"] = [{"Key": "run", "Value": "r1"}]
    arn = world.sm.create_hyper_parameter_tuning_job(**request)["HyperParameterTuningJobArn"]

    world.sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ops"}])

    assert world.sm.list_tags(ResourceArn=arn)["Tags"] == [
        {"Key": "run", "Value": "r1"},
        {"Key": "team", "Value": "ops"},
    ]
    assert error_of(world.sm.list_tags, ResourceArn=arn + "x")["Code"] == "ResourceNotFound"


@pytest.mark.parametrize("line_break", ["\n", "\r", "\u0085", "\u2028", "\u2029"])
def test_a_dot_in_a_pattern_matches_no_line_terminator_as_java_s(line_break):
    from reviewtune.local.sagemaker.request_validation import _compiled

    dot_star = _compiled(".*")  # UpdateModelPackage's ApprovalDescription
    assert dot_star.fullmatch("no longer champion of team a.tsv")
    assert not dot_star.fullmatch(f"no longer champion of team{line_break}a.tsv")
    assert _compiled("[.]").fullmatch(".") and not _compiled("[.]").fullmatch("x")  # in a class: a full stop
    assert _compiled("a\\.b").fullmatch("a.b") and not _compiled("a\\.b").fullmatch("axb")
