"""Every entry of the bad-input catalogue through the start_tuning handler on moto: REJECTED with its reason, one
SNS message, the reason under rejected/, no tuning job; the original kept in incoming/ and a copy under rejected/,
except for a file refused for its size (neither read nor copied) and an object gone before it was read."""

from __future__ import annotations

import json

import boto3
import pytest

from reviewtune.core.notify import SUBJECT_MAX
from reviewtune.core.reasons import REASON_MAX_CHARS
from tests.functional.test_start_tuning import SageMakerRecorder
from tests.support.aws import REGION, load_event
from tests.support.bad_inputs import CATALOGUE, VERSION_DELETED, BadInput, drop_event, lowered_limits


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
def test_bad_input_is_rejected_kept_recorded_and_notified_once(stack, start_tuning, lambda_context, bad: BadInput):
    key = f"incoming/catalogue/{bad.key}"
    data = bad.data()
    event = drop_event(bad, data, stack.bucket, key, load_event("s3_object_created.json"))
    calls = S3Calls(start_tuning)
    with lowered_limits(bad), SageMakerRecorder(start_tuning) as sm:
        result = start_tuning.handler(event, lambda_context)

    assert sm.requests == []  # no tuning job
    assert result["status"] == "REJECTED", result
    reason = result["reason"]
    assert bad.expect in reason
    assert len(reason) <= REASON_MAX_CHARS
    if not bad.read():
        assert "GetObject" not in calls.operations  # refused from its name or size, nothing read
    s3 = boto3.client("s3", region_name=REGION)
    rejected = f"rejected/catalogue/{bad.key}"
    error = json.loads(s3.get_object(Bucket=stack.bucket, Key=rejected + ".error.json")["Body"].read())
    assert error["reason"] == reason and error["source"] == f"s3://{stack.bucket}/{key}"
    assert error["copied"] is bad.kept()
    item = stack.run(result["run_id"])
    assert item["status"] == "REJECTED" and item["failure_reason"] == reason
    assert item["reason_uri"] == f"s3://{stack.bucket}/{rejected}.error.json"
    [message] = stack.messages()
    assert message["MessageAttributes"]["status"]["Value"] == "REJECTED"
    assert bad.expect in message["Message"]
    assert len(message["Subject"]) <= SUBJECT_MAX and message["Subject"].isascii()
    if bad.kept():
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == data
        assert s3.get_object(Bucket=stack.bucket, Key=rejected)["Body"].read() == data
        assert item["rejected_uri"] == f"s3://{stack.bucket}/{rejected}"
        # the run names its own versions of the copy and the reason: a later rejection of the key takes the keys over
        copy = s3.get_object(Bucket=stack.bucket, Key=rejected, VersionId=item["rejected_version_id"])
        assert copy["Body"].read() == data
        assert (f"A copy of the file is kept at s3://{stack.bucket}/{rejected} (version {item['rejected_version_id']}), "
                f"the reason at {item['reason_uri']} (version {item['reason_version_id']}).") in message["Message"]
    else:
        assert "CopyObject" not in calls.operations or bad.mishap is not None  # a gone object's copy fails
        assert "rejected_uri" not in item and item["not_copied"]
        assert f"No copy was kept: {item['not_copied']}." in message["Message"]
        assert f"The reason is kept at {item['reason_uri']} (version {item['reason_version_id']})." in message["Message"]
        listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=rejected).get("Contents", [])
        assert [o["Key"] for o in listed] == [rejected + ".error.json"]  # the reason only, no copy
    reason_file = s3.get_object(Bucket=stack.bucket, Key=f"{rejected}.error.json", VersionId=item["reason_version_id"])
    assert json.loads(reason_file["Body"].read())["run_id"] == result["run_id"]
    if bad.too_large():
        assert "CopyObject" not in calls.operations and "GetObject" not in calls.operations
        assert f"the original stays at s3://{stack.bucket}/{key}" in message["Message"]
    if bad.mishap is not None:
        assert "No copy was kept: there is nothing to copy: the object is not there any more." in message["Message"]
        assert key in reason or bad.expect.startswith("'")  # the key named (a type reason names the file itself)
        if bad.mishap == VERSION_DELETED:
            assert event["detail"]["object"]["version-id"] in reason


def test_a_header_padded_with_a_huge_run_of_whitespace_is_tuned_and_its_name_stored_short(stack):
    """The header cell matches 'review_body' whatever its padding; stored as written it made the run's item pass
    DynamoDB's 400 KB, so no write of the run could succeed and the valid file ended FAILED at the deadline."""
    from tests.functional.pipeline import Pipeline
    from tests.unit.test_dataset import balanced_rows, make_file

    pipeline = Pipeline(stack)
    header = ("sentiment", "review" + "\t " * 100 + "body" + " " * 450_000)  # fields < 1 MiB, a valid file
    result = pipeline.start_tuning(pipeline.drop_event("incoming/padded.tsv", make_file(balanced_rows(20), header=header)))
    item = pipeline.run(result["run_id"])
    assert item["status"] == "TUNING"
    assert (item["data"]["summary"]["text_column"], item["data"]["summary"]["label_column"]) == ("review body", "sentiment")
