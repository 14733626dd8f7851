"""Objects that go away between their event and the read, events with no or a false size, and S3 errors that pass:
each dropped object ends in one recorded outcome and one message, whatever happens and however often its event
comes; throttling and server errors are retried, not mistaken for a missing object."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import boto3
import pytest

from reviewtune.core import states
from tests.functional.pipeline import Pipeline, good_file, later
from tests.functional.test_guarantees import _expire_idempotency_records
from tests.support.aws import REGION
from tests.support.faults import Failing


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def s3():
    return boto3.client("s3", region_name=REGION)


def run_items(pipeline: Pipeline) -> list[dict]:
    """Every run item of the table (slot and content-marker items left out)."""
    return [i for i in pipeline.clients.runs_table.scan()["Items"] if "source" in i and "status" in i]


def unversioned(event: dict) -> dict:
    """The event as a bucket without versioning sends it: no version-id."""
    event["detail"]["object"].pop("version-id")
    return event


def assert_one_outcome(pipeline: Pipeline, run_id: str, status: str) -> dict:
    [item] = [i for i in run_items(pipeline) if i["run_id"] == run_id]
    assert item["status"] == status
    assert pipeline.statuses_told(run_id) == [status]
    return item


def test_a_deleted_version_is_rejected_once_however_often_its_event_comes(pipeline, stack):
    event = pipeline.drop_event("incoming/team a/gone + soon.tsv")
    event["detail"]["object"]["key"] = "incoming/team a/gone + soon.tsv"  # raw, as EventBridge sends it
    version = event["detail"]["object"]["version-id"]
    s3().delete_object(Bucket=stack.bucket, Key="incoming/team a/gone + soon.tsv", VersionId=version)

    first = pipeline.start_tuning(event)
    assert first["status"] == "REJECTED"
    assert first["reason"] == (
        f"the object was deleted before it could be read: 'incoming/team a/gone + soon.tsv' version '{version}'; "
        "drop the file again to have it tuned"
    )
    assert pipeline.start_tuning(event) == first  # Lambda's retry: the idempotency record answers
    _expire_idempotency_records(stack)
    replay = pipeline.start_tuning(dict(event, id="delivered-again"))  # the run item answers
    assert replay == {"run_id": first["run_id"], "status": "REJECTED", "duplicate": True}
    pipeline.reconcile(later(2))  # nothing left to do for the reconciler either

    item = assert_one_outcome(pipeline, first["run_id"], "REJECTED")
    assert item["source"]["version_id"] == version and "rejected_uri" not in item
    assert len(run_items(pipeline)) == 1 and pipeline.sagemaker.calls == []
    [message] = pipeline.messages()
    assert "the object was deleted before it could be read" in message["Message"]
    assert "No copy was kept: there is nothing to copy" in message["Message"]


def test_an_overwritten_object_is_rejected_and_the_newer_upload_is_its_own_run(pipeline, stack):
    old = unversioned(pipeline.drop_event("incoming/weekly.tsv", good_file(0)))
    new = unversioned(pipeline.drop_event("incoming/weekly.tsv", good_file(5)))  # overwritten before the first read

    rejected = pipeline.start_tuning(old)
    started = pipeline.start_tuning(new)

    assert rejected["status"] == "REJECTED"
    assert "the object was replaced by a newer upload before it could be read: 'incoming/weekly.tsv'" in rejected["reason"]
    assert old["detail"]["object"]["etag"] in rejected["reason"]
    assert started["status"] == "TUNING" and started["run_id"] != rejected["run_id"]
    assert_one_outcome(pipeline, rejected["run_id"], "REJECTED")
    assert pipeline.statuses_told(started["run_id"]) == []
    assert len(run_items(pipeline)) == 2


def test_a_delete_marker_does_not_hide_the_version_the_event_named(pipeline, stack):
    event = pipeline.drop_event("incoming/kept.tsv")
    s3().delete_object(Bucket=stack.bucket, Key="incoming/kept.tsv")  # versioned bucket: only a delete marker

    result = pipeline.start_tuning(event)

    assert result["status"] == "TUNING"  # that version still exists, and it is what the event is about
    assert pipeline.run(result["run_id"])["source"]["version_id"] == event["detail"]["object"]["version-id"]


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
@pytest.mark.parametrize("code", ["SlowDown", "InternalError", "ServiceUnavailable", "503"])
def test_throttling_and_server_errors_reading_the_object_are_retried_not_rejected(pipeline, operation, code):
    event = pipeline.drop_event()
    if operation == "head_object":  # no size in the event: the size comes from HeadObject
        del event["detail"]["object"]["size"]
    failing = Failing(pipeline.clients.s3, operation, code, failures=None)
    pipeline.use("s3", failing)

    for _ in range(2):  # Lambda's retries, then EventBridge's
        with pytest.raises(Exception, match=code):
            pipeline.start_tuning(event)

    assert failing.failed >= 2
    # HeadObject comes before the claim (it finds the key as stored): no run yet; GetObject after it: claimed
    assert [i["status"] for i in run_items(pipeline)] == ([] if operation == "head_object" else ["CLAIMED"])
    assert pipeline.messages() == []
    pipeline.use("s3", failing._wrapped)
    result = pipeline.start_tuning(event)
    assert result["status"] == "TUNING"
    assert len(run_items(pipeline)) == 1 and pipeline.messages() == []


@pytest.mark.parametrize(
    ("operation", "code", "message"),
    [
        ("head_object", "400", "Bad Request"),  # SSE-C: HeadObject without the customer's key (no body, no code)
        ("get_object", "InvalidRequest", "The object was stored using a form of Server Side Encryption."),
        ("get_object", "InvalidObjectState", "The operation is not valid for the object's storage class"),
        ("get_object", "KMS.DisabledException", "arn:aws:kms:us-east-1:123456789012:key/k is disabled."),
    ],
)
def test_an_object_s3_will_not_give_the_function_is_rejected_once_with_s3_s_reason(pipeline, stack, operation, code,
                                                                                    message):
    event = pipeline.drop_event("incoming/team/locked (1).tsv")
    if operation == "head_object":  # no size in the event: HeadObject is asked twice (key, then the size)
        del event["detail"]["object"]["size"]
    key = "incoming/team/locked (1).tsv"  # S3 refuses this key; the event's encoded form names no object (404)
    failing = Failing(pipeline.clients.s3, operation, code, message, failures=None, when=lambda call: call["Key"] == key)
    pipeline.use("s3", failing)

    result = pipeline.start_tuning(event)
    assert pipeline.start_tuning(event) == result  # a retry
    pipeline.reconcile(later(2))

    assert result["status"] == "REJECTED"
    assert result["reason"].startswith(
        f"S3 refused to read the file: 'incoming/team/locked (1).tsv' version '{event['detail']['object']['version-id']}'"
    )
    assert f"{code}: {message}" in result["reason"]
    assert "upload it again as a plain object" in result["reason"]
    item = assert_one_outcome(pipeline, result["run_id"], "REJECTED")
    assert "rejected_uri" not in item and item["not_copied"].startswith("S3 refuses to read it, so it cannot be copied")
    pipeline.use("s3", failing._wrapped)
    report = s3().get_object(Bucket=stack.bucket, Key="rejected/team/locked (1).tsv.error.json")["Body"].read()
    assert code in report.decode()
    assert s3().head_object(Bucket=stack.bucket, Key="incoming/team/locked (1).tsv")  # the original is left alone
    [told] = pipeline.messages()
    assert "S3 refused to read the file" in told["Message"] and pipeline.sagemaker.calls == []


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("InvalidObjectState", "The operation is not valid for the object's storage class"),
        ("InvalidRequest", "The object was stored using a form of Server Side Encryption."),
        ("KMS.DisabledException", "arn:aws:kms:us-east-1:123456789012:key/k is disabled."),
    ],
)
def test_a_file_refused_by_its_type_that_s3_will_not_copy_is_rejected_at_once_for_its_type(pipeline, code, message):
    """Refused by its name before it is read, then its copy under rejected/ refused by S3 for good (an archived
    storage class, SSE-C, a disabled KMS key): rejected at once for its type, not failed at the claim's deadline."""
    key = "incoming/team/reviews.xlsx"
    event = pipeline.drop_event(key, b"PK\x03\x04 a workbook")
    copying = Failing(pipeline.clients.s3, "copy_object", code, message, failures=None)
    pipeline.use("s3", Failing(copying, "get_object", code, message, failures=None, when=lambda call: call["Key"] == key))

    result = pipeline.start_tuning(event)
    pipeline.reconcile(later(2))

    assert result["status"] == "REJECTED" and "is not a file reviewtune reads" in result["reason"]
    item = assert_one_outcome(pipeline, result["run_id"], "REJECTED")
    assert item["not_copied"] == (f"S3 refuses to read it ({code}: {message}), so it cannot be copied; the original "
                                  f"stays at s3://{pipeline.stack.bucket}/{key}")
    assert "rejected_uri" not in item and "unreadable" not in item  # its type, not S3, is why: a retry would not help
    assert copying.failed == 1


