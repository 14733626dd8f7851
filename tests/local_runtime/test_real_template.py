"""The repository's own template.yaml deploys into moto with the local budget, and its rules reach the functions."""

from __future__ import annotations

import json

import pytest

from reviewtune.local.router import package_root
from reviewtune.local.stack import INBOX_SUFFIX, deploy_stack
from tests.local_runtime.conftest import REGION, make_clients

TEMPLATE = package_root() / "template.yaml"
FUNCTIONS = ("StartTuningFunction", "StartEvaluationFunction", "RecordResultsFunction", "ReconcileFunction")
EVENT_FUNCTIONS = FUNCTIONS[:3]
# The variables reviewtune/core/config.py requires (docs/architecture.md).
REQUIRED_VARIABLES = {
    "BUCKET_NAME",
    "RUNS_TABLE_NAME",
    "IDEMPOTENCY_TABLE_NAME",
    "TOPIC_ARN",
    "SAGEMAKER_ROLE_ARN",
}

pytestmark = pytest.mark.skipif(not TEMPLATE.is_file(), reason="template.yaml is not in the repository")


def sagemaker_event(detail_type: str, detail: dict) -> dict:
    return {"Source": "aws.sagemaker", "DetailType": detail_type, "Detail": json.dumps(detail)}


def test_real_template_deploys_with_the_local_budget(moto_url: str) -> None:
    from reviewtune.budget import Budget

    clients = make_clients(moto_url)
    budget = Budget().parameters()

    stack = deploy_stack(TEMPLATE, clients=clients, parameters=budget, region=REGION)

    # THEN the outputs the CLI and the handlers use are there
    outputs = stack.outputs
    for name in (
        "DataBucketName",
        "RunsTableName",
        "IdempotencyTableName",
        "NotificationTopicArn",
        "SageMakerRoleArn",
    ):
        assert outputs[name], name
    clients("s3").head_bucket(Bucket=outputs["DataBucketName"])
    clients("dynamodb").describe_table(TableName=outputs["RunsTableName"])
    clients("dynamodb").describe_table(TableName=outputs["IdempotencyTableName"])
    clients("iam").get_role(RoleName=outputs["SageMakerRoleArn"].rsplit("/", 1)[1])
    # AND the settings moto's CloudFormation ignores are applied as the template asks
    assert clients("s3").get_bucket_versioning(Bucket=outputs["DataBucketName"])["Status"] == "Enabled"
    ttl = clients("dynamodb").describe_time_to_live(TableName=outputs["IdempotencyTableName"])
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}

    # AND four functions, each with an inbox queue that its rule (or schedule) targets, and settings from the budget
    assert [spec.logical_id for spec in stack.functions] == list(FUNCTIONS)
    queues = clients("sqs").list_queues()["QueueUrls"]
    assert len([url for url in queues if INBOX_SUFFIX in url]) == 4
    events = clients("events")
    reconcile = stack.function("ReconcileFunction")
    assert reconcile.rules == () and reconcile.schedules == (stack.parameters["ReconcileSchedule"],)
    assert reconcile.failure_queue_urls and reconcile.environment["MAX_CONCURRENT_RUNS"] == "2"
    for spec in (stack.function(logical_id) for logical_id in EVENT_FUNCTIONS):
        assert spec.handler_file == TEMPLATE.parent / "functions" / spec.handler_file.parent.name / "app.py"
        assert spec.handler_file.is_file()
        assert set(spec.environment) >= REQUIRED_VARIABLES
        assert spec.environment["MODEL_NAME"] == budget["ModelName"]
        assert spec.environment["MAX_JOBS"] == budget["MaxJobs"]
        assert spec.environment["BUCKET_NAME"] == outputs["DataBucketName"]
        (rule,) = spec.rules
        (target,) = events.list_targets_by_rule(Rule=rule.rule_name)["Targets"]
        assert target["Arn"].endswith(spec.inbox_queue_url.rsplit("/", 1)[1])
        assert spec.dead_letter_queue_urls({}), f"{spec.logical_id} has no dead-letter queue"

    # AND the rules deliver a dropped file and the SageMaker state changes to the right inbox
    put = clients("s3").put_object(Bucket=outputs["DataBucketName"], Key="incoming/reviews.csv", Body=b"x")
    prefix = stack.parameters["JobNamePrefix"]
    events.put_events(
        Entries=[
            sagemaker_event(
                "SageMaker HyperParameter Tuning Job State Change",
                {
                    "HyperParameterTuningJobName": f"{prefix}-abc",
                    "HyperParameterTuningJobStatus": "Completed",
                },
            ),
            sagemaker_event(
                "SageMaker Processing Job State Change",
                {"ProcessingJobName": f"{prefix}-abc-eval", "ProcessingJobStatus": "Completed"},
            ),
        ]
    )
    expected = {
        "StartTuningFunction": "Object Created",
        "StartEvaluationFunction": "SageMaker HyperParameter Tuning Job State Change",
        "RecordResultsFunction": "SageMaker Processing Job State Change",
    }
    for spec in (stack.function(logical_id) for logical_id in EVENT_FUNCTIONS):
        messages = clients("sqs").receive_message(QueueUrl=spec.inbox_queue_url, MaxNumberOfMessages=10)
        delivered = [json.loads(message["Body"]) for message in messages["Messages"]]
        assert [event["detail-type"] for event in delivered] == [expected[spec.logical_id]]
        if spec.logical_id == "StartTuningFunction":
            assert delivered[0]["detail"]["object"]["version-id"] == put["VersionId"]
