"""Part of the bad-input catalogue through the local runtime: moto's S3 events, the template's rule, the router and the
real start_tuning handler. Keys carry spaces, '+', '%' and unicode, as moto sends them (raw, like AWS).

Objects gone before they are read and sizes over 5 GB cannot be made to happen on cue through moto's own events (the
handler may read first; moto holds no 5 GB object): the bucket's events are switched off while those objects are put
and go away, then their "Object Created" events are sent on the bus as S3 sends them, through the same rule."""

from __future__ import annotations

import json
import time

import pytest

from reviewtune.budget import Budget
from reviewtune.core import names, states
from reviewtune.local.runtime import LocalRuntime
from tests.local_runtime.conftest import FakeSageMaker
from tests.support.aws import ROOT, load_event
from tests.support.bad_inputs import CATALOGUE, drop_event

pytestmark = pytest.mark.slow  # starts the whole local runtime (about a minute on 2 cores)

LOCAL = {
    "excel workbook": "incoming/team a/Q3 + Q4 (final).xlsx",
    "unterminated quote": "incoming/équipe/avis 100% ✓.TSV",
    "unquoted comma in a review": "incoming/a+b/comma list.Csv",
    "NUL byte in a review": "incoming/deep/er/and/deeper/nul \x1b[0m.tsv",  # ESC: no XML 1.0 character
    "huge header without a text column": "incoming/wide + long\r\nand two lines.csv",  # line breaks: S3 takes them
    "truncated gzip": "incoming/cut short.CSV.GZ",
}
# Sent on the bus after the object was put (and went away): sizes over CopyObject's 5 GB, objects gone.
VIA_BUS = {
    "over CopyObject's 5 GB": "incoming/big dumps/all + more (6 GB).CSV.GZ",
    "other type over 5 GB": "incoming/exports + more/dump.parquet",
    "version deleted before it was read": "incoming/équipe/supprimé 100%.tsv",
    "replaced before it was read": "incoming/weekly (overwritten).tsv",
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


def subscribe(runtime, name: str) -> str:
    """An SQS queue subscribed to the notification topic; returns its URL."""
    sqs = runtime.client("sqs")
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    runtime.client("sns").subscribe(TopicArn=runtime.stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn)
    return queue


def wait_for_runs(runtime, run_ids, timeout_s: float = 120) -> dict[str, dict]:
    """The run items once each is final (a claimed run is still being decided)."""
    table = runtime.table(runtime.stack.outputs["RunsTableName"])
    deadline = time.monotonic() + timeout_s
    items: dict[str, dict] = {}
    while len(items) < len(run_ids) and time.monotonic() < deadline:
        for run_id in set(run_ids) - items.keys():
            item = table.get_item(Key={"run_id": run_id}).get("Item")
            if item and states.is_final(item["status"]):
                items[run_id] = item
        time.sleep(0.5)
    assert items.keys() == set(run_ids), "some dropped files got no final run record"
    return items


def wait_for_messages(runtime, queue: str, count: int, timeout_s: float = 30) -> list[dict]:
    sqs = runtime.client("sqs")
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < count and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            messages.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return messages


def test_bad_files_dropped_on_the_local_runtime_are_rejected_and_announced(runtime):
    bucket = runtime.stack.outputs["DataBucketName"]
    s3, sqs = runtime.client("s3"), runtime.client("sqs")
    queue = subscribe(runtime, "bad-inputs-subscriber")

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

    items = wait_for_runs(runtime, list(runs))
    messages = wait_for_messages(runtime, queue, len(runs))
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
    # the listing of incoming/ (the reconciler's sweep, audit, overview) carries every key, ESC and line breaks included
    listed = s3.list_object_versions(Bucket=bucket, Prefix="incoming/")["Versions"]
    assert {key for _, key, _ in runs.values()} <= {version["Key"] for version in listed}


def test_objects_gone_or_over_5_gb_get_one_rejection_and_one_message_on_the_local_runtime(runtime):
    bucket = runtime.stack.outputs["DataBucketName"]
    s3, events = runtime.client("s3"), runtime.client("events")
    queue = subscribe(runtime, "gone-and-large-subscriber")
    entries = [bad for bad in CATALOGUE if bad.name in VIA_BUS]
    assert len(entries) == len(VIA_BUS)

    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:
        sent = {}
        for bad in entries:
            key = VIA_BUS[bad.name]
            event = drop_event(bad, bad.data(), bucket, key, load_event("s3_object_created.json"), s3=s3)
            detail = event["detail"]["object"]
            identity = names.object_identity(bucket, key, detail.get("version-id"), detail["etag"])
            sent[names.tuning_job_name("reviewtune", identity)] = (bad, key, event)
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    for _, _, event in sent.values():
        for _ in range(2):  # sent twice, as EventBridge may deliver an event more than once
            put = events.put_events(Entries=[{
                "Source": event["source"], "DetailType": event["detail-type"], "Resources": event["resources"],
                "Detail": json.dumps(event["detail"]),
            }])
            assert put["FailedEntryCount"] == 0

    items = wait_for_runs(runtime, list(sent))
    messages = wait_for_messages(runtime, queue, len(sent))
    time.sleep(2)
    messages += wait_for_messages(runtime, queue, 1, timeout_s=2)  # a second message per run would come by now
    by_run = {m["MessageAttributes"]["run_id"]["Value"]: m for m in messages}
    assert len(messages) == len(sent) and by_run.keys() == sent.keys()

    for run_id, (bad, key, _) in sent.items():
        item = items[run_id]
        assert item["status"] == "REJECTED" and bad.expect in item["failure_reason"], (bad.name, item)
        assert "rejected_uri" not in item and item["not_copied"], item
        assert bad.expect in by_run[run_id]["Message"] and "No copy was kept" in by_run[run_id]["Message"]
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=names.rejected_key(key)).get("Contents", [])
        assert [o["Key"] for o in listed] == [names.rejected_key(key) + ".error.json"]


