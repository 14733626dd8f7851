"""Every entry of the bad-input catalogue through the start_tuning handler on moto: REJECTED with its reason, one
SNS message, the original kept in incoming/, a copy and the reason under rejected/, no tuning job."""

from __future__ import annotations

import json

import boto3
import pytest

from reviewtune.core import reader
from reviewtune.core.notify import SUBJECT_MAX
from reviewtune.core.reasons import REASON_MAX_CHARS
from tests.functional.test_start_tuning import SageMakerRecorder
from tests.support.aws import REGION, load_event
from tests.support.bad_inputs import CATALOGUE, BadInput


def raw_event(stack, key: str, body: bytes, size: int | None = None) -> dict:
    """Put the object and build the EventBridge event AWS sends: the key as stored, not URL-encoded."""
    response = boto3.client("s3", region_name=REGION).put_object(Bucket=stack.bucket, Key=key, Body=body)
    event = load_event("s3_object_created.json")
    event["detail"]["bucket"]["name"] = stack.bucket
    event["detail"]["object"].update(
        {"key": key, "etag": response["ETag"].strip('"'), "version-id": response["VersionId"],
         "size": len(body) if size is None else size}
    )
    return event


class S3Calls:
    """Records the S3 operations a handler's client makes."""

    def __init__(self, module):
        self.operations: list[str] = []
        module.ctx.clients.s3.meta.events.register("before-call.s3.*", self._record)

    def _record(self, model, **_):
        self.operations.append(model.name)


@pytest.fixture
def start_tuning(stack):
    from tests.support.aws import load_handler

    return load_handler("start_tuning")


@pytest.mark.parametrize("bad", CATALOGUE, ids=[b.name for b in CATALOGUE])
def test_bad_input_is_rejected_kept_recorded_and_notified_once(stack, start_tuning, lambda_context, monkeypatch, bad: BadInput):
    for name, value in bad.limits.items():
        monkeypatch.setattr(reader, name, value)
    key = f"incoming/catalogue/{bad.key}"
    data = bad.data()
    event = raw_event(stack, key, data, bad.event_size)
    calls = S3Calls(start_tuning)
    with SageMakerRecorder(start_tuning) as sm:
        result = start_tuning.handler(event, lambda_context)

    assert sm.requests == []  # no tuning job
    assert result["status"] == "REJECTED", result
    reason = result["reason"]
    assert bad.expect in reason
    assert len(reason) <= REASON_MAX_CHARS
    if bad.event_size is not None:
        assert "GetObject" not in calls.operations  # refused from the event's size, nothing read
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == data
    rejected = f"rejected/catalogue/{bad.key}"
    assert s3.get_object(Bucket=stack.bucket, Key=rejected)["Body"].read() == data
    error = json.loads(s3.get_object(Bucket=stack.bucket, Key=rejected + ".error.json")["Body"].read())
    assert error["reason"] == reason and error["source"] == f"s3://{stack.bucket}/{key}"
    item = stack.run(result["run_id"])
    assert item["status"] == "REJECTED" and item["failure_reason"] == reason
    [message] = stack.messages()
    assert message["MessageAttributes"]["status"]["Value"] == "REJECTED"
    assert bad.expect in message["Message"]
    assert len(message["Subject"]) <= SUBJECT_MAX and message["Subject"].isascii()
