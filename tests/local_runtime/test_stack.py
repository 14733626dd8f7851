"""The stack's resources are created in moto from the SAM template itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reviewtune.local.stack import (
    INBOX_SUFFIX,
    StackError,
    deploy_stack,
    effective_parameters,
    load_template,
    localize,
    to_cloudformation,
)
from tests.local_runtime.conftest import REGION, make_clients


def test_localize_sends_rule_targets_to_inboxes_and_leaves_lambda_out(sam_app: Path) -> None:
    # GIVEN the SAM template translated to CloudFormation
    sam = load_template(sam_app)
    cfn = to_cloudformation(sam_with_s3_code(sam), effective_parameters(sam), REGION)

    # WHEN it is made local
    plan = localize(cfn)
    resources = plan.template["Resources"]

    # THEN no Lambda resource is left, every function has an inbox queue and its rule delivers there
    assert not [lid for lid, res in resources.items() if res["Type"].startswith("AWS::Lambda::")]
    assert resources[f"RecorderFunction{INBOX_SUFFIX}"]["Type"] == "AWS::SQS::Queue"
    assert resources[f"FailingFunction{INBOX_SUFFIX}"]["Type"] == "AWS::SQS::Queue"
    (target,) = resources["RecorderFunctionDropped"]["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [f"RecorderFunction{INBOX_SUFFIX}", "Arn"]}
    (failing_target,) = resources["FailingFunctionBroken"]["Properties"]["Targets"]
    assert failing_target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["FailedEvents", "Arn"]}}
    # AND references to a function become its local name, so resources that use them stay
    log_group_name = resources["RecorderLogGroup"]["Properties"]["LogGroupName"]
    assert log_group_name == {
        "Fn::Sub": [
            "/aws/lambda/${RecorderFunctionLocalName}",
            {"RecorderFunctionLocalName": "reviewtune-local-RecorderFunction"},
        ]
    }


def sam_with_s3_code(sam: dict) -> dict:
    for resource in sam["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = "s3://bucket/code.zip"
    return sam


def test_deploy_creates_the_template_resources(sam_app: Path, moto_url: str) -> None:
    clients = make_clients(moto_url)

    # WHEN the template is deployed with two parameters overridden
    stack = deploy_stack(sam_app, clients=clients, parameters={"Greeting": "hi", "MaxJobs": 8}, region=REGION)

    # THEN its bucket, table, topic and queue exist, named as the outputs say
    outputs = stack.outputs
    clients("s3").head_bucket(Bucket=outputs["DataBucketName"])
    table = clients("dynamodb").describe_table(TableName=outputs["EventsTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    topics = [topic["TopicArn"] for topic in clients("sns").list_topics()["Topics"]]
    assert outputs["TopicArn"] in topics
    assert outputs["RecorderFunctionArn"].endswith(":function:reviewtune-local-RecorderFunction")
    assert stack.parameters == {"Greeting": "hi", "MaxJobs": "8", "Strategy": "Bayesian"}
    # AND the log group that names a function got the function's local name
    groups = clients("logs").describe_log_groups()["logGroups"]
    assert [group["logGroupName"] for group in groups] == ["/aws/lambda/reviewtune-local-RecorderFunction"]

    # AND each function's settings are resolved against the created resources (Globals merged)
    recorder = stack.function("RecorderFunction")
    assert recorder.handler_file == sam_app.parent / "functions" / "recorder" / "app.py"
    assert recorder.handler_name == "handler"
    assert recorder.layer_dirs == (sam_app.parent / "layers" / "shared",)
    assert (recorder.timeout, recorder.memory_size) == (20, 512)
    assert recorder.environment == {
        "TABLE_NAME": outputs["EventsTableName"],
        "BUCKET_NAME": outputs["DataBucketName"],
        "GREETING": "hi-us-east-1",
        "TOPIC_ARN": outputs["TopicArn"],
        "SIZE": "many",
    }
    failing = stack.function("FailingFunction")
    assert failing.timeout == 10
    assert failing.maximum_retry_attempts == 2  # Lambda's default for async invocations
    (rule,) = failing.rules
    assert rule.dead_letter_queue_url is not None
    assert rule.dead_letter_queue_url.rsplit("/", 1)[1] == outputs["FailedEventsUrl"].rsplit("/", 1)[1]
    assert rule.event_pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"object": {"key": [{"prefix": "broken/"}]}},
    }

    # AND the bucket sends its events to EventBridge, whose rule delivers them to the function's inbox
    clients("s3").put_object(Bucket=outputs["DataBucketName"], Key="incoming/a.tsv", Body=b"x")
    messages = clients("sqs").receive_message(QueueUrl=recorder.inbox_queue_url, WaitTimeSeconds=2)[
        "Messages"
    ]
    event = json.loads(messages[0]["Body"])
    assert (event["detail-type"], event["detail"]["object"]["key"]) == ("Object Created", "incoming/a.tsv")


def test_unknown_parameter_is_rejected(sam_app: Path, moto_url: str) -> None:
    with pytest.raises(StackError, match="MaxJob not declared in the template; declared: Greeting, MaxJobs"):
        deploy_stack(sam_app, clients=make_clients(moto_url), parameters={"MaxJob": 2})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Strategy": "Grid"}, "Strategy='Grid' must be one of Random, Bayesian"),
        ({"MaxJobs": 0}, "MaxJobs='0' must be at least 1"),
        ({"MaxJobs": "many"}, "MaxJobs='many' must be a number"),
    ],
)
def test_parameters_are_checked_like_cloudformation(sam_app: Path, overrides: dict, message: str) -> None:
    with pytest.raises(StackError, match=message):
        effective_parameters(load_template(sam_app), overrides)


def test_a_function_without_local_code_is_rejected(sam_app: Path, tmp_path: Path, moto_url: str) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        sam_app.read_text().replace("CodeUri: functions/failing/", "CodeUri: s3://bucket/f.zip")
    )
    with pytest.raises(StackError, match="FailingFunction: CodeUri must be a local folder"):
        deploy_stack(template, clients=make_clients(moto_url))
