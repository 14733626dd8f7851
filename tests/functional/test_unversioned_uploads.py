"""A bucket without versioning (suspended): the same bytes uploaded again at the same key are a drop of their own.

GIVEN the handlers on moto with an in-memory SageMaker and the bucket's versioning suspended, WHEN a file is dropped,
its run ends, and the very same file is dropped again at the same key (same key, same ETag, no version id), THEN the
second upload gets its own run, outcome and message (its event's S3 sequencer tells it apart), while a repeated
event of either upload, the reconciler's sweep of incoming/ and a dead-lettered event of the second find the run
they belong to; an event naming the version "null" is the same object as the sweep's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from reviewtune.console import audit as console_audit
from reviewtune.console import dead_letters as console_dead_letters
from reviewtune.core import dead_letters, retries, tuning
from reviewtune.core.runs import RunsRepository, now_iso
from tests.functional.pipeline import Pipeline, good_file, later
from tests.support.aws import REGION, load_event

KEY = "incoming/shop.tsv"


@pytest.fixture
def pipeline(stack):
    boto3.client("s3", region_name=REGION).put_bucket_versioning(
        Bucket=stack.bucket, VersioningConfiguration={"Status": "Suspended"})
    return Pipeline(stack)


def upload(pipeline: Pipeline, sequencer: str, body: bytes | None = None, at: datetime | None = None) -> dict:
    """Write the file (no version id) and the event S3 sends for that upload (``at``: its time, now by default)."""
    body = good_file() if body is None else body
    written = boto3.client("s3", region_name=REGION).put_object(Bucket=pipeline.stack.bucket, Key=KEY, Body=body)
    assert written.get("VersionId") in (None, "null")
    event = load_event("s3_object_created.json")
    event["detail"]["bucket"]["name"] = pipeline.stack.bucket
    event["detail"]["object"] = {"key": KEY, "size": len(body), "etag": written["ETag"].strip('"'),
                                 "sequencer": sequencer}
    event["time"] = now_iso(at)
    return event


def runs(pipeline: Pipeline) -> list[dict]:
    return list(RunsRepository(pipeline.clients.runs_table).all_of_dataset("shop.tsv"))


def fail(pipeline: Pipeline, run_id: str) -> None:
    pipeline.sagemaker.finish_tuning(run_id, "Failed", failure="AlgorithmError: boom")
    pipeline.tuning_ended(run_id, "Failed")
    assert pipeline.run(run_id)["status"] == "FAILED"


def test_the_same_file_dropped_again_after_its_run_failed_is_a_run_of_its_own(pipeline):
    first_event = upload(pipeline, "0067470A00000001")
    first = pipeline.start_tuning(first_event)["run_id"]
    fail(pipeline, first)

    second_event = upload(pipeline, "0067470A00000002")  # "drop the file again to have it tuned"
    second = pipeline.start_tuning(second_event)

    assert second["run_id"] != first and second["status"] == "TUNING"
    assert pipeline.run(second["run_id"])["source"]["upload"] == "0067470A00000002"
    # a repeated event of either upload, and the sweep, find the run they belong to
    assert pipeline.start_tuning(first_event)["run_id"] == first
    assert pipeline.start_tuning(second_event)["run_id"] == second["run_id"]
    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 0
    assert len(runs(pipeline)) == 2
    pipeline.succeed(second["run_id"])
    assert pipeline.statuses_told(first)[-1] == "FAILED" and pipeline.statuses_told(second["run_id"])[-1] == "SUCCEEDED"
    assert [s for s in pipeline.statuses_told(second["run_id"]) if s == "SUCCEEDED"] == ["SUCCEEDED"]


def test_the_same_file_dropped_again_after_its_run_succeeded_ends_as_a_duplicate(pipeline):
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001"))["run_id"]
    pipeline.succeed(first)

    second = pipeline.start_tuning(upload(pipeline, "0067470A00000002"))

    assert second["status"] == "DUPLICATE" and second["duplicate_of"] == first
    assert pipeline.statuses_told(second["run_id"]) == ["DUPLICATE"]


def test_a_run_claimed_by_the_sweep_is_the_upload_whose_event_comes_late_not_a_later_one(pipeline):
    """The sweep's claim has no sequencer: an event sent before the claim is of that upload (it came late), one sent
    after it is of another upload of the same bytes."""
    event = upload(pipeline, "0067470A00000001")
    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 1
    [run] = runs(pipeline)
    assert pipeline.start_tuning(event)["run_id"] == run["run_id"] and len(runs(pipeline)) == 1

    again = pipeline.start_tuning(upload(pipeline, "0067470A00000002", at=later(2)))

    assert again["run_id"] != run["run_id"] and len(runs(pipeline)) == 2


def test_the_same_file_dropped_again_after_job_name_prefix_changed_is_a_run_of_its_own(pipeline, monkeypatch):
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001"))["run_id"]
    fail(pipeline, first)
    handler = pipeline.handlers["start_tuning"]
    renamed = dataclasses.replace(handler.ctx.settings, job_name_prefix="renamed")
    monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=renamed))
    again = upload(pipeline, "0067470A00000002")

    second = pipeline.start_tuning(again)

    assert second["run_id"].startswith("renamed-") and second["status"] == "TUNING"
    assert pipeline.start_tuning(again)["run_id"] == second["run_id"]  # a repeated event finds it


def test_a_run_of_a_bucket_without_versioning_is_not_retried_but_its_file_can_be_dropped_again(pipeline):
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001"))["run_id"]
    fail(pipeline, first)
    s3 = boto3.client("s3", region_name=REGION)

    with pytest.raises(retries.RetryError, match="bucket without versioning.*drop the file again"):
        retries.retry_run(RunsRepository(pipeline.clients.runs_table), s3, first, why="flaky", by="ops")

    assert s3.list_object_versions(Bucket=pipeline.stack.bucket, Prefix=KEY)["Versions"][0]["VersionId"] == "null"
    assert "retried" not in pipeline.run(first) and len(runs(pipeline)) == 1


def test_the_console_finds_each_upload_s_run_for_its_dead_letter_and_in_the_audit(pipeline):
    repository = RunsRepository(pipeline.clients.runs_table)
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001"))["run_id"]
    fail(pipeline, first)
    again = upload(pipeline, "0067470A00000002")
    assert console_dead_letters._runs_of(json.dumps(again), repository) == []  # no run yet: not the first one's

    second = pipeline.start_tuning(again)["run_id"]

    [found] = console_dead_letters._runs_of(json.dumps(again), repository)
    assert found["run_id"] == second
    rows = console_audit.audit(boto3.client("s3", region_name=REGION), repository, pipeline.stack.bucket, None, 7)
    assert [(row["run_id"], row["status"]) for row in rows] == [(second, "TUNING")]  # the upload the key holds now


def test_an_event_that_names_the_version_null_is_the_object_the_sweep_finds(pipeline):
    event = upload(pipeline, "0067470A00000001")
    event["detail"]["object"]["version-id"] = "null"  # as S3 lists an object written without versioning
    started = pipeline.start_tuning(event)
    assert pipeline.run(started["run_id"])["source"]["version_id"] is None
    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 0 and len(runs(pipeline)) == 1


def test_a_dead_lettered_event_of_the_second_upload_gets_its_own_run(pipeline, stack, monkeypatch):
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001"))["run_id"]
    fail(pipeline, first)
    stack.dead_letter(upload(pipeline, "0067470A00000002"), "Died")

    taken = pipeline.reconcile()["dead_letters"]

    assert taken["claimed"] == 1 and len(runs(pipeline)) == 2
    [second] = [run for run in runs(pipeline) if run["run_id"] != first]
    assert second["source"]["upload"] == "0067470A00000002"
    obj = tuning.dropped_object(second)
    assert tuning.run_id_of(obj, pipeline.settings) == second["run_id"]  # the stale-claim restart finds it


def test_drop_follow_finds_the_run_of_its_own_upload(pipeline, tmp_path):
    """`reviewtune drop --follow` in a bucket without versioning: S3 answers the upload with version "null", and the
    run of the same bytes dropped before is not this upload's."""
    from reviewtune.console import queries

    path = tmp_path / "shop.tsv"
    path.write_bytes(good_file())
    s3 = boto3.client("s3", region_name=REGION)
    table = pipeline.clients.runs_table
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001", at=later(-1)))["run_id"]
    RunsRepository(table).update_if(first, "TUNING", created_at=now_iso(later(-1)))  # made an hour ago
    fail(pipeline, first)

    dropped = queries.upload(s3, pipeline.stack.bucket, path, KEY)

    assert dropped["version_id"] is None
    assert queries.find_run(table, "shop.tsv", dropped, timeout=0) is None  # the first upload's run is not it
    event = load_event("s3_object_created.json")
    event["detail"]["bucket"]["name"] = pipeline.stack.bucket
    event["detail"]["object"] = {"key": KEY, "size": path.stat().st_size, "etag": dropped["etag"].strip('"'),
                                 "sequencer": "0067470A00000002"}
    event["time"] = now_iso()
    second = pipeline.start_tuning(event)["run_id"]
    assert queries.find_run(table, "shop.tsv", dropped, timeout=0)["run_id"] == second != first