def test_a_dead_lettered_start_event_gets_its_run_claimed_by_the_local_reconciler(runtime):
    """An "Object Created" event that failed every retry before its run was claimed is known only to StartTuning's
    dead-letter queue: the reconcile function (the template's schedule, the local period) claims its run and deletes
    the message (the stale-claim restart starts it later, as tests/functional show)."""
    bucket = runtime.stack.outputs["DataBucketName"]
    s3, sqs = runtime.client("s3"), runtime.client("sqs")
    key = "incoming/late/dead lettered (1).csv"
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:  # no event of its own: as if every delivery had failed
        put = s3.put_object(Bucket=bucket, Key=key, Body=b"text,score\nhello,5\n")
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    event = load_event("s3_object_created.json")
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update({"key": key, "etag": put["ETag"].strip('"'), "version-id": put["VersionId"], "size": 19})
    dead_letters = runtime.stack.outputs["StartTuningDeadLetterQueueUrl"]
    sqs.send_message(QueueUrl=dead_letters, MessageBody=json.dumps(event), MessageAttributes={
        "ErrorMessage": {"DataType": "String", "StringValue": "ClientError: SlowDown"}})
    run_id = names.tuning_job_name("reviewtune", names.object_identity(bucket, key, put["VersionId"], put["ETag"]))
    table = runtime.table(runtime.stack.outputs["RunsTableName"])

    deadline = time.monotonic() + 90  # the reconciler runs every 30 s locally
    item = None
    while item is None and time.monotonic() < deadline:
        item = table.get_item(Key={"run_id": run_id}).get("Item")
        time.sleep(0.5)

    assert item is not None and item["status"] == "CLAIMED" and item["source"]["key"] == key

    def waiting() -> int:  # the message is deleted right after the claim
        attributes = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    deadline = time.monotonic() + 10
    while waiting() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert waiting() == 0
