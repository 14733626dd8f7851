"""Part of the bad-input catalogue through the local runtime: moto's S3 events, the template's rule, the router and the
real start_tuning handler. Keys carry spaces, '+', '%' and unicode, as moto sends them (raw, like AWS)."""

from __future__ import annotations

import json
import time

import pytest

from reviewtune.budget import Budget
from reviewtune.core import names
from reviewtune.local.runtime import LocalRuntime
from tests.local_runtime.conftest import FakeSageMaker
from tests.support.aws import ROOT
from tests.support.bad_inputs import CATALOGUE

pytestmark = pytest.mark.slow  # starts the whole local runtime (about a minute on 2 cores)

LOCAL = {
    "excel workbook": "incoming/team a/Q3 + Q4 (final).xlsx",
    "unterminated quote": "incoming/équipe/avis 100% ✓.TSV",
    "unquoted comma in a review": "incoming/a+b/comma list.Csv",
    "NUL byte in a review": "incoming/deep/er/and/deeper/nul.tsv",
    "huge header without a text column": "incoming/wide + long.csv",
    "truncated gzip": "incoming/cut short.CSV.GZ",
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    with LocalRuntime(
        workdir=tmp_path_factory.mktemp("runtime"),
        template=ROOT / "template.yaml",
        parameters=Budget().parameters(),
        total_cpus=2,
        sagemaker_factory=FakeSageMaker,
    ) as running:
        yield running


def test_bad_files_dropped_on_the_local_runtime_are_rejected_and_announced(runtime):
    outputs = runtime.stack.outputs
    bucket = outputs["DataBucketName"]
    s3, sqs, sns = runtime.client("s3"), runtime.client("sqs"), runtime.client("sns")
    queue = sqs.create_queue(QueueName="bad-inputs-subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn)

    entries = [bad for bad in CATALOGUE if bad.name in LOCAL]
    assert len(entries) == len(LOCAL)
    runs = {}
    for bad in entries:
        key = LOCAL[bad.name]
        data = bad.data()
        put = s3.put_object(Bucket=bucket, Key=key, Body=data)
        identity = names.object_identity(bucket, key, put.get("VersionId"), put.get("ETag"))
        runs[names.tuning_job_name("reviewtune", identity)] = (bad, key, data)
    s3.put_object(Bucket=bucket, Key="incoming/just a folder/", Body=b"")  # a folder marker: no outcome needed

    table = runtime.table(outputs["RunsTableName"])
    deadline = time.monotonic() + 120
    items: dict[str, dict] = {}
    while len(items) < len(runs) and time.monotonic() < deadline:
        for run_id in runs.keys() - items.keys():
            item = table.get_item(Key={"run_id": run_id}).get("Item")
            if item:
                items[run_id] = item
        time.sleep(0.5)
    assert items.keys() == runs.keys(), "some dropped files got no run record"

    messages: list[dict] = []
    deadline = time.monotonic() + 30
    while len(messages) < len(runs) and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            messages.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    by_run = {m["MessageAttributes"]["run_id"]["Value"]: m for m in messages}
    assert len(messages) == len(runs) and by_run.keys() == runs.keys()

    for run_id, (bad, key, data) in runs.items():
        item = items[run_id]
        assert item["status"] == "REJECTED" and bad.expect in item["failure_reason"], (bad.name, item)
        assert item["source"]["key"] == key  # the raw key, as stored
        assert bad.expect in by_run[run_id]["Message"]
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        assert s3.get_object(Bucket=bucket, Key=names.rejected_key(key))["Body"].read() == data
    time.sleep(1)
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []) == []  # folder: nothing