def test_a_transient_error_copying_a_rejected_file_is_retried_and_tells_once(pipeline, stack):
    event = pipeline.drop_event("incoming/bad.csv", b"text,score\nhello,5\n")
    failing = Failing(pipeline.clients.s3, "copy_object", "SlowDown", failures=1)
    pipeline.use("s3", failing)

    with pytest.raises(Exception, match="SlowDown"):
        pipeline.start_tuning(event)
    [claimed] = run_items(pipeline)
    assert claimed["status"] == "CLAIMED" and pipeline.messages() == []
    result = pipeline.start_tuning(event)

    assert result["status"] == "REJECTED" and "no label column" in result["reason"]
    item = assert_one_outcome(pipeline, result["run_id"], "REJECTED")
    assert item["rejected_uri"] == f"s3://{stack.bucket}/rejected/bad.csv"
    assert s3().get_object(Bucket=stack.bucket, Key="rejected/bad.csv")["Body"].read() == b"text,score\nhello,5\n"


def test_a_rejected_file_s3_will_not_copy_for_the_function_is_rejected_at_once_without_its_copy(pipeline, stack):
    """A file under a KMS key the function may not use: its name alone rejects it, and the copy S3 denies is no
    reason to wait (the run would end FAILED at its deadline instead): REJECTED now, the original where it was."""
    event = pipeline.drop_event("incoming/team/reviews.xlsx", b"PK\x03\x04")
    denied = Failing(pipeline.clients.s3, "copy_object", "AccessDenied",
                     "User is not authorized to perform: kms:Decrypt", failures=None)
    pipeline.use("s3", denied)

    result = pipeline.start_tuning(event)

    assert result["status"] == "REJECTED"
    item = assert_one_outcome(pipeline, result["run_id"], "REJECTED")
    assert item["not_copied"] == ("S3 denied the copy (AccessDenied: User is not authorized to perform: kms:Decrypt); "
                                  f"the original stays at s3://{stack.bucket}/incoming/team/reviews.xlsx")
    assert "rejected_uri" not in item and denied.failed == 1


