"""Test helpers: the stack's resources in moto, created from template.yaml so tests follow what is deployed."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from reviewtune.cfn_yaml import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"


@functools.cache
def _resources() -> dict[str, Any]:
    """template.yaml's Resources, read once per session (every functional test creates its stack from them)."""
    return load_template(TEMPLATE)["Resources"]


def table_properties(logical_id: str) -> dict[str, Any]:
    """CreateTable arguments from a table's Properties in template.yaml (the parts moto needs)."""
    props = copy.deepcopy(_resources()[logical_id]["Properties"])
    args: dict[str, Any] = {
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return args


@dataclass
class Stack:
    bucket: str
    runs_table: str
    idempotency_table: str
    topic_arn: str
    subscriber_queue_url: str
    role_arn: str
    start_dead_letter_queue_url: str

    def env(self) -> dict[str, str]:
        return {
            "BUCKET_NAME": self.bucket,
            "RUNS_TABLE_NAME": self.runs_table,
            "IDEMPOTENCY_TABLE_NAME": self.idempotency_table,
            "TOPIC_ARN": self.topic_arn,
            "SAGEMAKER_ROLE_ARN": self.role_arn,
            "START_TUNING_DEAD_LETTER_QUEUE_URL": self.start_dead_letter_queue_url,
            "JOB_NAME_PREFIX": "reviewtune",
            "MIN_ROWS_PER_CLASS": "10",
            "POWERTOOLS_SERVICE_NAME": "reviewtune",
            "POWERTOOLS_METRICS_NAMESPACE": "reviewtune",
            "POWERTOOLS_TRACE_DISABLED": "1",
        }

    def messages(self) -> list[dict[str, Any]]:
        """SNS notifications as a subscriber receives them."""
        sqs = boto3.client("sqs", region_name=REGION)
        out = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.subscriber_queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return out
            for message in batch:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.subscriber_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def dead_letter(self, event: dict[str, Any], error: str = "RuntimeError: injected") -> None:
        """Put ``event`` into StartTuning's dead-letter queue as Lambda does after the last retry of an
        asynchronous invocation (the event as the body, ``ErrorMessage`` among the attributes)."""
        boto3.client("sqs", region_name=REGION).send_message(
            QueueUrl=self.start_dead_letter_queue_url,
            MessageBody=json.dumps(event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": "00000000-0000-0000-0000-000000000000"},
                "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                "ErrorMessage": {"DataType": "String", "StringValue": error},
            },
        )

    def dead_letters(self) -> int:
        """How many messages StartTuning's dead-letter queue holds (visible or being handled)."""
        from reviewtune.core.dead_letters import waiting

        return waiting(boto3.client("sqs", region_name=REGION), self.start_dead_letter_queue_url)

    def run(self, run_id: str) -> dict[str, Any] | None:
        from reviewtune.core.runs import from_item

        item = boto3.resource("dynamodb", region_name=REGION).Table(self.runs_table).get_item(Key={"run_id": run_id}).get("Item")
        return from_item(item) if item else None


def create_stack() -> Stack:
    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"reviewtune-data-{ACCOUNT}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName="runs", **table_properties("RunsTable"))
    dynamodb.create_table(TableName="idempotency", **table_properties("IdempotencyTable"))
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="reviewtune-notifications")["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    dead_letters = sqs.create_queue(QueueName="StartTuningDeadLetterQueue")["QueueUrl"]  # its ARN as IAM tests see it
    return Stack(bucket, "runs", "idempotency", topic, queue_url, f"arn:aws:iam::{ACCOUNT}:role/reviewtune-sagemaker",
                 dead_letters)


_loaded: list[str] = []  # names of the handler modules load_handler put in sys.modules


def load_handler(name: str):
    """Import functions/<name>/app.py as Lambda would: a fresh module, built from the current environment."""
    path = ROOT / "functions" / name / "app.py"
    module_name = f"reviewtune_test_{name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _loaded.append(module_name)
    spec.loader.exec_module(module)
    return module


def forget_handlers() -> None:
    """Take the handler modules loaded so far out of sys.modules, so that they and their clients can be freed.

    Each keeps its AWS clients and idempotency store (tens of MB); kept for a whole run they grew the test process to
    gigabytes and made the interpreter's final garbage collection last minutes. Whoever still holds a module keeps
    it working."""
    while _loaded:
        sys.modules.pop(_loaded.pop(), None)


def load_event(name: str, **replace: Any) -> dict[str, Any]:
    """A sample event from events/, with string values replaced (e.g. the bucket name)."""
    text = (EVENTS / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return json.loads(text)


class LambdaContext:
    function_name = "test"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000
