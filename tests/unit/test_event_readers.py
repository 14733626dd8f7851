"""The handlers' event readers: the fields they need, AWS's and moto's spellings, and a clear error otherwise."""

from __future__ import annotations

import pytest

from reviewtune.core import events
from reviewtune.core.errors import InvalidEventError
from tests.support.aws import load_event


def dropped(**object_fields):
    event = load_event("s3_object_created.json")
    event["detail"]["object"] = object_fields
    del event["time"]  # read on its own below
    return event


def test_an_s3_event_gives_bucket_key_size_etag_and_version():
    # GIVEN the S3 "Object Created" event as AWS sends it
    event = load_event("s3_object_created.json")
    # WHEN it is read
    read = events.object_created(event)
    # THEN
    assert read == events.ObjectCreated(
        bucket="reviewtune-data-123456789012-us-east-1",
        object=events.S3Object(
            key="incoming/summer-reviews.tsv",
            size=1843201,
            etag="5d41402abc4b2a76b9719d911017c592",
            version_id="Vx4GZq3d9LJ0bWkM2oT7cY1nR8sAeH5u",
            sequencer="00674700B6A2F1C3D4",
            uploaded_at="2024-11-27T10:15:02Z",
        ),
    )


def test_moto_s_spellings_and_an_unversioned_bucket_are_read_too():
    read = events.object_created(dropped(key="incoming/a.tsv", size="12", eTag="abc", versionId="v1"))
    assert read.object == events.S3Object(key="incoming/a.tsv", size=12, etag="abc", version_id="v1")
    unversioned = events.object_created(dropped(key="incoming/a.tsv"))
    assert unversioned.object == events.S3Object(key="incoming/a.tsv")
    # the version of an object written without versioning, as S3 lists it, is none
    assert events.object_created(dropped(key="incoming/a.tsv", **{"version-id": "null"})).object.version_id is None


@pytest.mark.parametrize("sequencer", [17, "", "  ", "00AB-CD", "00 67"], ids=repr)
def test_a_sequencer_s3_would_not_send_is_none_not_an_invalid_event(sequencer):
    read = events.object_created(dropped(key="incoming/a.tsv", etag="abc", sequencer=sequencer))
    assert read.object == events.S3Object(key="incoming/a.tsv", etag="abc")
    assert events.object_created(dropped(key="incoming/a.tsv", sequencer=" 0067AB ")).object.sequencer == "0067AB"


@pytest.mark.parametrize("time", [None, 17, "", "yesterday", "2026-13-01T00:00:00Z"], ids=repr)
def test_an_event_time_that_is_none_is_no_upload_time_not_an_invalid_event(time):
    event = {**dropped(key="incoming/a.tsv"), "time": time}
    assert events.object_created(event).object.uploaded_at is None
    assert events.object_created({**event, "time": "2026-12-06T04:40:00Z"}).object.uploaded_at == "2026-12-06T04:40:00Z"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e["detail"]["object"].pop("key"), "detail.object.key is missing"),
        (lambda e: e["detail"]["object"].update(key=""), "detail.object.key must be a non-empty string"),
        (lambda e: e["detail"]["object"].update(key=7), "detail.object.key must be a non-empty string"),
        (lambda e: e["detail"]["object"].update(etag=5), "detail.object.etag must be a non-empty string"),
        (lambda e: e["detail"].pop("bucket"), "detail.bucket is missing"),
        (lambda e: e["detail"].pop("object"), "detail.object is missing"),
        (lambda e: e.pop("detail"), "has no detail object"),
        (lambda e: e.update({"detail-type": "Object Deleted"}), "got detail-type 'Object Deleted'"),
    ],
)
def test_an_s3_event_without_what_start_tuning_needs_is_refused_with_the_field_named(change, message):
    event = load_event("s3_object_created.json")
    change(event)
    with pytest.raises(InvalidEventError, match=message):
        events.object_created(event)


@pytest.mark.parametrize(
    ("name", "reader", "job"),
    [
        ("tuning_job_failed.json", events.tuning_job_state_change, "HyperParameterTuningJob"),
        ("processing_job_failed.json", events.processing_job_state_change, "ProcessingJob"),
    ],
)
def test_a_job_state_change_gives_name_status_and_the_whole_detail(name, reader, job):
    event = load_event(name)
    read = reader(event)
    assert (read.name, read.status) == (event["detail"][f"{job}Name"], event["detail"][f"{job}Status"])
    assert read.detail == event["detail"] and "FailureReason" in read.detail
    del event["detail"][f"{job}Status"]
    with pytest.raises(InvalidEventError, match=f"detail.{job}Status is missing"):
        reader(event)


def test_something_else_than_an_event_is_refused():
    with pytest.raises(InvalidEventError, match="must be a JSON object"):
        events.tuning_job_state_change(["not", "an", "event"])