def test_a_claim_whose_object_went_away_is_rejected_by_the_reconciler(pipeline, stack):
    event = pipeline.drop_event()
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=None))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(event)  # the claim is made, then every retry failed: the event is dead-lettered
    pipeline.use("s3", pipeline.clients.s3._wrapped)
    s3().delete_object(Bucket=stack.bucket, Key="incoming/a.tsv", VersionId=event["detail"]["object"]["version-id"])

    pipeline.reconcile(later(0.5))  # the stale claim is started over from the run item

    [item] = run_items(pipeline)
    assert item["status"] == "REJECTED" and "deleted before it could be read" in item["failure_reason"]
    assert pipeline.statuses_told(item["run_id"]) == ["REJECTED"]


@pytest.mark.parametrize("size", [None, "twelve", -5, True, 1.5, "", {"bytes": 10}])
def test_a_valid_file_whose_event_has_no_or_an_invalid_size_is_tuned_with_the_size_s3_gives(pipeline, size):
    data = good_file()
    event = pipeline.drop_event("incoming/sizeless.tsv", data)
    event["detail"]["object"]["size"] = size

    result = pipeline.start_tuning(event)

    assert result["status"] == "TUNING"
    assert pipeline.run(result["run_id"])["source"]["size"] == len(data)


def test_a_digit_string_size_counts_as_the_size(pipeline):
    event = pipeline.drop_event("incoming/said.tsv")
    event["detail"]["object"]["size"] = str(6 * 1024**3)

    result = pipeline.start_tuning(event)

    assert result["status"] == "REJECTED" and "the file is 6 GiB (6,442,450,944 bytes)" in result["reason"]
    assert states.RunStatus(pipeline.run(result["run_id"])["status"]) == states.RunStatus.REJECTED


