"""The Model Registry operations through boto3: groups, versioned packages, approval, listing, errors."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from reviewtune.local.sagemaker import ScriptedRun, ScriptedRunner

from .conftest import IMAGE, REGION

ACCOUNT = "123456789012"


@pytest.fixture
def world(make_world):
    return make_world(runner=ScriptedRunner(lambda spec: ScriptedRun([])))


def error_of(call, **kwargs) -> dict:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]


def package_request(group: str, run_id: str, **extra) -> dict:
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": f"best model of {run_id}",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://bucket/runs/{run_id}/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"s3://bucket/runs/{run_id}/evaluation/evaluation.json",
                }
            }
        },
        "CustomerMetadataProperties": {"run_id": run_id},
        **extra,
    }


def test_group_is_created_described_and_listed(world):
    arn = world.sm.create_model_package_group(
        ModelPackageGroupName="team-a-reviews", ModelPackageGroupDescription="reviews of team a"
    )["ModelPackageGroupArn"]

    described = world.sm.describe_model_package_group(ModelPackageGroupName="team-a-reviews")
    by_arn = world.sm.describe_model_package_group(ModelPackageGroupName=arn)
    listed = world.sm.list_model_package_groups(NameContains="team-a")["ModelPackageGroupSummaryList"]

    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/team-a-reviews"
    assert described["ModelPackageGroupName"] == "team-a-reviews"
    assert described["ModelPackageGroupDescription"] == "reviews of team a"
    assert described["ModelPackageGroupStatus"] == "Completed"
    assert by_arn["ModelPackageGroupArn"] == arn
    assert [g["ModelPackageGroupName"] for g in listed] == ["team-a-reviews"]


def test_duplicate_group_is_a_validation_error(world):
    world.sm.create_model_package_group(ModelPackageGroupName="dup")

    error = error_of(world.sm.create_model_package_group, ModelPackageGroupName="DUP")

    assert error["Code"] == "ValidationException"
    assert error["Message"] == (
        f"Model Package Group already exists: arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/dup"
    )


@pytest.mark.parametrize("name", ["under_score", "-leading", "a" * 64, "trailing-"])
def test_group_name_must_match_the_pattern(world, name):
    error = error_of(world.sm.create_model_package_group, ModelPackageGroupName=name)

    assert error["Code"] == "ValidationException"
    assert "modelPackageGroupName" in error["Message"]


def test_missing_group_is_a_validation_error(world):
    error = error_of(world.sm.describe_model_package_group, ModelPackageGroupName="nope")
    create_error = error_of(world.sm.create_model_package, **package_request("nope", "r1"))

    assert error["Code"] == create_error["Code"] == "ValidationException"
    assert error["Message"] == (
        f"ModelPackageGroup arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/nope does not exist."
    )
    assert "nope" in create_error["Message"] and "does not exist" in create_error["Message"]


def test_versioned_packages_number_1_2_and_keep_what_was_registered(world):
    world.sm.create_model_package_group(ModelPackageGroupName="g")

    first = world.sm.create_model_package(**package_request("g", "run-1"))["ModelPackageArn"]
    second = world.sm.create_model_package(**package_request("g", "run-2", ModelApprovalStatus="Approved"))[
        "ModelPackageArn"
    ]
    described = world.sm.describe_model_package(ModelPackageName=first)
    by_version = world.sm.describe_model_package(ModelPackageName="g/2")

    assert first == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/1"
    assert second == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/2"
    assert described["ModelPackageGroupName"] == "g"
    assert described["ModelPackageVersion"] == 1
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelPackageStatus"] == "Completed"
    assert described["InferenceSpecification"] == package_request("g", "run-1")["InferenceSpecification"]
    assert described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith(
        "runs/run-1/evaluation/evaluation.json"
    )
    assert described["CustomerMetadataProperties"] == {"run_id": "run-1"}
    assert by_version["ModelPackageArn"] == second
    assert by_version["ModelApprovalStatus"] == "Approved"


def test_versions_are_counted_per_group(world):
    for group in ("a", "b"):
        world.sm.create_model_package_group(ModelPackageGroupName=group)
    world.sm.create_model_package(**package_request("a", "r1"))

    arn = world.sm.create_model_package(**package_request("b", "r2"))["ModelPackageArn"]

    assert arn.endswith(":model-package/b/1")


def test_package_needs_exactly_one_of_name_and_group(world):
    world.sm.create_model_package_group(ModelPackageGroupName="g")

    both = error_of(world.sm.create_model_package, ModelPackageName="p", ModelPackageGroupName="g")
    neither = error_of(world.sm.create_model_package, ModelPackageDescription="x")

    assert both["Code"] == neither["Code"] == "ValidationException"
    assert "Both ModelPackageName and ModelPackageGroupName are provided" in both["Message"]
    assert "Missing ARN" in neither["Message"]


def test_bad_approval_status_is_rejected_by_the_model(world):
    world.sm.create_model_package_group(ModelPackageGroupName="g")
    raw = world.sm  # botocore does not check enums client-side
    error = error_of(raw.create_model_package, **package_request("g", "r", ModelApprovalStatus="Maybe"))

    assert error["Code"] == "ValidationException"
    assert "enum value set: [Approved, Rejected, PendingManualApproval]" in error["Message"]


def test_list_packages_filters_sorts_and_pages(world):
    world.sm.create_model_package_group(ModelPackageGroupName="g")
    world.sm.create_model_package_group(ModelPackageGroupName="other")
    statuses = ["Approved", "Rejected", "Approved", "PendingManualApproval"]
    for index, status in enumerate(statuses, start=1):
        world.sm.create_model_package(**package_request("g", f"r{index}", ModelApprovalStatus=status))
    world.sm.create_model_package(**package_request("other", "x"))
    world.sm.create_model_package(ModelPackageName="loose", ModelPackageDescription="unversioned")

    approved = world.sm.list_model_packages(ModelPackageGroupName="g", ModelApprovalStatus="Approved")
    newest_first = world.sm.list_model_packages(
        ModelPackageGroupName="g", SortBy="CreationTime", SortOrder="Descending", MaxResults=3
    )
    rest = world.sm.list_model_packages(
        ModelPackageGroupName="g",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=3,
        NextToken=newest_first["NextToken"],
    )
    default_type = world.sm.list_model_packages()["ModelPackageSummaryList"]
    both = world.sm.list_model_packages(ModelPackageType="Both", MaxResults=100)["ModelPackageSummaryList"]

    assert [p["ModelPackageVersion"] for p in approved["ModelPackageSummaryList"]] == [1, 3]
    assert [p["ModelPackageVersion"] for p in newest_first["ModelPackageSummaryList"]] == [4, 3, 2]
    assert [p["ModelPackageVersion"] for p in rest["ModelPackageSummaryList"]] == [1]
    assert "NextToken" not in rest
    assert [p["ModelPackageName"] for p in default_type] == ["loose"]
    assert len(both) == 6
    summary = approved["ModelPackageSummaryList"][0]
    assert set(summary) >= {
        "ModelPackageGroupName",
        "ModelPackageVersion",
        "ModelPackageArn",
        "CreationTime",
        "ModelPackageStatus",
        "ModelApprovalStatus",
    }


def test_update_changes_approval_and_metadata(world):
    world.sm.create_model_package_group(ModelPackageGroupName="g")
    arn = world.sm.create_model_package(
        **package_request("g", "r1", CustomerMetadataProperties={"run_id": "r1", "stale": "x"})
    )["ModelPackageArn"]

    world.sm.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription="challenger 75.2 % vs 73.1 %",
        CustomerMetadataProperties={"champion": "true"},
        CustomerMetadataPropertiesToRemove=["stale"],
    )
    described = world.sm.describe_model_package(ModelPackageName=arn)

    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "challenger 75.2 % vs 73.1 %"
    assert described["CustomerMetadataProperties"] == {"run_id": "r1", "champion": "true"}
    assert described["LastModifiedTime"] >= described["CreationTime"]


def test_update_of_a_missing_package_or_conflicting_keys_is_rejected(world):
    world.sm.create_model_package_group(ModelPackageGroupName="g")
    arn = world.sm.create_model_package(**package_request("g", "r1"))["ModelPackageArn"]
    missing = arn.replace("/g/1", "/g/9")

    not_found = error_of(
        world.sm.update_model_package, ModelPackageArn=missing, ModelApprovalStatus="Approved"
    )
    conflict = error_of(
        world.sm.update_model_package,
        ModelPackageArn=arn,
        CustomerMetadataProperties={"k": "v"},
        CustomerMetadataPropertiesToRemove=["k"],
    )

    assert not_found["Code"] == conflict["Code"] == "ValidationException"
    assert not_found["Message"] == f"ModelPackage {missing} does not exist."
    assert "['k']" in conflict["Message"]
    assert (
        world.sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]
        == "PendingManualApproval"
    )


def test_creation_and_approval_publish_state_change_events(world, aws):
    queue_url = aws["sqs"].create_queue(QueueName=f"mp-{world.bucket}")["QueueUrl"]
    queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = f"mp-{world.bucket}"
    aws["events"].put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"]}
        ),
    )
    aws["events"].put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    group = f"g-{world.bucket}"
    world.sm.create_model_package_group(ModelPackageGroupName=group)
    arn = world.sm.create_model_package(**package_request(group, "r1"))["ModelPackageArn"]
    world.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")

    details = []
    for _ in range(10):
        messages = aws["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        details += [json.loads(m["Body"])["detail"] for m in messages.get("Messages", [])]
        if len(details) >= 2:
            break
    aws["events"].remove_targets(Rule=rule, Ids=["q"])
    aws["events"].delete_rule(Name=rule)

    assert [(d["ModelPackageArn"], d["ModelApprovalStatus"]) for d in details] == [
        (arn, "PendingManualApproval"),
        (arn, "Approved"),
    ]
    assert details[0]["ModelPackageVersion"] == 1


def test_group_by_arn_client_token_and_tags(world):
    group_arn = world.sm.create_model_package_group(
        ModelPackageGroupName="tagged", Tags=[{"Key": "dataset", "Value": "team-a/reviews.tsv"}]
    )["ModelPackageGroupArn"]

    first = world.sm.create_model_package(**package_request(group_arn, "r1", ClientToken="run-r1"))
    retried = world.sm.create_model_package(**package_request(group_arn, "r1", ClientToken="run-r1"))
    other = world.sm.create_model_package(**package_request("tagged", "r2", ClientToken="run-r2"))
    tags = world.sm.list_tags(ResourceArn=group_arn)["Tags"]

    assert first["ModelPackageArn"] == retried["ModelPackageArn"] == group_arn.replace("-group/", "/") + "/1"
    assert other["ModelPackageArn"].endswith("/tagged/2")
    assert tags == [{"Key": "dataset", "Value": "team-a/reviews.tsv"}]


def test_groups_list_sorted_and_paged(world):
    for name in ("b-group", "a-group", "c-group"):
        world.sm.create_model_package_group(ModelPackageGroupName=name)

    by_name = world.sm.list_model_package_groups(SortBy="Name", MaxResults=2)
    rest = world.sm.list_model_package_groups(SortBy="Name", MaxResults=2, NextToken=by_name["NextToken"])
    newest = world.sm.list_model_package_groups(SortBy="CreationTime", SortOrder="Descending")

    assert [g["ModelPackageGroupName"] for g in by_name["ModelPackageGroupSummaryList"]] == [
        "a-group",
        "b-group",
    ]
    assert [g["ModelPackageGroupName"] for g in rest["ModelPackageGroupSummaryList"]] == ["c-group"]
    assert [g["ModelPackageGroupName"] for g in newest["ModelPackageGroupSummaryList"]] == [
        "c-group",
        "a-group",
        "b-group",
    ]
