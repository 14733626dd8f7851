"""Reading the version an event named: the size taken from the event (or S3), refusals from the size alone, and what
S3's answers for a missing object mean (gone: rejected) against passing errors (raised: the event comes again).

S3 is a botocore Stubber with the API's own shapes: any call not expected fails the test."""

from __future__ import annotations

import re

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from reviewtune.core import aws_errors, messages
from reviewtune.core.dataset import read_dropped_file
from reviewtune.core.errors import DatasetError, FileTooLargeError, ObjectGoneError, ObjectUnreadableError
from reviewtune.core.events import object_created
from tests.support.faults import client_error

KEY = "incoming/team a/reviews + notes (1).tsv"
VERSION = "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"
ETAG = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture
def s3():
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x", endpoint_url="https://s3.test"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def read(client, size, version_id=VERSION, etag=ETAG):
    return read_dropped_file(client, "bucket-a", KEY, version_id, size, etag)


@pytest.mark.parametrize(
    ("given", "size"),
    [(0, 0), (1234, 1234), ("1234", 1234), (" 77 ", 77), (5.0, 5), (None, None), (-1, None), (True, None),
     (1.5, None), ("12 GB", None), ("", None), ("²", None), ({"bytes": 1}, None), ([1], None), (float("inf"), None)],
)
def test_an_event_size_is_a_whole_number_of_bytes_or_none_never_an_invalid_event(given, size):
    def event(**obj):
        return {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}, "object": {"key": KEY, **obj}}}

    assert object_created(event(size=given)).object.size == size
    assert object_created(event()).object.size is None


@pytest.mark.parametrize(
    ("code", "kind"),
    [("NoSuchKey", "deleted"), ("NoSuchVersion", "deleted"), ("404", "deleted"), ("405", "deleted"),
     ("PreconditionFailed", "replaced"), ("412", "replaced"), ("SlowDown", None), ("503", None),
     ("InternalError", None), ("AccessDenied", None), ("403", None), ("InvalidArgument", None)],
)
def test_only_a_missing_or_replaced_version_counts_as_gone(code, kind):
    assert aws_errors.object_gone(client_error(code, "", "GetObject")) == kind


@pytest.mark.parametrize(("size", "written"), [(256 * 1024**2 + 1, "256 MiB"), (5 * 1024**3 + 1, "5.0 GiB"),
                                              (6 * 1024**4, "6 TiB")])
def test_a_size_over_the_limit_is_refused_without_a_single_call(s3, size, written):
    client, _ = s3  # no response stubbed: any S3 call would fail the test
    expected = f"the file is {written} ({size:,} bytes); at most 256 MiB (268,435,456 bytes) are accepted"
    with pytest.raises(FileTooLargeError, match=re.escape(expected)) as caught:
        read(client, size)
    assert caught.value.keeps_copy is False


def test_without_a_size_head_object_of_that_version_decides_before_anything_is_read(s3):
    client, stubber = s3
    expected = {"Bucket": "bucket-a", "Key": KEY, "VersionId": VERSION, "IfMatch": f'"{ETAG}"'}
    stubber.add_response("head_object", {"ContentLength": 300 * 1024**2}, expected)
    with pytest.raises(FileTooLargeError, match=re.escape("the file is 300 MiB (314,572,800 bytes)")):
        read(client, None)


@pytest.mark.parametrize(
    ("operation", "code", "status", "size"),
    [("get_object", "NoSuchVersion", 404, 100), ("get_object", "NoSuchKey", 404, 100), ("head_object", "404", 404, None)],
)
def test_a_deleted_version_is_rejected_naming_the_key_and_the_version(s3, operation, code, status, size):
    client, stubber = s3
    stubber.add_client_error(operation, code, http_status_code=status)
    with pytest.raises(ObjectGoneError) as caught:
        read(client, size)
    assert str(caught.value) == (
        f"the object was deleted before it could be read: {KEY!r} version {VERSION!r}; drop the file again to have it "
        "tuned"
    )
    assert caught.value.keeps_copy is False