def test_a_rejected_file_whose_key_is_near_s3_s_limit_gets_its_reason_under_a_key_s3_accepts(pipeline, stack):
    key = "incoming/" + "r" * 1002 + ".csv"  # 1,015 bytes: "<copy>.error.json" would be 1,026
    event = pipeline.drop_event(key, b"text,score\nhello,5\n")
    too_long = lambda call: len(call["Key"].encode()) > 1024  # noqa: E731 - what real S3 refuses, moto does not
    pipeline.use("s3", Failing(pipeline.clients.s3, "put_object", "KeyTooLongError", failures=None, when=too_long))

    result = pipeline.start_tuning(event)

    assert result["status"] == "REJECTED" and "no label column" in result["reason"]
    item = assert_one_outcome(pipeline, result["run_id"], "REJECTED")
    reason_key = item["reason_uri"].removeprefix(f"s3://{stack.bucket}/")
    assert len(reason_key.encode()) <= 1024 and reason_key.endswith(".error.json")
    assert item["rejected_uri"] == f"s3://{stack.bucket}/rejected/" + "r" * 1002 + ".csv"
    assert json.loads(s3().get_object(Bucket=stack.bucket, Key=reason_key)["Body"].read())["run_id"] == result["run_id"]


@pytest.mark.parametrize(
    "key",
    [
        "incoming/team a/gone (1).tsv",
        # 613 bytes as stored; URL-encoded, 1,813: longer than any S3 key, and S3 answers HeadObject of such a key
        # with 400 and no body, as it does an object it refuses to show
        "incoming/" + "\u00e9" * 300 + ".tsv",
    ],
    ids=["short", "encoded-longer-than-s3-allows"],
)
def test_a_version_deleted_between_two_deliveries_of_an_encoded_event_keeps_its_one_run(pipeline, stack, key):
    """The first delivery found the object under the decoded key and claimed its run, then failed; by the retry the
    version is gone, so neither key finds it: the retry must land on that run, not claim one for the encoded key
    (nor take an encoded key too long for S3, which S3 refuses, for an object that is there)."""
    event = pipeline.drop_event(key)
    event["detail"]["object"]["key"] = quote_plus(key, safe="/")  # URL-encoded in the event
    too_long = Failing(pipeline.clients.s3, "head_object", "400", "Bad Request", failures=None,
                       when=lambda call: len(call["Key"].encode()) > 1024)
    pipeline.use("s3", Failing(too_long, "get_object", "InternalError", failures=1))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(event)
    [claimed] = run_items(pipeline)
    assert claimed["status"] == "CLAIMED" and claimed["source"]["key"] == key
    s3().delete_object(Bucket=stack.bucket, Key=key, VersionId=event["detail"]["object"]["version-id"])

    result = pipeline.start_tuning(event)  # Lambda's retry
    pipeline.reconcile(later(2))

    assert result["run_id"] == claimed["run_id"] and result["status"] == "REJECTED"
    assert [i["run_id"] for i in run_items(pipeline)] == [claimed["run_id"]]
    assert_one_outcome(pipeline, claimed["run_id"], "REJECTED")
    assert too_long.failed == 0  # an encoded key longer than S3 allows is never looked up


def test_an_encoded_key_too_long_for_s3_whose_version_went_before_any_delivery_names_the_stored_key(pipeline, stack):
    key = "incoming/" + "\u00e9" * 300 + ".tsv"
    event = pipeline.drop_event(key)
    event["detail"]["object"]["key"] = quote_plus(key, safe="/")  # 1,813 bytes: never a key
    s3().delete_object(Bucket=stack.bucket, Key=key, VersionId=event["detail"]["object"]["version-id"])

    result = pipeline.start_tuning(event)

    assert result["status"] == "REJECTED"
    item = assert_one_outcome(pipeline, result["run_id"], "REJECTED")
    assert item["source"]["key"] == key and item["dataset"] == "\u00e9" * 300 + ".tsv"


