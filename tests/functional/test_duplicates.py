"""Duplicate content: a file version with the bytes of a run of its dataset in progress or succeeded starts nothing.

GIVEN the handlers on moto with an in-memory SageMaker, WHEN the same content is dropped again (a new version of
the key, or at the same moment as the first), THEN exactly one run tunes it and the other ends DUPLICATE, told once.
"""

from __future__ import annotations

import unicodedata

import boto3
import pytest

from reviewtune.core import duplicates, names, states
from reviewtune.core import tuning as tuning_module
from reviewtune.core.dataset import split_reviews
from reviewtune.core.runs import RunsRepository
from tests.functional.pipeline import Pipeline, good_file
from tests.support.aws import REGION

KEY = "incoming/team/reviews.tsv"


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def tuning_jobs(pipeline: Pipeline) -> list[str]:
    return sorted(pipeline.sagemaker.tuning)


def run_files(stack, run_id: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"runs/{run_id}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def assert_duplicate_of(pipeline: Pipeline, run_id: str, original: str, status: str) -> dict:
    item = pipeline.run(run_id)
    assert item["status"] == "DUPLICATE" and item["duplicate_of"] == original
    assert item["data"]["summary"]["content_sha256"] == pipeline.run(original)["data"]["summary"]["content_sha256"]
    assert "deadline_at" not in item and not item.get("notice_pending")
    [message] = pipeline.messages(run_id)
    assert message["MessageAttributes"]["status"]["Value"] == "DUPLICATE"
    assert item["notification_message_id"] == message["MessageId"]
    assert f"same content as run {original}" in message["Subject"]
    assert original in message["Message"] and f"({status})" in message["Message"]
    assert run_files(pipeline.stack, run_id) == []  # nothing split or uploaded for it
    return message


def test_a_new_version_with_the_content_of_a_tuning_run_starts_nothing(pipeline):
    first = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    assert first["status"] == "TUNING"

    event = pipeline.drop_event(KEY, good_file())
    second = pipeline.start_tuning(event)

    assert second == {"run_id": second["run_id"], "status": "DUPLICATE", "duplicate_of": first["run_id"]}
    assert tuning_jobs(pipeline) == [first["run_id"]]
    message = assert_duplicate_of(pipeline, second["run_id"], first["run_id"], "TUNING")
    assert "Its result comes in its own message" in message["Message"]
    # the redelivered event changes nothing and tells nobody again
    again = pipeline.start_tuning(dict(event, id="redelivered"))
    assert again["status"] == "DUPLICATE" and len(pipeline.messages(second["run_id"])) == 1
    # the first run goes on to its own result
    assert pipeline.succeed(first["run_id"])["status"] == "SUCCEEDED"


def test_the_content_of_a_succeeded_run_is_a_duplicate_with_its_test_accuracy(pipeline):
    first = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    pipeline.succeed(first["run_id"])

    second = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))

    message = assert_duplicate_of(pipeline, second["run_id"], first["run_id"], "SUCCEEDED")
    assert "74.12 %" in message["Message"]
    assert tuning_jobs(pipeline) == [first["run_id"]]


def test_a_queued_run_keeps_its_content_from_being_tuned_twice(pipeline):
    runs = [pipeline.start_tuning(pipeline.drop_event(f"incoming/busy-{i}.tsv", good_file(i))) for i in range(2)]
    queued = pipeline.start_tuning(pipeline.drop_event(KEY, good_file(5)))
    assert [r["status"] for r in runs] == ["TUNING", "TUNING"] and queued["status"] == "QUEUED"

    second = pipeline.start_tuning(pipeline.drop_event(KEY, good_file(5)))

    assert_duplicate_of(pipeline, second["run_id"], queued["run_id"], "QUEUED")


def test_content_that_only_failed_is_tuned_again(pipeline):
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ValidationException"]
    failed = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    assert failed["status"] == "FAILED"

    again = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    assert again["status"] == "TUNING"
    # the new run holds the content now: a third copy is its duplicate
    third = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    assert_duplicate_of(pipeline, third["run_id"], again["run_id"], "TUNING")


def test_other_content_or_another_dataset_is_no_duplicate(pipeline):
    first = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    changed = pipeline.start_tuning(pipeline.drop_event(KEY, good_file(1)))
    elsewhere = pipeline.start_tuning(pipeline.drop_event("incoming/other/reviews.tsv", good_file()))
    assert [first["status"], changed["status"]] == ["TUNING", "TUNING"]
    assert elsewhere["status"] == "QUEUED"  # two slots taken: valid and waiting, not a duplicate


def test_one_name_spelled_with_decomposed_accents_is_the_same_dataset_so_the_same_content_is_a_duplicate(pipeline):
    """macOS writes file names decomposed (NFD), most other systems composed (NFC): the same file dropped from both
    is two S3 keys but one dataset, so its content is tuned once."""
    composed = "incoming/équipe/avis été.tsv"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    first = pipeline.start_tuning(pipeline.drop_event(composed, good_file()))
    pipeline.succeed(first["run_id"])

    second = pipeline.start_tuning(pipeline.drop_event(decomposed, good_file()))

    assert_duplicate_of(pipeline, second["run_id"], first["run_id"], "SUCCEEDED")
    assert pipeline.run(second["run_id"])["dataset"] == pipeline.run(first["run_id"])["dataset"] == "équipe/avis été.tsv"
    assert pipeline.run(second["run_id"])["source"]["key"] == decomposed  # the object as S3 holds it
    assert tuning_jobs(pipeline) == [first["run_id"]]


