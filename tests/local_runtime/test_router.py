"""EventBridge → inbox queue → handler, with Lambda's retries and dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reviewtune.local.router import Invocation, Outcome, Router
from reviewtune.local.stack import LocalStack, deploy_stack
from tests.local_runtime.conftest import REGION, handler_environment, make_clients


@pytest.fixture
def deployed(
    sam_app: Path, moto_url: str, tmp_path: Path
) -> Iterator[tuple[LocalStack, Router, list[Invocation]]]:
    clients = make_clients(moto_url)
    stack = deploy_stack(sam_app, clients=clients, region=REGION)
    seen: list[Invocation] = []
    router = Router(
        stack.functions,
        sqs_client=clients("sqs"),
        environment=handler_environment(moto_url),
        log_dir=tmp_path / "logs",
        on_invocation=seen.append,
        retry_delay_s=0,
    )
    router.start()
    yield stack, router, seen
    router.stop()


def capture_queue(clients: Any, pattern: dict) -> str:
    """A second rule with the same pattern delivering to a plain queue: what EventBridge sent, untouched."""
    sqs, events = clients("sqs"), clients("events")
    url = sqs.create_queue(QueueName="captured")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="capture", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="capture", Targets=[{"Id": "queue", "Arn": arn}])
    return url


def test_object_under_the_prefix_reaches_the_handler_with_the_exact_event(
    deployed: tuple[LocalStack, Router, list[Invocation]], moto_url: str, tmp_path: Path
) -> None:
    stack, router, seen = deployed
    clients = make_clients(moto_url)
    recorder = stack.function("RecorderFunction")
    captured = capture_queue(clients, recorder.rules[0].event_pattern or {})
    bucket = stack.outputs["DataBucketName"]

    # WHEN a file is dropped under incoming/ (and another one elsewhere)
    clients("s3").put_object(Bucket=bucket, Key="elsewhere/b.tsv", Body=b"ignored")
    clients("s3").put_object(Bucket=bucket, Key="incoming/a.tsv", Body=b"text\tsentiment\n")
    assert router.wait_idle(timeout=30)

    # THEN the handler ran once, in its own environment, with the event EventBridge delivered
    item = clients("dynamodb").get_item(
        TableName=stack.outputs["EventsTableName"], Key={"key": {"S": "incoming/a.tsv"}}
    )
    stored = item["Item"]
    expected = json.loads(clients("sqs").receive_message(QueueUrl=captured)["Messages"][0]["Body"])
    assert json.loads(stored["event"]["S"]) == expected
    assert expected["detail-type"] == "Object Created"
    assert stored["layer"]["S"] == "from-layer"
    assert stored["greeting"]["S"] == "hello-us-east-1"
    assert stored["function_name"]["S"] == "reviewtune-local-RecorderFunction"
    scan = clients("dynamodb").scan(TableName=stack.outputs["EventsTableName"])
    assert scan["Count"] == 1

    # AND the invocation is on record, reported to the callback and logged with the handler's output
    (invocation,) = router.invocations
    assert seen == [invocation]
    assert (invocation.function, invocation.detail_type, invocation.source) == (
        "RecorderFunction",
        "Object Created",
        "aws.s3",
    )
    assert (invocation.outcome, invocation.attempt, invocation.result) == (
        Outcome.SUCCEEDED,
        1,
        {"recorded": "incoming/a.tsv"},
    )
    log = (tmp_path / "logs" / "RecorderFunction.log").read_text()
    assert "recording incoming/a.tsv" in log
    assert "succeeded" in log
    # AND the inbox is empty
    attributes = clients("sqs").get_queue_attributes(
        QueueUrl=recorder.inbox_queue_url, AttributeNames=["All"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_failing_handler_is_retried_then_its_event_goes_to_the_dead_letter_queue(
    deployed: tuple[LocalStack, Router, list[Invocation]], moto_url: str
) -> None:
    stack, router, _ = deployed
    clients = make_clients(moto_url)

    clients("s3").put_object(Bucket=stack.outputs["DataBucketName"], Key="broken/c.tsv", Body=b"x")
    assert router.wait_idle(timeout=60)

    # THEN the first attempt and Lambda's two retries failed, and the event went to the rule's DLQ
    attempts = [(i.function, i.attempt, i.outcome) for i in router.invocations]
    assert attempts == [
        ("FailingFunction", 1, Outcome.RETRYING),
        ("FailingFunction", 2, Outcome.RETRYING),
        ("FailingFunction", 3, Outcome.DEAD_LETTERED),
    ]
    assert router.invocations[-1].error == "RuntimeError: this handler always fails"
    dlq = stack.function("FailingFunction").rules[0].dead_letter_queue_url
    messages = clients("sqs").receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert (event["detail-type"], event["detail"]["object"]["key"]) == ("Object Created", "broken/c.tsv")
    assert (
        messages[0]["MessageAttributes"]["ErrorMessage"]["StringValue"]
        == "RuntimeError: this handler always fails"
    )
    inbox = stack.function("FailingFunction").inbox_queue_url
    assert "Messages" not in clients("sqs").receive_message(QueueUrl=inbox)


def test_direct_invoke_runs_the_handler_once(deployed: tuple[LocalStack, Router, list[Invocation]]) -> None:
    _, router, _ = deployed

    invocation = router.invoke("FailingFunction", {"detail-type": "Manual", "source": "test"})

    assert (invocation.outcome, invocation.detail_type, invocation.exit_code) == (
        Outcome.DISCARDED,
        "Manual",
        1,
    )
    assert "RuntimeError: this handler always fails" in invocation.output_tail


def test_a_succeeded_invocation_whose_log_file_cannot_be_written_is_not_made_again(
    deployed: tuple[LocalStack, Router, list[Invocation]], moto_url: str, tmp_path: Path
) -> None:
    """Lambda never invokes a succeeded asynchronous event again: a log line the router cannot append (a full disk)
    must not leave the event in the inbox, to be delivered again once its visibility timeout ends."""
    stack, router, seen = deployed
    clients = make_clients(moto_url)
    (tmp_path / "logs" / "RecorderFunction.log").mkdir(parents=True)  # the log line cannot be appended

    clients("s3").put_object(Bucket=stack.outputs["DataBucketName"], Key="incoming/a.tsv", Body=b"x")
    assert router.wait_idle(timeout=30)

    assert [invocation.outcome for invocation in seen] == [Outcome.SUCCEEDED]
    inbox = stack.function("RecorderFunction").inbox_queue_url
    attributes = clients("sqs").get_queue_attributes(
        QueueUrl=inbox, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    assert sum(int(value) for value in attributes["Attributes"].values()) == 0