def test_a_file_of_more_than_a_million_reviews_is_rejected_with_how_to_split_it(pipeline, stack):
    """Four million one-line reviews fit 256 MiB but not the function's memory once split and hashed: the count
    is checked while reading, before anything grows."""
    body = b"sentiment\treview_body\n" + b"1\tok\n" * 1_000_001  # 5 MB
    result = pipeline.start_tuning(pipeline.drop_event("incoming/many.tsv", body))
    item = pipeline.run(result["run_id"])
    assert item["status"] == "REJECTED"
    assert item["failure_reason"] == (
        "the file has more than 1,000,000 reviews (line 1,000,002 is review 1,000,001); split it into files of "
        "fewer reviews and drop each"
    )
    assert pipeline.statuses_told(result["run_id"]) == ["REJECTED"]


def test_a_rejected_file_of_unknown_size_is_not_copied_and_the_reason_says_why(pipeline, stack):
    """No size from the event nor from S3 (a restart from a dead-lettered event's record): a copy might pass
    CopyObject's 5 GB and fail on every try, so none is made, and the message does not call the file gone."""
    from reviewtune.core.errors import DatasetError
    from reviewtune.core.objects import DroppedObject
    from reviewtune.core.tuning import _keep_copy

    obj = DroppedObject(stack.bucket, "incoming/a.csv", None, None, None)
    kept = _keep_copy(obj, "rejected/a.csv", DatasetError("bad"), pipeline.settings, pipeline.clients)
    assert kept == (False, f"its size is unknown, so it was not copied; the original stays at s3://{stack.bucket}/incoming/a.csv", None)


def test_a_second_rejection_of_the_same_key_leaves_the_first_run_its_own_copy_and_reason(pipeline, stack):
    s3 = boto3.client("s3", region_name=REGION)
    first = pipeline.start_tuning(pipeline.drop_event("incoming/bad.csv", b"text,score\nhello,5\n"))
    second = pipeline.start_tuning(pipeline.drop_event("incoming/bad.csv", b"words,stars\nbye,1\n"))
    assert first["run_id"] != second["run_id"]
    for result, body in ((first, b"text,score\nhello,5\n"), (second, b"words,stars\nbye,1\n")):
        item = pipeline.run(result["run_id"])
        assert item["rejected_uri"] == f"s3://{stack.bucket}/rejected/bad.csv"  # one key, taken over by the second
        copy = s3.get_object(Bucket=stack.bucket, Key="rejected/bad.csv", VersionId=item["rejected_version_id"])
        assert copy["Body"].read() == body
        reason = s3.get_object(Bucket=stack.bucket, Key="rejected/bad.csv.error.json", VersionId=item["reason_version_id"])
        assert json.loads(reason["Body"].read())["run_id"] == result["run_id"]


def test_a_file_named_like_a_reason_is_not_copied_over_another_file_s_reason(pipeline, stack):
    """incoming/x.tsv rejected keeps its reason at rejected/x.tsv.error.json; a file dropped as
    incoming/x.tsv.error.json (the rejected/ folder copied back, say) is rejected too, and not copied there."""
    s3 = boto3.client("s3", region_name=REGION)
    first = pipeline.start_tuning(pipeline.drop_event("incoming/x.tsv", b"hello\n"))
    second = pipeline.start_tuning(pipeline.drop_event("incoming/x.tsv.error.json", b'{"run_id": "not x.tsv"}'))

    assert json.loads(s3.get_object(Bucket=stack.bucket, Key="rejected/x.tsv.error.json")["Body"].read())[
        "run_id"] == first["run_id"]
    item = assert_one_outcome(pipeline, second["run_id"], "REJECTED")
    assert "rejected_uri" not in item and item["not_copied"] == (
        "a file named *.error.json, as the reasons kept under rejected/ are, is not copied there; the original stays "
        f"at s3://{stack.bucket}/incoming/x.tsv.error.json")
    assert item["reason_uri"] == f"s3://{stack.bucket}/rejected/x.tsv.error.json.error.json"