def test_drop_follow_skips_the_run_of_the_same_bytes_dropped_moments_before(pipeline, tmp_path):
    from reviewtune.console import queries

    path = tmp_path / "shop.tsv"
    path.write_bytes(good_file())
    s3 = boto3.client("s3", region_name=REGION)
    table = pipeline.clients.runs_table
    first = pipeline.start_tuning(upload(pipeline, "0067470A00000001"))["run_id"]  # made just now
    fail(pipeline, first)

    before = queries.run_ids(table, "shop.tsv")
    dropped = queries.upload(s3, pipeline.stack.bucket, path, KEY)

    assert queries.find_run(table, "shop.tsv", dropped, timeout=0) == pipeline.run(first)  # within the clock's slack
    assert queries.find_run(table, "shop.tsv", dropped, timeout=0, before=before) is None
    second = pipeline.start_tuning(upload(pipeline, "0067470A00000002"))["run_id"]
    assert queries.find_run(table, "shop.tsv", dropped, timeout=0, before=before)["run_id"] == second


def renamed(pipeline: Pipeline, monkeypatch, prefix: str = "renamed") -> None:
    """The stack's JobNamePrefix changed: the functions name new runs with ``prefix``."""
    for name in ("start_tuning", "reconcile"):
        handler = pipeline.handlers[name]
        settings = dataclasses.replace(handler.ctx.settings, job_name_prefix=prefix)
        monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=settings))