def test_skip_duplicate_content_false_tunes_every_version(stack, monkeypatch):
    monkeypatch.setenv("SKIP_DUPLICATE_CONTENT", "false")
    pipeline = Pipeline(stack)
    first = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    second = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    assert [first["status"], second["status"]] == ["TUNING", "TUNING"]
    assert tuning_jobs(pipeline) == sorted([first["run_id"], second["run_id"]])


# ------------------------------------------------------------------------------------- two drops at once


def test_a_drop_while_the_first_is_still_claimed_and_invisible_to_the_index_is_its_duplicate(pipeline, monkeypatch):
    """The second file arrives after the first took the content marker but before it wrote anything the index
    could show (its data): the marker alone finds it."""
    write_splits = tuning_module.write_splits
    second: dict = {}

    def first_paused_before_splitting(*args, **kwargs):
        if not second:
            assert pipeline.run(first_id)["status"] == "CLAIMED" and "data" not in pipeline.run(first_id)
            second.update(pipeline.start_tuning(pipeline.drop_event(KEY, good_file())))
        return write_splits(*args, **kwargs)

    monkeypatch.setattr(tuning_module, "write_splits", first_paused_before_splitting)
    event = pipeline.drop_event(KEY, good_file())
    first_id = names.tuning_job_name("reviewtune", names.object_identity(
        pipeline.stack.bucket, KEY, event["detail"]["object"]["version-id"], event["detail"]["object"]["etag"]))
    first = pipeline.start_tuning(event)

    assert first["run_id"] == first_id and first["status"] == "TUNING"
    assert second["status"] == "DUPLICATE" and second["duplicate_of"] == first_id
    assert tuning_jobs(pipeline) == [first_id]
    assert_duplicate_of(pipeline, second["run_id"], first_id, "CLAIMED")


def test_two_drops_that_both_found_nothing_in_the_index_make_one_run(pipeline, monkeypatch):
    """Both runs looked in the index before either took the marker: the conditional write on the marker decides."""
    hold = duplicates._hold_marker
    other: dict = {}
    raced: list[str] = []

    def the_other_drop_wins_the_race(runs, run_id, dataset, content_sha256):
        if not raced:  # the first run to get here lets the other drop run whole first
            raced.append(run_id)
            other.update(pipeline.start_tuning(pipeline.drop_event(KEY, good_file())))
        return hold(runs, run_id, dataset, content_sha256)

    monkeypatch.setattr(duplicates, "_hold_marker", the_other_drop_wins_the_race)
    late = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))

    assert other["status"] == "TUNING" and raced == [late["run_id"]]
    assert late["status"] == "DUPLICATE" and late["duplicate_of"] == other["run_id"]
    assert tuning_jobs(pipeline) == [other["run_id"]]
    assert_duplicate_of(pipeline, late["run_id"], other["run_id"], "TUNING")


# ------------------------------------------------------------------------------------- the by_dataset index


def _earlier_run(stack, run_id: str, status: str, content_sha256: str, created_at: str) -> None:
    """A run written before content markers existed: only the index knows its content."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)
    RunsRepository(table).create({
        "run_id": run_id, "dataset": "team/reviews.tsv", "status": status, "created_at": created_at,
        "source": {"bucket": stack.bucket, "key": KEY}, "data": {"summary": {"content_sha256": content_sha256}},
        "results": {"test_accuracy": 0.7}, "status_history": {status: created_at},
    })


def test_a_run_from_before_the_markers_is_found_in_the_index(pipeline, stack):
    sha = split_reviews(good_file(), "reviews.tsv").content_sha256
    _earlier_run(stack, "reviewtune-00000000000000aa", "SUCCEEDED", sha, "2026-01-01T00:00:00.000Z")
    _earlier_run(stack, "reviewtune-00000000000000bb", "FAILED", sha, "2026-01-02T00:00:00.000Z")

    second = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))

    assert second["status"] == "DUPLICATE" and second["duplicate_of"] == "reviewtune-00000000000000aa"
    assert "70.00 %" in pipeline.messages(second["run_id"])[0]["Message"]


def test_the_index_is_read_page_by_page_and_only_so_far(stack):
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)
    runs = RunsRepository(table)
    for i in range(7):
        _earlier_run(stack, f"reviewtune-{i:016x}", "SUCCEEDED" if i < 2 else "FAILED", "ab" * 32,
                     f"2026-01-0{i + 1}T00:00:00.000Z")
    statuses = (states.RunStatus.SUCCEEDED,)
    # newest first: the two matching runs are the two oldest of seven
    assert [r["run_id"] for r in runs.with_content("team/reviews.tsv", "ab" * 32, statuses, 7)] == [
        "reviewtune-0000000000000001", "reviewtune-0000000000000000"]
    assert list(runs.with_content("team/reviews.tsv", "ab" * 32, statuses, 5)) == []
    assert list(runs.with_content("team/reviews.tsv", "cd" * 32, statuses, 100)) == []


def test_the_marker_is_in_no_index_and_no_run_id_can_be_it(pipeline, stack):
    first = pipeline.start_tuning(pipeline.drop_event(KEY, good_file()))
    sha = pipeline.run(first["run_id"])["data"]["summary"]["content_sha256"]
    key = duplicates.marker_key("team/reviews.tsv", sha)
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)
    marker = table.get_item(Key={"run_id": key})["Item"]
    assert marker["holder"] == first["run_id"] and not {"status", "dataset", "created_at"} & set(marker)
    assert not names.TUNING_JOB_NAME_PATTERN.match(key)
    assert [r["run_id"] for r in RunsRepository(table).by_status("TUNING")] == [first["run_id"]]