def test_a_key_overwritten_since_its_event_is_not_read_in_its_place(s3):
    client, stubber = s3
    stubber.add_client_error(
        "get_object", "PreconditionFailed", http_status_code=412,
        expected_params={"Bucket": "bucket-a", "Key": KEY, "IfMatch": f'"{ETAG}"'},
    )
    with pytest.raises(ObjectGoneError) as caught:
        read(client, 100, version_id=None, etag=f'"{ETAG}"')
    assert str(caught.value) == (
        f"the object was replaced by a newer upload before it could be read: {KEY!r} (ETag {ETAG!r}); "
        "the newer upload is a run of its own"
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503), ("AccessDenied", 403), ("403", 403)],
)
def test_throttling_outages_and_access_errors_raise_as_they_are(s3, code, status):
    """Retried (IAM may deny for a moment during a stack update); a denial that lasts ends the run at its claim's
    deadline, with S3's words in the reason."""
    client, stubber = s3
    stubber.add_client_error("get_object", code, http_status_code=status)
    with pytest.raises(ClientError, match=code) as caught:
        read(client, 100)
    assert not isinstance(caught.value, DatasetError)


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [("get_object", "InvalidRequest", 400), ("get_object", "InvalidObjectState", 403), ("head_object", "400", 400),
     ("get_object", "KMS.DisabledException", 400), ("get_object", "KMS.NotFoundException", 400)],
)
def test_what_s3_will_never_give_the_function_rejects_the_file_without_a_copy(s3, operation, code, status):
    client, stubber = s3
    stubber.add_client_error(operation, code, "refused", http_status_code=status)
    with pytest.raises(ObjectUnreadableError, match=re.escape(f"S3 refused to read the file: {KEY!r} version {VERSION!r}")) as caught:
        read(client, 100 if operation == "get_object" else None)
    assert f"{code}: refused" in str(caught.value) and caught.value.keeps_copy is False


@pytest.mark.parametrize("code", ["400", "InvalidRequest", "InvalidObjectState", "KMS.NotFoundException", "KMS.DisabledException"])
def test_refusals_that_stay_are_unreadable_not_gone(code):
    error = client_error(code, "", "GetObject")
    assert aws_errors.object_unreadable(error) and aws_errors.object_gone(error) is None


@pytest.mark.parametrize(
    "code",
    ["SlowDown", "503", "500", "InternalError", "NoSuchKey", "404", "412", "ThrottlingException", "AccessDenied", "403",
     "KMS.ThrottlingException", "KMS.LimitExceededException"],
)
def test_passing_errors_and_missing_objects_are_not_unreadable(code):
    assert not aws_errors.object_unreadable(client_error(code, "", "GetObject"))


def test_the_type_is_refused_before_the_size_and_before_any_call(s3):
    client, _ = s3
    with pytest.raises(DatasetError, match="'dump.parquet' is not a file reviewtune reads") as caught:
        read_dropped_file(client, "bucket-a", "incoming/dump.parquet", VERSION, 6 * 1024**3, ETAG)
    assert caught.value.keeps_copy is True  # kept only when the size allows (start_tuning decides)


def test_a_rejection_without_a_copy_says_why_and_where_the_reason_is():
    item = {"run_id": "r-1", "dataset": "big.tsv", "source": {"bucket": "b", "key": "incoming/big.tsv"}}
    _, body = messages.rejected(
        item, "the file is too large", None, "runs", reason_uri="s3://b/rejected/big.tsv.error.json",
        not_copied="files over 256 MiB are not copied; the original stays at s3://b/incoming/big.tsv",
    )
    assert "No copy was kept: files over 256 MiB are not copied; the original stays at s3://b/incoming/big.tsv." in body
    assert "The reason is kept at s3://b/rejected/big.tsv.error.json." in body
    assert "A copy of the file" not in body
    _, copied = messages.rejected(item, "bad", "s3://b/rejected/big.tsv", "runs",
                                  reason_uri="s3://b/rejected/big.tsv.error.json", rejected_version="CV7",
                                  reason_version="RV9")
    assert ("A copy of the file is kept at s3://b/rejected/big.tsv (version CV7), the reason at "
            "s3://b/rejected/big.tsv.error.json (version RV9).") in copied


def test_a_gone_object_whose_run_is_named_by_an_encoded_key_too_long_for_s3_still_finds_that_run(s3):
    """A run claimed under the encoded form (before such forms were left out of the lookups): a redelivered event
    for the gone object lands on it; only the decoded form is looked up in S3."""
    from urllib.parse import quote_plus

    from reviewtune.core.objects import locate_dropped_object

    client, stubber = s3
    stored = "incoming/" + "\u00e9" * 300 + ".tsv"
    encoded = quote_plus(stored, safe="/")
    stubber.add_client_error("head_object", "404", "Not Found", 404,
                             expected_params={"Bucket": "bucket-a", "Key": stored, "VersionId": VERSION,
                                              "IfMatch": f'"{ETAG}"'})
    found = locate_dropped_object(client, "bucket-a", encoded, VERSION, ETAG, 100, lambda obj: obj.key == encoded)
    assert found.key == encoded
    stubber.add_client_error("head_object", "404", "Not Found", 404)
    assert locate_dropped_object(client, "bucket-a", encoded, VERSION, ETAG, 100, lambda obj: False).key == stored