@pytest.mark.parametrize("uploads", [1, 2], ids=["first upload's", "second upload's"])
def test_an_event_of_an_upload_made_before_job_name_prefix_changed_finds_its_run_after_a_later_upload(
    pipeline, stack, monkeypatch, uploads
):
    """An upload's event dead-lettered before the prefix changed, taken back after the same bytes were dropped again
    under the new prefix: under each prefix the upload's own run is looked for, so it finds its run, not a new one."""
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)
    events = [upload(pipeline, f"0067470A0000000{n}") for n in range(1, uploads + 1)]
    for event in events:
        fail(pipeline, pipeline.start_tuning(event)["run_id"])
    renamed(pipeline, monkeypatch)
    pipeline.start_tuning(upload(pipeline, "0067470A00000009"))
    assert len(runs(pipeline)) == uploads + 1
    stack.dead_letter(events[-1], "Died")

    taken = pipeline.reconcile()["dead_letters"]

    assert (taken["claimed"], taken["existing"]) == (0, 1) and len(runs(pipeline)) == uploads + 1


def test_an_upload_listed_by_a_pass_that_began_before_it_ended_is_the_upload_of_its_event(pipeline, monkeypatch):
    """A multipart upload's LastModified is when it began: one that began more than the grace before a pass and ended
    after the pass's clock was read is still listed and claimed by it; its event, sent when it ended, is of the same
    upload (it was sent before the listing), not another."""
    handler = pipeline.handlers["reconcile"]
    settings = dataclasses.replace(handler.ctx.settings, missed_drop_grace_minutes=0)
    monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=settings))
    written = datetime.now(UTC)
    event = upload(pipeline, "0067470A00000001", at=written + timedelta(seconds=1))  # sent as the upload ended
    time.sleep(1.5)  # the listing comes after the upload ended

    began = written + timedelta(seconds=0.5)  # the pass's clock, read before the upload ended
    assert pipeline.reconcile(began)["missed_drops"]["claimed"] == 1
    [run] = runs(pipeline)
    assert run["created_at"] < event["time"] <= run["listed_at"]

    assert pipeline.start_tuning(event)["run_id"] == run["run_id"] and len(runs(pipeline)) == 1
